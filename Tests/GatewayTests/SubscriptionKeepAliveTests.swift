@testable import Gateway
import Logging
import NIOCore
import NIOEmbedded
import Testing

/// `SubscriptionKeepAlive` on an embedded channel with a virtual clock: a
/// subscribed connection is pinged every interval, and one that leaves a
/// `PING` unanswered for a whole interval is closed.
@Suite struct SubscriptionKeepAliveTests {
    /// Starts the keep-alive when the channel becomes active; any inbound
    /// value counts as the `PONG`.
    final class Subscriber: ChannelInboundHandler {
        typealias InboundIn = RESPValue
        let keepAlive: SubscriptionKeepAlive

        init() {
            var logger = Logger(label: "cache-gateway.tests.keep-alive")
            logger.logLevel = .critical
            self.keepAlive = SubscriptionKeepAlive(interval: .seconds(1), logger: logger, peer: "the test peer", then: "closing")
        }

        func channelActive(context: ChannelHandlerContext) {
            self.keepAlive.start(context: context)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            self.keepAlive.pong()
        }

        func channelInactive(context: ChannelHandlerContext) {
            self.keepAlive.stop()
        }
    }

    static func subscribedChannel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: Subscriber())
        try channel.connect(to: .init(unixDomainSocketPath: "/tmp/keep-alive-test")).wait()
        return channel
    }

    /// The commands written so far, as their names.
    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var names: [String] = []
        while let command = try channel.readOutbound(as: RedisCommand.self) {
            names.append(String(buffer: command.argv[0]))
        }
        return names
    }

    @Test func aPeerThatAnswersEveryPingStaysConnected() throws {
        let channel = try Self.subscribedChannel()
        #expect(try Self.written(channel).isEmpty)
        for _ in 0..<5 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(1))
            #expect(try Self.written(channel) == ["PING"])
            try channel.writeInbound(RESPValue.simpleString("PONG"))
        }
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test func aPeerThatLeavesAPingUnansweredForAnIntervalIsClosed() throws {
        let channel = try Self.subscribedChannel()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(try Self.written(channel) == ["PING"])
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
        // Closed, it pings no more.
        channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(try Self.written(channel).isEmpty)
    }

    @Test func aLatePongStillCountsIfItArrivesBeforeTheNextPingIsDue() throws {
        let channel = try Self.subscribedChannel()
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
        try channel.writeInbound(RESPValue.simpleString("PONG"))
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(channel.isActive)
        #expect(try Self.written(channel) == ["PING", "PING"])
        _ = try channel.finish()
    }
}
