@testable import Gateway
import GatewayProtocol
import Logging
import NIOCore
import NIOEmbedded
import Testing

/// A Redis command's timeout measures Redis's silence, not the queue: driven
/// on an embedded channel with a virtual clock, replies written in by hand.
@Suite struct RedisCommandTimeoutTests {
    static func channel(maximumInFlight: Int = .max) throws -> EmbeddedChannel {
        var logger = Logger(label: "cache-gateway.tests.redis-timeouts")
        logger.logLevel = .critical
        let channel = EmbeddedChannel(handler: RedisCommandHandler(queue: try RedisCommandQueue(
            unresponsiveTimeout: .seconds(5),
            maximumReplySize: 1 << 20,
            maximumCommandSize: 1 << 20,
            maximumInFlight: maximumInFlight,
            logger: logger
        )))
        try channel.connect(to: .init(unixDomainSocketPath: "/tmp/redis-timeout-test")).wait()
        return channel
    }

    /// Sends `count` GETs with a 5 ms timeout, as one pipeline.
    static func send(_ count: Int, on channel: EmbeddedChannel) -> [EventLoopFuture<RESPValue>] {
        let promises = (0..<count).map { _ in channel.eventLoop.makePromise(of: RESPValue.self) }
        let requests = promises.enumerated().map { index, promise in
            RedisRequest(command: .get(ByteBuffer(string: "k\(index)")), promise: promise, timeout: .milliseconds(5))
        }
        channel.writeAndFlush(RedisOutbound.many(requests), promise: nil)
        return promises.map(\.futureResult)
    }

    /// Redis answers one reply (its bytes) now.
    static func answer(on channel: EmbeddedChannel) throws {
        try channel.writeInbound(ByteBuffer(string: "$1\r\nv\r\n"))
        channel.pipeline.fireChannelReadComplete()
    }

    @Test func aDeepPipelineDoesNotTimeOutWhileRedisKeepsAnswering() throws {
        let channel = try Self.channel()
        let futures = Self.send(100, on: channel)
        // Each reply comes 3 ms after the one before: the last waits 300 ms in
        // all, sixty times its timeout, behind a Redis that never went silent.
        for _ in futures {
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(3))
            try Self.answer(on: channel)
        }
        for future in futures {
            #expect(try future.wait() == .bulkString(ByteBuffer(string: "v")))
        }
    }

    @Test func aSilentRedisFailsEveryWaitingCommandOneTimeoutAfterItsLastByte() throws {
        let channel = try Self.channel()
        let futures = Self.send(3, on: channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(4))
        try Self.answer(on: channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(4))
        // 8 ms after they were queued, 4 ms after the last byte: still waiting.
        let settled = NIOLoopBoundBox(0, eventLoop: channel.eventLoop)
        for future in futures.dropFirst() { future.whenComplete { _ in settled.value += 1 } }
        #expect(settled.value == 0)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        // The deadline has passed; it is confirmed a turn of the loop later
        // (the loop may have left Redis's bytes unread meanwhile).
        #expect(settled.value == 0)
        channel.embeddedEventLoop.advanceTime(by: RedisCommandQueue.expiryConfirmationDelay)
        #expect(settled.value == 2)
        for future in futures.dropFirst() {
            #expect(throws: GatewayError(.timeout, "")) { try future.wait() }
        }
    }

    @Test func bytesReadWhileTheDeadlineIsConfirmedSaveTheCommand() throws {
        let channel = try Self.channel()
        let futures = Self.send(2, on: channel)
        // The deadline passes with nothing read (as when the loop was busy
        // while Redis's replies waited in the socket); the loop then reads them.
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(5))
        try Self.answer(on: channel)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(2))
        #expect(try futures[0].wait() == .bulkString(ByteBuffer(string: "v")))
        try Self.answer(on: channel)
        #expect(try futures[1].wait() == .bulkString(ByteBuffer(string: "v")))
    }

    @Test func pastTheInFlightBoundACommandFailsAtOnceUnsent() throws {
        let channel = try Self.channel(maximumInFlight: 2)
        let futures = Self.send(2, on: channel)
        let refused = Self.send(1, on: channel)
        #expect(throws: GatewayError(.tooManyRequests, "")) { try refused[0].wait() }
        _ = futures
        channel.embeddedEventLoop.run()  // the flush at the end of the loop's turn
        // The turn's commands go out together, in one buffer.
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written) == "*2\r\n$3\r\nGET\r\n$2\r\nk0\r\n*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
    }

    @Test func commandsQueuedDirectlyInOneTurnGoOutInOneWriteAndAnswerTheirCallbacks() throws {
        let channel = try Self.channel()
        let handler = try channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self)
        let answers = NIOLoopBoundBox([String](), eventLoop: channel.eventLoop)
        for key in ["a", "b", "c"] {
            let request = RedisRequest(command: .get(ByteBuffer(string: key)), reply: .callback({ result in
                answers.value.append("\(key)=\((try? result.get()).map { "\($0)" } ?? "error")")
            }), timeout: .milliseconds(5))
            handler.queue.enqueueDirectly(request)
        }
        // Nothing is written before the end of the turn.
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.embeddedEventLoop.run()
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written) == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*2\r\n$3\r\nGET\r\n$1\r\nc\r\n")
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        // Both replies in one read, the second cut in two across reads.
        try channel.writeInbound(ByteBuffer(string: "$1\r\n1\r\n$1\r"))
        try channel.writeInbound(ByteBuffer(string: "\n2\r\n"))
        #expect(answers.value == ["a=\(RESPValue.bulkString(ByteBuffer(string: "1")))", "b=\(RESPValue.bulkString(ByteBuffer(string: "2")))"])
        // The connection closes: the command still waiting is answered with an error.
        try channel.close().wait()
        #expect(answers.value.last == "c=error")
        #expect(answers.value.count == 3)
    }

    @Test("a reply that cannot be decoded closes the connection and fails what waits, the replies before it answered")
    func aMalformedReplyClosesTheConnection() throws {
        let channel = try Self.channel()
        let futures = Self.send(3, on: channel)
        try channel.writeInbound(ByteBuffer(string: "$1\r\nv\r\n!bad\r\n$1\r\nw\r\n"))
        #expect(try futures[0].wait() == .bulkString(ByteBuffer(string: "v")))
        for future in futures.dropFirst() {
            let error = try #require(throws: GatewayError.self) { try future.wait() }
            #expect(error.code == .connectionClosed)
        }
        #expect(!channel.isActive)
    }
}
