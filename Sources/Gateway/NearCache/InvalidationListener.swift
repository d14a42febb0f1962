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

    private struct State: Sendable {
        var channel: (any Channel)?
        var reconnect: Scheduled<Void>?
        var failures = 0
        var isStarted = false
        var isShutDown = false
    }

    private let source: any RedisEndpointSource
    private let configuration: RedisConnection.Configuration
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let backoff: ExponentialBackoff
    private let pingInterval: TimeAmount
    private let onEvent: @Sendable (Event) -> Void
    private let state = Mutex(State())
    /// While Redis is away every reconnect fails: said once per 10 s.
    private let lostLog: RateLimitedLog

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
        self.source = source
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(source)"
        logger[metadataKey: "redis.role"] = "invalidations"
        self.logger = logger
        self.lostLog = RateLimitedLog(logger: logger, interval: .seconds(10))
        self.backoff = backoff
        self.pingInterval = pingInterval
        self.onEvent = onEvent
    }

    /// Starts connecting, in the background; calling it again does nothing.
    func start() {
        let start = self.state.withLock { state -> Bool in
            guard !state.isStarted, !state.isShutDown else { return false }
            state.isStarted = true
            return true
        }
        if start { self.connect() }
    }

    /// Stops reconnecting and closes the connection.
    func shutdown() async {
        let (channel, timer) = self.state.withLock { state in
            state.isShutDown = true
            defer { state.reconnect = nil }
            return (state.channel, state.reconnect)
        }
        timer?.cancel()
        try? await channel?.close()
    }

    /// The listener's connection, if open (for tests that kill it).
    var isConnected: Bool { self.state.withLock { $0.channel?.isActive ?? false } }

    /// Closes the connection (it reconnects, to wherever the source now
    /// says): the server moved.
    func reconnect() {
        let channel = self.state.withLock { $0.channel }
        channel?.close(promise: nil)
    }

    private func connect() {
        let eventLoop = self.eventLoop
        let configuration = self.configuration
        let pingInterval = self.pingInterval
        let logger = self.logger
        let source = self.source
        let connected = self.source.resolve(on: eventLoop).flatMap { url in
            let handshake = RedisConnection.handshakeCommands(for: url, clientName: "cache-gateway-invalidations")
            let onEvent: @Sendable (Event, any Channel) -> Void = { event, channel in
                if case .subscribed = event {
                    // Subscribed to a server that is no longer current: its client id must not be used.
                    if let current = source.currentEndpoint, current != url.endpoint {
                        channel.close(promise: nil)
                        return
                    }
                    self.subscribed()
                }
                self.onEvent(event)
            }
            return RedisConnection.connectChannel(to: url, configuration: configuration, on: eventLoop) {
                InvalidationHandler(handshake: handshake, pingInterval: pingInterval, logger: logger, onEvent: onEvent)
            }
        }
        connected.whenComplete { result in
            switch result {
            case .success(let channel):
                let keep = self.state.withLock { state -> Bool in
                    guard !state.isShutDown else { return false }
                    state.channel = channel
                    return true
                }
                guard keep else {
                    channel.close(promise: nil)
                    return
                }
                channel.closeFuture.whenComplete { _ in self.closed(channel) }
            case .failure(let error):
                self.logger.debug("cannot connect the invalidation listener", metadata: ["redis.error": "\(error)"])
                self.scheduleReconnect()
            }
        }
    }

    private func closed(_ channel: any Channel) {
        let shuttingDown = self.state.withLock { state in
            if state.channel === channel { state.channel = nil }
            return state.isShutDown
        }
        guard !shuttingDown else { return }
        self.lostLog.log("listener-closed", "the near-cache's invalidation connection closed; the near-cache is flushed and off until it is back")
        self.scheduleReconnect()
    }

    private func scheduleReconnect() {
        self.state.withLock { state in
            guard !state.isShutDown else { return }
            state.failures += 1
            let delay = self.backoff.delay(afterFailures: state.failures, random: Double.random(in: 0..<1))
            // Scheduling runs nothing inline, so it is safe under the lock.
            state.reconnect = self.eventLoop.scheduleTask(in: delay) { self.connect() }
        }
    }

    /// A subscription succeeded: the backoff starts over.
    private func subscribed() {
        self.state.withLock { $0.failures = 0 }
    }
}

/// Sends the listener's handshake, `CLIENT ID` and `SUBSCRIBE`, reports what
/// arrives (`InvalidationReplies`), and keeps the connection alive with `PING`.
private final class InvalidationHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = RedisCommand

    private var replies: InvalidationReplies
    private let handshake: [RedisCommand]
    private let pingInterval: TimeAmount
    private let logger: Logger
    private let onEvent: @Sendable (InvalidationListener.Event, any Channel) -> Void
    private var pingTimer: RepeatedTask?
    private var awaitingPong = false

    init(handshake: [RedisCommand], pingInterval: TimeAmount, logger: Logger, onEvent: @escaping @Sendable (InvalidationListener.Event, any Channel) -> Void) {
        self.replies = InvalidationReplies(handshakeReplies: handshake.count)
        self.handshake = handshake
        self.pingInterval = pingInterval
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
            self.startPinging(context: context)
            self.onEvent(.subscribed(clientID: id), context.channel)
        case .invalidated(let keys):
            self.onEvent(.invalidated(keys), context.channel)
        case .flushed:
            self.onEvent(.flushed, context.channel)
        case .pong:
            self.awaitingPong = false
        case .failed(let reason):
            self.logger.warning("the invalidation listener's connection failed; reconnecting", metadata: ["reason": "\(reason)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.pingTimer?.cancel()
        self.pingTimer = nil
        self.onEvent(.lost, context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.warning("the invalidation listener's connection failed; reconnecting", metadata: ["redis.error": "\(error)"])
        context.close(promise: nil)
    }

    private func startPinging(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.pingTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: self.pingInterval, delay: self.pingInterval) { _ in
            let (handler, context) = loopBound.value
            if handler.awaitingPong {
                handler.logger.warning("the invalidation connection did not answer PING within \(handler.pingInterval.nanoseconds / 1_000_000) ms; reconnecting")
                context.close(promise: nil)
                return
            }
            handler.awaitingPong = true
            context.writeAndFlush(Self.wrapOutboundOut(RedisCommand("PING")), promise: nil)
        }
    }
}
