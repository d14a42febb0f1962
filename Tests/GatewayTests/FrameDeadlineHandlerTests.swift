@testable import Gateway
import GatewayProtocol
import NIOCore
import NIOEmbedded
import Testing

/// The frame deadline, driven on an embedded channel with a virtual clock.
@Suite struct FrameDeadlineHandlerTests {
    func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: FrameDeadlineHandler(timeout: .seconds(1)))
        try channel.connect(to: .init(unixDomainSocketPath: "/tmp/frame-deadline-test")).wait()
        return channel
    }

    func frame(_ payloadLength: Int) -> [UInt8] {
        let length = UInt32(payloadLength)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
            + [UInt8](repeating: 0x90, count: payloadLength)
    }

    @Test func completeFramesInAnySplitArmNoDeadline() throws {
        let channel = try self.channel()
        let stream = self.frame(3) + self.frame(0) + self.frame(10)
        // Split into single bytes, with time passing between them but never a full second per frame.
        for byte in stream {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
        // Every byte was passed on unchanged.
        var forwarded: [UInt8] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { forwarded += buffer.readableBytesView }
        #expect(forwarded == stream)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func aStalledFrameIsAnsweredAndClosedAtItsDeadline() throws {
        let channel = try self.channel()
        try channel.writeInbound(ByteBuffer(bytes: self.frame(2)))  // one complete frame
        try channel.writeInbound(ByteBuffer(bytes: Array(self.frame(100).prefix(30))))  // and the start of another
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(channel.isActive)
        try channel.writeInbound(ByteBuffer(bytes: [0x90]))  // more bytes do not extend the deadline
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(!channel.isActive)
        var reply = try #require(try channel.readOutbound(as: ByteBuffer.self))
        let payload = try #require(try FrameDecoder().readPayload(from: &reply))
        guard case .error(let error) = try GatewayMessage(payload: payload).body else {
            Issue.record("expected an error reply")
            return
        }
        #expect(error.code == .malformedFrame)
    }

    @Test func anIdleConnectionBetweenFramesIsLeftAlone() throws {
        let channel = try self.channel()
        try channel.writeInbound(ByteBuffer(bytes: self.frame(5)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }
}
