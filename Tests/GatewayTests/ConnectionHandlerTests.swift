@testable import Gateway
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import NIOEmbedded
import Testing

/// How a connection writes its replies: each hit's frame is written by hand
/// into storage that the connection reuses once the channel has let go of it
/// (`WorkerSession.takeReplyBuffer`). Reuse must never touch a reply that
/// is still held (queued in the channel, or by whoever read it).
@Suite struct ConnectionHandlerTests {
    static let served = ConnectionAccess(peer: nil, namespace: "ns", refusal: nil)
    static let function = FunctionVersion(function: "Tests.reply(x:)", version: "v1")

    /// A connection that said hello and stored `values[i]` under key `i`.
    static func harness(storing values: [[UInt8]]) throws -> ConnectionHarness {
        let harness = try ConnectionHarness(access: Self.served)
        try harness.send(GatewayMessage(id: 1, .hello(Hello(clientName: "tests", pid: 1))))
        guard case .helloReply = try #require(try harness.reply()).body else { throw TestFailure("no hello reply") }
        for (index, value) in values.enumerated() {
            let store = Store(function: Self.function, key: try CacheKey(hashing: index), ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(bytes: value))
            try harness.send(GatewayMessage(id: 2, .store(store)))
            #expect(try harness.reply() == GatewayMessage(id: 2, .storeReply(stored: true)))
        }
        return harness
    }

    static func lookupFrame(id: UInt64, key: Int) throws -> ByteBuffer {
        try GatewayMessage(id: id, .lookup(Lookup(function: Self.function, key: try CacheKey(hashing: key)))).encodedFrame()
    }

    /// The reply's message, read from a frame.
    static func message(in frame: ByteBuffer) throws -> GatewayMessage {
        var frame = frame
        return try GatewayMessage(payload: try #require(try FrameDecoder().readPayload(from: &frame)))
    }

    static func address(of frame: ByteBuffer) -> UInt? {
        frame.withUnsafeReadableBytes { $0.baseAddress.map { UInt(bitPattern: $0) } }
    }

    @Test func aBurstOfLookupsInOneReadGetsEveryReplyIntact() throws {
        // Sizes on both sides of the headers' boundaries (bin 8, bin 16) and of the kept capacity.
        let values: [[UInt8]] = [10, 300, 70_000, 0, 1_024].enumerated().map { index, count in
            (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index) }
        }
        let harness = try Self.harness(storing: values)
        // One read holding every lookup, two of them twice, and a miss (key 9):
        // the replies are written before any is flushed, so the channel holds
        // each while the next is written.
        let order = [0, 1, 2, 9, 3, 4, 1, 0]
        var burst = ByteBuffer()
        for (index, key) in order.enumerated() { burst.writeImmutableBuffer(try Self.lookupFrame(id: UInt64(100 + index), key: key)) }
        try harness.channel.writeInbound(burst)
        var frames: [ByteBuffer] = []
        while let frame = try harness.channel.readOutbound(as: ByteBuffer.self) { frames.append(frame) }
        #expect(frames.count == order.count)
        for (index, key) in order.enumerated() where index < frames.count {
            let expected: LookupReply = key < values.count ? .hit(ByteBuffer(bytes: values[key])) : .miss
            #expect(try Self.message(in: frames[index]) == GatewayMessage(id: UInt64(100 + index), .lookupReply(expected)), "reply \(index), key \(key)")
        }
    }

    @Test func aRepliesStorageIsReusedOnlyOnceNothingHoldsIt() throws {
        let values: [[UInt8]] = [Array(repeating: 0xa1, count: 1_024), Array(repeating: 0xb2, count: 1_024)]
        let harness = try Self.harness(storing: values)
        func lookUp(_ id: UInt64, key: Int) throws -> ByteBuffer {
            try harness.channel.writeInbound(try Self.lookupFrame(id: id, key: key))
            let frame = try #require(try harness.channel.readOutbound(as: ByteBuffer.self))
            #expect(try Self.message(in: frame) == GatewayMessage(id: id, .lookupReply(.hit(ByteBuffer(bytes: values[key])))))
            return frame
        }
        // Let go of the first reply: the second is written into its storage.
        // Blocks of the same size are allocated in between, so that storage
        // that had been freed (not kept) would be taken by them, and the
        // second reply could not land at the same address by chance.
        let (first, capacity) = try { () throws -> (UInt?, Int) in
            let frame = try lookUp(10, key: 0)
            return (Self.address(of: frame), frame.capacity)
        }()
        let squatters = (0..<8).map { _ in ByteBufferAllocator().buffer(capacity: capacity) }
        let second = try lookUp(11, key: 1)
        #expect(first != nil && Self.address(of: second) == first, "the storage of a reply nobody holds is reused")
        #expect(!squatters.contains { Self.address(of: $0) == first })
        // Keep the second: the third gets storage of its own, and the second is unchanged.
        let third = try lookUp(12, key: 0)
        #expect(Self.address(of: third) != Self.address(of: second))
        #expect(try Self.message(in: second) == GatewayMessage(id: 11, .lookupReply(.hit(ByteBuffer(bytes: values[1])))))
    }
}
