#if canImport(Glibc)
import Glibc
#endif
@testable import Gateway
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import NIOEmbedded
import Testing

/// What a connection counts and how it treats its peer when reading stops or
/// the peer goes: backpressure never costs a reply, a frame deadline is a
/// counted error, and a peer that resets is a disconnect, not an error.
@Suite struct ConnectionSignalsTests {
    static let served = ConnectionAccess(peer: nil, namespace: "ns", refusal: nil)

    static func greeted(frameTimeout: TimeAmount = .seconds(1)) throws -> ConnectionHarness {
        let harness = try ConnectionHarness(access: Self.served, frameTimeout: frameTimeout)
        try harness.send(GatewayMessage(id: 1, .hello(Hello(clientName: "tests", pid: 1))))
        guard case .helloReply = try #require(try harness.reply()).body else { throw TestFailure("no hello reply") }
        return harness
    }

    @Test func aFrameHeldBackByTheGatewaysOwnBackpressureIsNotTimedOut() throws {
        let harness = try Self.greeted()
        let channel = harness.channel
        // The peer stops taking replies: the connection stops reading.
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        var burst = ByteBuffer()
        for id in 10..<20 { burst.writeImmutableBuffer(try GatewayMessage(id: UInt64(id), .ping).encodedFrame()) }
        let half = try GatewayMessage(id: 20, .ping).encodedFrame()
        burst.writeImmutableBuffer(half.getSlice(at: half.readerIndex, length: 3)!)
        try channel.writeInbound(burst)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil, "held back, not answered, while the peer does not read")
        // Far past the frame deadline, with a frame half read.
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        // The peer reads again: every held request is answered, in order.
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        var ids: [UInt64] = []
        while let reply = try harness.reply() { ids.append(reply.id) }
        #expect(ids == Array(10..<20))
        // The rest of the half frame arrives within a deadline counted from now.
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        try channel.writeInbound(half.getSlice(at: half.readerIndex + 3, length: half.readableBytes - 3)!)
        #expect(try harness.reply()?.id == 20)
        #expect(channel.isActive)
        #expect(harness.statistics.errors.load(ordering: .relaxed) == 0)
    }

    @Test func aStalledFrameIsAnsweredClosedAndCountedAsAnError() throws {
        let harness = try Self.greeted()
        let frame = try GatewayMessage(id: 5, .ping).encodedFrame()
        try harness.channel.writeInbound(frame.getSlice(at: frame.readerIndex, length: 2)!)
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        let reply = try #require(try harness.reply())
        guard case .error(let error) = reply.body else {
            Issue.record("expected an error reply, got \(reply)")
            return
        }
        #expect(error.code == .malformedFrame)
        #expect(reply.id == 0)
        #expect(!harness.channel.isActive)
        #expect(harness.statistics.errors.load(ordering: .relaxed) == 1)
    }

    @Test func aPeerThatResetsIsADisconnectNotAnError() throws {
        let harness = try Self.greeted()
        harness.channel.pipeline.fireErrorCaught(IOError(errnoCode: ECONNRESET, reason: "read(descriptor:pointer:size:)"))
        #expect(!harness.channel.isActive)
        #expect(try harness.reply() == nil, "nobody to answer")
        #expect(harness.statistics.errors.load(ordering: .relaxed) == 0)
        #expect(harness.statistics.disconnects.load(ordering: .relaxed) == 1)
    }
}
