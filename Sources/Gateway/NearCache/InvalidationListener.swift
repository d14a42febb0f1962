import GatewayProtocol
import GatewaySystem
import Logging
import NIOCore
import Synchronization

/// The near-cache's own connection to Redis, subscribed to
/// `__redis__:invalidate`: the data connections redirect their tracking
/// invalidations to it (`TrackingState`).
///
/// It reconnects with backoff for as long as it runs. Every time it
/// subscribes it reports its (new) client id, and every time its connection
/// closes it reports `.lost`. A connection that stops answering its keep-alive
/// `PING` (sent every `pingInterval` once subscribed) for a whole interval is
/// closed, so that a silently dead connection (a network partition) cannot
/// keep the near-cache serving without invalidations for longer than two
/// intervals.
///
/// It connects where the pool's `RedisEndpointSource` says, as the data
/// connections do (a Sentinel's master). A subscription made to an endpoint
/// that stopped being the current one before it completed is closed instead
/// of reported, so that data connections never redirect their tracking to a
/// client id of another server; `reconnect()` moves it after a failover.
final class InvalidationListener: Sendable {
    /// What the listener reports.
    enum Event: Sendable, Equatable {
        /// Subscribed as client `clientID`.
        case subscribed(clientID: Int64)
        /// These Redis keys changed.
        case invalidated([String])
        /// Every key changed (`FLUSHDB`, `FLUSHALL`).
        case flushed
        /// The connection closed: invalidations may have been missed.
        case lost
    }

    private let subscription: ReconnectingSubscription

    /// A listener that connects where `source` says, once started. `onEvent` is called on
    /// `eventLoop`, in the order the events happen.
    init(
        source: any RedisEndpointSource,
        configuration: RedisConnection.Configuration,
        eventLoop: any EventLoop,
        logger: Logger,
        backoff: ExponentialBackoff = ExponentialBackoff(initial: .milliseconds(20), maximum: .milliseconds(500), jitter: 0.3),
        pingInterval: TimeAmount = .seconds(1),
        onEvent: @escaping @Sendable (Event) -> Void
    ) {
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(source)"
        logger[metadataKey: "redis.role"] = "invalidations"
        // While Redis is away every reconnect fails: said once per 10 s.
        let lostLog = RateLimitedLog(logger: logger, interval: .seconds(10))
        self.subscription = ReconnectingSubscription(
            eventLoop: eventLoop,
            backoff: backoff,
            connect: { [logger] subscription in
                Self.connect(to: source, configuration: configuration, on: eventLoop, pingInterval: pingInterval, logger: logger) { event in
                    if case .subscribed = event { subscription.subscribed() }
                    onEvent(event)
                }
            },
            connectFailed: { [logger] error in
                logger.debug("cannot connect the invalidation listener", metadata: ["redis.error": "\(error)"])
            },
            lost: {
                lostLog.log("listener-closed", "the near-cache's invalidation connection closed; the near-cache is flushed and off until it is back")
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

    /// The listener's connection, if open (for tests that kill it).
    var isConnected: Bool { self.subscription.isConnected }

    /// Closes the connection (it reconnects, to wherever the source now
    /// says): the server moved.
    func reconnect() {
        self.subscription.reconnect()
    }

    /// Opens one subscribed connection to where `source` says now.
    private static func connect(
        to source: any RedisEndpointSource,
        configuration: RedisConnection.Configuration,
        on eventLoop: any EventLoop,
        pingInterval: TimeAmount,
        logger: Logger,
        onEvent: @escaping @Sendable (Event) -> Void
    ) -> EventLoopFuture<any Channel> {
        source.resolve(on: eventLoop).flatMap { url in
            let handshake = RedisConnection.handshakeCommands(for: url, clientName: "cache-gateway-invalidations")
            let report: @Sendable (Event, any Channel) -> Void = { event, channel in
                // Subscribed to a server that is no longer current: its client id must not be used.
                if case .subscribed = event, let current = source.currentEndpoint, current != url.endpoint {
                    channel.close(promise: nil)
                    return
                }
                onEvent(event)
            }
            return RedisConnection.connectChannel(to: url, configuration: configuration, on: eventLoop) {
                InvalidationHandler(handshake: handshake, pingInterval: pingInterval, logger: logger, onEvent: report)
            }
        }
    }
}

/// Sends the listener's handshake, `CLIENT ID` and `SUBSCRIBE`, reports what
/// arrives (`InvalidationReplies`), and keeps the connection alive with `PING`.
private final class InvalidationHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = RedisCommand

    private var replies: InvalidationReplies
    private let handshake: [RedisCommand]
    private let keepAlive: SubscriptionKeepAlive
    private let logger: Logger
    private let onEvent: @Sendable (InvalidationListener.Event, any Channel) -> Void

    init(handshake: [RedisCommand], pingInterval: TimeAmount, logger: Logger, onEvent: @escaping @Sendable (InvalidationListener.Event, any Channel) -> Void) {
        self.replies = InvalidationReplies(handshakeReplies: handshake.count)
        self.handshake = handshake
        self.keepAlive = SubscriptionKeepAlive(interval: pingInterval, logger: logger, peer: "the invalidation connection", then: "reconnecting")
        self.logger = logger
        self.onEvent = onEvent
    }

    func channelActive(context: ChannelHandlerContext) {
        for command in self.handshake + [RedisCommand("CLIENT", "ID"), RedisCommand("SUBSCRIBE", InvalidationReplies.channel)] {
            context.write(Self.wrapOutboundOut(command), promise: nil)
        }
        context.flush()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch self.replies.receive(Self.unwrapInboundIn(data)) {
        case .none:
            break
        case .subscribed(let id):
            self.logger.info("near-cache invalidations subscribed", metadata: ["redis.client_id": "\(id)"])
            self.keepAlive.start(context: context)
            self.onEvent(.subscribed(clientID: id), context.channel)
        case .invalidated(let keys):
            self.onEvent(.invalidated(keys), context.channel)
        case .flushed:
            self.onEvent(.flushed, context.channel)
        case .pong:
            self.keepAlive.pong()
        case .failed(let reason):
            self.logger.warning("the invalidation listener's connection failed; reconnecting", metadata: ["reason": "\(reason)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.keepAlive.stop()
        self.onEvent(.lost, context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.warning("the invalidation listener's connection failed; reconnecting", metadata: ["redis.error": "\(error)"])
        context.close(promise: nil)
    }
}
