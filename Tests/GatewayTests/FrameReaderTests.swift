@testable import Gateway
import GatewayProtocol
import NIOCore
import NIOEmbedded
import Testing

/// The gateway's framing and frame deadline, driven on an embedded channel
/// with a virtual clock.
@Suite struct FrameReaderTests {
    func channel(maxFrameSize: Int = 1024) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: FrameReader(maxFrameSize: maxFrameSize, timeout: .seconds(1), reading: ReadingState()))
        try channel.connect(to: .init(unixDomainSocketPath: "/tmp/frame-reader-test")).wait()
        return channel
    }

    /// A frame whose payload is `payloadLength` bytes of `fill`.
    func frame(_ payloadLength: Int, fill: UInt8 = 0x90) -> [UInt8] {
        let length = UInt32(payloadLength)
        return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
            + [UInt8](repeating: fill, count: payloadLength)
    }

    func payloads(_ channel: EmbeddedChannel) throws -> [[UInt8]] {
        var payloads: [[UInt8]] = []
        while let buffer = try channel.readInbound(as: ByteBuffer.self) { payloads.append(Array(buffer.readableBytesView)) }
        return payloads
    }

    static let stream: [UInt8] = {
        let reader = FrameReaderTests()
        return reader.frame(3, fill: 1) + reader.frame(0) + reader.frame(10, fill: 2) + reader.frame(1, fill: 3)
    }()
    static let expected: [[UInt8]] = [[1, 1, 1], [], [UInt8](repeating: 2, count: 10), [3]]

    /// Every way of cutting the stream in two, and in three, gives the same payloads.
    @Test func everySplitGivesTheSamePayloads() throws {
        let stream = Self.stream
        for first in 0...stream.count {
            for second in first...stream.count where second == first || (second - first) % 3 == 0 || second == stream.count {
                let channel = try self.channel()
                for part in [stream[..<first], stream[first..<second], stream[second...]] where !part.isEmpty {
                    try channel.writeInbound(ByteBuffer(bytes: part))
                }
                #expect(try self.payloads(channel) == Self.expected, "cut at \(first) and \(second)")
                #expect(channel.isActive)
                _ = try channel.finish()
            }
        }
    }

    @Test func completeFramesInAnySplitArmNoDeadline() throws {
        let channel = try self.channel()
        // Single bytes, with time passing between them but never a full second per frame.
        for byte in Self.stream {
            try channel.writeInbound(ByteBuffer(bytes: [byte]))
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(50))
        }
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(channel.isActive)
        #expect(try self.payloads(channel) == Self.expected)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func aStalledFrameIsAFramingErrorAtItsDeadline() throws {
        let channel = try self.channel()
        try channel.writeInbound(ByteBuffer(bytes: self.frame(2)))  // one complete frame
        try channel.writeInbound(ByteBuffer(bytes: Array(self.frame(100).prefix(30))))  // and the start of another
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        try channel.throwIfErrorCaught()
        try channel.writeInbound(ByteBuffer(bytes: [0x90]))  // more bytes do not extend the deadline
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        // Passed on as a framing error: the connection answers, counts and closes (see ConnectionHandlerTests).
        let error = #expect(throws: GatewayError.self) { try channel.throwIfErrorCaught() }
        #expect(error?.code == .malformedMessage)
        #expect(try self.payloads(channel) == [[0x90, 0x90]])
    }

    @Test func aFrameThatStartsAsAnotherEndsGetsADeadlineOfItsOwn() throws {
        let channel = try self.channel()
        let first = self.frame(10)
        try channel.writeInbound(ByteBuffer(bytes: Array(first.prefix(5))))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        // The first frame completes and a second starts in the same read.
        try channel.writeInbound(ByteBuffer(bytes: Array(first.dropFirst(5)) + Array(self.frame(10).prefix(6))))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(throws: Never.self, "the second frame was timed from the first one's start") { try channel.throwIfErrorCaught() }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(throws: GatewayError.self) { try channel.throwIfErrorCaught() }
    }

    @Test func theDeadlineDoesNotRunWhileTheGatewayHasStoppedReading() throws {
        let reading = ReadingState()
        let channel = EmbeddedChannel(handler: FrameReader(maxFrameSize: 1024, timeout: .seconds(1), reading: reading))
        try channel.connect(to: .init(unixDomainSocketPath: "/tmp/frame-reader-test")).wait()
        try channel.writeInbound(ByteBuffer(bytes: Array(self.frame(10).prefix(6))))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(500))
        reading.pause()
        channel.embeddedEventLoop.advanceTime(by: .seconds(30))
        #expect(throws: Never.self, "paused by the gateway, not by the peer") { try channel.throwIfErrorCaught() }
        reading.resume(at: channel.embeddedEventLoop.now)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        #expect(throws: Never.self, "a whole timeout from the resumption") { try channel.throwIfErrorCaught() }
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(throws: GatewayError.self) { try channel.throwIfErrorCaught() }
    }

    @Test func anIdleConnectionBetweenFramesIsLeftAlone() throws {
        let channel = try self.channel()
        try channel.writeInbound(ByteBuffer(bytes: self.frame(5)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(60))
        #expect(channel.isActive)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func aFrameAboveTheLimitIsAnErrorAndNothingIsReadAfterIt() throws {
        let channel = try self.channel(maxFrameSize: 64)
        // The length alone is enough to refuse it: nothing of the payload is buffered.
        let error = #expect(throws: GatewayError.self) { try channel.writeInbound(ByteBuffer(bytes: self.frame(2) + [0, 0, 0, 65])) }
        #expect(error?.code == .frameTooLarge)
        #expect(try self.payloads(channel) == [[0x90, 0x90]])
        try channel.writeInbound(ByteBuffer(bytes: self.frame(2)))
        #expect(try self.payloads(channel) == [])
    }
}
