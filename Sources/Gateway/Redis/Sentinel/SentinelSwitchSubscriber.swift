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
    private struct State: Sendable {
        var channel: (any Channel)?
        var reconnect: Scheduled<Void>?
        var failures = 0
        var next = 0
        var isStarted = false
        var isShutDown = false
    }

    private let resolver: SentinelResolver
    private let eventLoop: any EventLoop
    private let logger: Logger
    private let backoff = ExponentialBackoff(initial: .milliseconds(50), maximum: .seconds(1), jitter: 0.3)
    private let pingInterval: TimeAmount
    private let state = Mutex(State())
    private let faults: RateLimitedLog

    init(resolver: SentinelResolver, eventLoop: any EventLoop, logger: Logger, pingInterval: TimeAmount = .seconds(1)) {
        self.resolver = resolver
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.role"] = "sentinel-subscription"
        self.logger = logger
        self.pingInterval = pingInterval
        self.faults = RateLimitedLog(logger: logger, interval: .seconds(10))
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

    private func connect() {
        let configuration = self.resolver.configuration
        let index = self.state.withLock { state -> Int in
            defer { state.next = (state.next + 1) % configuration.sentinels.count }
            return state.next
        }
        let url = configuration.sentinelURL(index)
        let handshake = RedisConnection.handshakeCommands(for: url, clientName: nil)
        let masterName = configuration.masterName
        let pingInterval = self.pingInterval
        let logger = self.logger
        let onEvent: @Sendable (SentinelSubscriptionReplies.Event) -> Void = { event in
            switch event {
            case .subscribed:
                self.subscribed(to: url)
            case .switched(let switched) where switched.masterName == masterName:
                self.resolver.announced(.tcp(host: switched.newHost, port: switched.newPort))
            default:
                break
            }
        }
        let timeout = configuration.sentinelTimeout
        let connection = RedisConnection.Configuration(connectTimeout: timeout, commandTimeout: timeout, unresponsiveTimeout: nil, maximumReplySize: 1 << 20)
        RedisConnection.connectChannel(to: url, configuration: connection, on: self.eventLoop) {
            SentinelSubscriptionHandler(handshake: handshake, pingInterval: pingInterval, logger: logger, onEvent: onEvent)
        }.whenComplete { result in
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
                self.faults.log("sentinel-subscribe", "cannot subscribe to +switch-master on a sentinel; retrying", metadata: ["redis.sentinel": "\(url.endpoint)", "redis.error": "\(error)"])
                self.scheduleReconnect()
            }
        }
    }

    private func subscribed(to url: RedisURL) {
        self.state.withLock { $0.failures = 0 }
        self.logger.info("subscribed to +switch-master", metadata: ["redis.sentinel": "\(url.endpoint)"])
        // A failover announced while nobody listened is found this way.
        _ = self.resolver.resolve(on: self.eventLoop)
    }

    private func closed(_ channel: any Channel) {
        let shuttingDown = self.state.withLock { state in
            if state.channel === channel { state.channel = nil }
            return state.isShutDown
        }
        guard !shuttingDown else { return }
        self.faults.log("sentinel-subscription-closed", "the +switch-master subscription closed; subscribing again")
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
}

/// Sends the subscriber's handshake and `SUBSCRIBE +switch-master`, reports
/// what arrives (`SentinelSubscriptionReplies`), and keeps the connection
/// alive with `PING`.
private final class SentinelSubscriptionHandler: ChannelInboundHandler {
    typealias InboundIn = RESPValue
    typealias OutboundOut = RedisCommand

    private var replies: SentinelSubscriptionReplies
    private let handshake: [RedisCommand]
    private let pingInterval: TimeAmount
    private let logger: Logger
    private let onEvent: @Sendable (SentinelSubscriptionReplies.Event) -> Void
    private var pingTimer: RepeatedTask?
    private var awaitingPong = false

    init(handshake: [RedisCommand], pingInterval: TimeAmount, logger: Logger, onEvent: @escaping @Sendable (SentinelSubscriptionReplies.Event) -> Void) {
        self.replies = SentinelSubscriptionReplies(handshakeReplies: handshake.count)
        self.handshake = handshake
        self.pingInterval = pingInterval
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
            self.startPinging(context: context)
            self.onEvent(event)
        case .switched:
            self.onEvent(event)
        case .pong:
            self.awaitingPong = false
        case .failed(let reason):
            self.logger.warning("the +switch-master subscription failed; subscribing again", metadata: ["reason": "\(reason)"])
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.pingTimer?.cancel()
        self.pingTimer = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.logger.debug("the +switch-master subscription's connection failed", metadata: ["redis.error": "\(error)"])
        context.close(promise: nil)
    }

    private func startPinging(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.pingTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: self.pingInterval, delay: self.pingInterval) { _ in
            let (handler, context) = loopBound.value
            if handler.awaitingPong {
                handler.logger.warning("the sentinel did not answer PING within \(handler.pingInterval.nanoseconds / 1_000_000) ms; subscribing again")
                context.close(promise: nil)
                return
            }
            handler.awaitingPong = true
            context.writeAndFlush(Self.wrapOutboundOut(RedisCommand("PING")), promise: nil)
        }
    }
}
