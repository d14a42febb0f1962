@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

/// The link's frame writer and reader on their own, over a socket pair: what
/// one writes the other reads back, a version is registered once, and the
/// reader takes frames split across reads.
@Suite struct FrameIOTests {
    static let function = FunctionVersion(function: "FrameIOTests.value(_:)", version: "v1")

    /// Reads from `fd` until `count` messages are decoded (or 200 tries).
    static func read(_ reader: FrameReader, from fd: Int32, count: Int) throws -> [GatewayMessage] {
        for _ in 0..<200 where reader.messages.count < count {
            if let error = reader.read(from: fd).error { throw error }
        }
        defer { reader.messages.removeAll() }
        return reader.messages
    }

    @Test func aLookupIsPrecededByItsRegisterOnceAndReadsBackAsALookup() throws {
        let (near, far) = try UnixSocket.pair()
        defer {
            UnixSocket.close(near)
            UnixSocket.close(far)
        }
        let writer = try FrameWriter()
        let reader = try FrameReader()
        let site = CallSite.named(Self.function)
        let key = try CacheKey(hashing: 1)
        let first = try writer.write(.lookup(site, key), to: near)
        let second = try writer.write(.lookup(site, key), to: near)
        let ping = try writer.write(.message(.ping, registering: site), to: near)
        #expect(!first.leftBytes && !second.leftBytes && !ping.leftBytes)
        #expect(first.id == 2 && second.id == 3 && ping.id == 4, "the register took id 1")
        let messages = try Self.read(reader, from: far, count: 4)
        #expect(messages.map(\.id) == [1, 2, 3, 4])
        guard messages.count == 4 else { return }
        #expect(messages[0].body == .register(Self.function))
        #expect(messages[1].body == .lookup(Lookup(function: Self.function, key: key)))
        #expect(messages[3].body == .ping)
    }

    @Test func aFrameSplitAcrossReadsIsDecodedOnceWhole() throws {
        let (near, far) = try UnixSocket.pair()
        defer {
            UnixSocket.close(near)
            UnixSocket.close(far)
        }
        let reader = try FrameReader()
        var frame = ByteBuffer()
        try GatewayMessage(id: 7, .lookupReply(.hit(ByteBuffer(string: "value")))).encodeFrame(into: &frame)
        let bytes = Array(frame.readableBytesView)
        _ = try bytes[..<3].withUnsafeBytes { try UnixSocket.send(near, $0) }
        #expect(try Self.read(reader, from: far, count: 1).isEmpty)
        _ = try bytes[3...].withUnsafeBytes { try UnixSocket.send(near, $0) }
        let messages = try Self.read(reader, from: far, count: 1)
        #expect(messages.map(\.id) == [7])
        #expect(messages.first?.body == .lookupReply(.hit(ByteBuffer(string: "value"))))
    }

    @Test func theEndOfTheStreamIsAnError() throws {
        let (near, far) = try UnixSocket.pair()
        defer { UnixSocket.close(far) }
        let reader = try FrameReader()
        UnixSocket.close(near)
        #expect(reader.read(from: far).error?.code == .connectionClosed)
    }
}
