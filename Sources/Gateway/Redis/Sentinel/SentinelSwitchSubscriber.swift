import GatewayProtocol
import GatewaySystem
import Logging
import NIOCore
import Synchronization

/// A connection to one sentinel subscribed to `+switch-master`, so that a
/// failover reaches the resolver the moment a sentinel announces it, not
/// when the next reconnect asks.
///
/// It connects to the sentinels in turn (the next one after each failure),
/// and reconnects with backoff for as long as it runs. Each time it has
/// subscribed it has the resolver resolve again, since a failover may have
/// been announced while it was not listening. A connection that does not
/// answer its keep-alive `PING` within `pingInterval` is closed and replaced.
final class SentinelSwitchSubscriber: Sendable {
    private let subscription: ReconnectingSubscription

    init(resolver: SentinelResolver, eventLoop: any EventLoop, logger: Logger, pingInterval: TimeAmount = .seconds(1)) {
        var logger = logger
        logger[metadataKey: "redis.role"] = "sentinel-subscription"
        let faults = RateLimitedLog(logger: logger, interval: .seconds(10))
        // The sentinel the next attempt connects to.
        let next = Mutex(0)
        self.subscription = ReconnectingSubscription(
            eventLoop: eventLoop,
            backoff: ExponentialBackoff(initial: .milliseconds(50), maximum: .seconds(1), jitter: 0.3),
            connect: { [logger] subscription in
                let configuration = resolver.configuration
                let index = next.withLock { next -> Int in
                    defer { next = (next + 1) % configuration.sentinels.count }
                    return next
                }
                let url = configuration.sentinelURL(index)
                return Self.connect(to: url, resolver: resolver, on: eventLoop, pingInterval: pingInterval, logger: logger) {
                    subscription.subscribed()
                    logger.info("subscribed to +switch-master", metadata: ["redis.sentinel": "\(url.endpoint)"])
                    // A failover announced while nobody listened is found this way.
                    _ = resolver.resolve(on: eventLoop)
                }.flatMapErrorThrowing { error in
                    faults.log("sentinel-subscribe", "cannot subscribe to +switch-master on a sentinel; retrying", metadata: ["redis.sentinel": "\(url.endpoint)", "redis.error": "\(error)"])
                    throw error
                }
            },
            // Logged by `connect`, which knows the sentinel it tried.
            connectFailed: { _ in },
            lost: {
                faults.log("sentinel-subscription-closed", "the +switch-master subscription closed; subscribing again")
            }
        )
    }

    /// Starts connecting, in the background; calling it again does nothing.
    func start() {
        self.subscription.start()
    }

    /// Stops reconnecting and closes the connection.
    func shutdown() async {
        await self.subscription.shutdown()
    }

    /// Opens one subscribed connection to the sentinel at `url`; `subscribed`
    /// runs each time the subscription is confirmed.
    private static func connect(
        to url: RedisURL,
        resolver: SentinelResolver,
        on eventLoop: any EventLoop,
        pingInterval: TimeAmount,
        logger: Logger,
        subscribed: @escaping @Sendable () -> Void
    ) -> EventLoopFuture<any Channel> {
        let configuration = resolver.configuration
        let handshake = RedisConnection.handshakeCommands(for: url, clientName: nil)
        let masterName = configuration.masterName
        let onEvent: @Sendable (SentinelSubscriptionReplies.Event) -> Void = { event in
            switch event {
            case .subscribed:
                subscribed()
            case .switched(let switched) where switched.masterName == masterName:
                resolver.announced(.tcp(host: switched.newHost, port: switched.newPort))
            default:
                break
            }
        }
        let timeout = configuration.sentinelTimeout
        let connection = RedisConnection.Configuration(connectTimeout: timeout, commandTimeout: timeout, unresponsiveTimeout: nil, maximumReplySize: 1 << 20)
        return RedisConnection.connectChannel(to: url, configuration: connection, on: eventLoop) {
            SentinelSubscriptionHandler(handshake: handshake, pingInterval: pingInterval, logger: logger, onEvent: onEvent)
        }
    }
}

/// Sends the subscriber's handshake and `SUBSCRIBE +switch-master`, reports
/// what arrives (`SentinelSubscriptionReplies`), and keeps the connection
/// alive with `PING`.
private final class SentinelSubscriptionHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = RedisCommand

    private var replies: SentinelSubscriptionReplies
    private let handshake: [RedisCommand]
    private let keepAlive: SubscriptionKeepAlive
    private let logger: Logger
    private let onEvent: @Sendable (SentinelSubscriptionReplies.Event) -> Void

    init(handshake: [RedisCommand], pingInterval: TimeAmount, logger: Logger, onEvent: @escaping @Sendable (SentinelSubscriptionReplies.Event) -> Void) {
        self.replies = SentinelSubscriptionReplies(handshakeReplies: handshake.count)
        self.handshake = handshake
        self.keepAlive = SubscriptionKeepAlive(interval: pingInterval, logger: logger, peer: "the sentinel", then: "subscribing again")
        self.logger = logger
        self.onEvent = onEvent
    }

    func channelActive(context: ChannelHandlerContext) {
        for command in self.handshake + [RedisCommand("SUBSCRIBE", SentinelReplies.switchMasterChannel)] {
            context.write(Self.wrapOutboundOut(command), promise: nil)
        }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let event = self.replies.receive(Self.unwrapInboundIn(data))
        switch event {
        case .none:
            break
        case .subscribed:
            self.keepAlive.start(context: context)
            self.onEvent(event)
        case .switched:
            self.onEvent(event)
        case .pong:
            self.keepAlive.pong()
        case .failed(let reason):
            self.logger.warning("the +switch-master subscription failed; subscribing again", metadata: ["reason": "\(reason)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.keepAlive.stop()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("the +switch-master subscription's connection failed", metadata: ["redis.error": "\(error)"])
        context.close(promise: nil)
    }
}
