import GatewayProtocol
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A fixed number of pipelined connections to one Redis server, kept
/// connected in the background.
///
/// Each connection slot reconnects on its own with exponential backoff and
/// jitter (`RedisBackoff`); the decisions are made by a
/// `RedisReconnectStateMachine` per slot, and this class only performs them.
/// Commands go to the connected slots in round-robin order; a pipeline goes
/// to one connection as a whole, so its commands stay in order.
///
/// **Where it connects.** Every connect asks the pool's `RedisEndpointSource`
/// for the URL: a fixed one, or a Sentinel's master found again each time.
/// When the source's endpoint changes (a failover), every connection to
/// another endpoint is taken out of use at once and closed, and the slots
/// waiting out a backoff connect at once; a connection that opens to an
/// endpoint that is no longer current is closed as a failed connect. So no
/// command is sent to the old server once the change is known.
///
/// **Fail fast.** When no connection is up, a command fails at once with
/// `GatewayError(.unavailable)` instead of waiting for a reconnect: the
/// gateway treats Redis as a cache and would rather miss than stall. Commands
/// in flight on a connection that drops fail with `.connectionClosed`. After
/// `shutdown()`, commands fail with `.shuttingDown`.
///
/// Run it as a swift-service-lifecycle `Service` (`run()` starts it and shuts
/// it down on graceful shutdown), or call `start()` and `shutdown()`. A
/// started pool must be shut down: its reconnect timers and connections keep
/// it alive until then.
public final class RedisConnectionPool: Sendable {
    /// Settings for a pool.
    public struct Configuration: Sendable, Hashable {
        /// The number of connections; at least 1.
        public var size: Int
        /// Settings for each connection.
        public var connection: RedisConnection.Configuration
        /// The reconnect policy.
        public var backoff: RedisBackoff

        /// Four connections with default settings.
        public init(
            size: Int = 4,
            connection: RedisConnection.Configuration = RedisConnection.Configuration(),
            backoff: RedisBackoff = .standard
        ) {
            self.size = size
            self.connection = connection
            self.backoff = backoff
        }
    }

    private struct Slot: Sendable {
        var machine: RedisReconnectStateMachine
        var connection: RedisConnection?
        var connectAttempt: EventLoopFuture<RedisConnection>?
        var reconnectTimer: Scheduled<Void>?
        let eventLoop: any EventLoop
        /// Whether this slot has been connected before: its next connection is a reconnect.
        var wasConnected = false
    }

    private struct State: Sendable {
        var slots: [Slot]
        var nextSlot = 0
        var isShutDown = false
        /// The slots that have not finished their first connect attempt.
        var firstAttemptsPending: Set<Int>
        /// Tasks in `waitForFirstConnectAttempts()`, by id.
        var firstAttemptWaiters: [Int: CheckedContinuation<Void, Never>] = [:]
        var nextWaiterID = 0

        /// Notes that `slot` finished an attempt; returns the waiters to resume
        /// once every slot has finished its first.
        mutating func attemptFinished(slot: Int) -> [CheckedContinuation<Void, Never>] {
            guard self.firstAttemptsPending.remove(slot) != nil, self.firstAttemptsPending.isEmpty else { return [] }
            defer { self.firstAttemptWaiters = [:] }
            return Array(self.firstAttemptWaiters.values)
        }
    }

    /// Where connections go.
    public let source: any RedisEndpointSource
    /// The server (its description hides the password): with a source that
    /// moves, the URL as last resolved.
    public var url: RedisURL { self.source.currentURL }
    /// The pool's settings.
    public let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let metrics: GatewayMetrics?
    /// Connect failures and lost connections repeat for as long as Redis is
    /// away (every slot, every backoff step): logged once per interval per kind.
    private let faults: RateLimitedLog

    /// The least time between two log lines about failed connects, or about lost connections.
    public static let faultLogInterval = TimeAmount.seconds(10)
    // Lock discipline: no NIO call that can run callbacks inline (completing
    // promises, registering callbacks on futures, closing channels) happens
    // while the lock is held, so callbacks never re-enter it.
    private let state: Mutex<State>
    private let openingObserver = Mutex<(@Sendable (RedisConnection) -> Void)?>(nil)

    /// Calls `observer` with each connection as it opens, before the pool
    /// hands it out for any command (the near-cache enables tracking on it
    /// and learns of its closing from its `closeFuture`). Set it before `start()`.
    public func observeOpenings(_ observer: @escaping @Sendable (RedisConnection) -> Void) {
        self.openingObserver.withLock { $0 = observer }
    }

    /// Creates a pool; it connects when started. Throws
    /// `GatewayError(.invalidConfiguration)` when `size` is below 1. With
    /// `metrics`, it records connects, reconnects, lost connections and the
    /// round trip of every command.
    public convenience init(
        url: RedisURL,
        configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        metrics: GatewayMetrics? = nil
    ) throws {
        try self.init(source: FixedRedisEndpoint(url), configuration: configuration, eventLoopGroup: eventLoopGroup, logger: logger, metrics: metrics)
    }

    /// Creates a pool that asks `source` where to connect before every
    /// connect (see the type's documentation); it starts and stops `source`
    /// with itself.
    public init(
        source: any RedisEndpointSource,
        configuration: Configuration = Configuration(),
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        metrics: GatewayMetrics? = nil
    ) throws {
        guard configuration.size >= 1 else {
            throw GatewayError(.invalidConfiguration, "a Redis pool needs at least one connection, not \(configuration.size)")
        }
        self.source = source
        var configuration = configuration
        if source.requiresMaster { configuration.connection.requiresMaster = true }
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(source)"
        self.logger = logger
        self.metrics = metrics
        self.faults = RateLimitedLog(logger: logger, interval: Self.faultLogInterval)
        let slots = (0..<configuration.size).map { _ in
            Slot(machine: RedisReconnectStateMachine(backoff: configuration.backoff), eventLoop: eventLoopGroup.next())
        }
        self.state = Mutex(State(slots: slots, firstAttemptsPending: Set(slots.indices)))
        source.observeChanges { [weak self] endpoint in self?.endpointChanged(to: endpoint) }
    }

    /// The number of connections that are up right now.
    public var availableConnectionCount: Int {
        self.state.withLock { state in
            state.slots.count { $0.connection?.isActive ?? false }
        }
    }

    // MARK: Lifecycle

    /// Starts connecting every slot, in the background. Calling it again, or
    /// after `shutdown()`, does nothing.
    public func start() {
        self.source.start()
        let actions = self.state.withLock { state in
            state.slots.indices.map { index in (index, state.slots[index].machine.start()) }
        }
        for (index, action) in actions {
            self.perform(action, slot: index, connection: nil)
        }
    }

    /// Waits until every connection has made its first attempt to connect
    /// (whether it succeeded or failed), the pool has shut down, or the task is
    /// cancelled. After `start()`, it lets a caller begin with Redis connected
    /// when Redis is up, without waiting for a Redis that is down (a refused or
    /// timed-out attempt counts).
    public func waitForFirstConnectAttempts() async {
        let id = self.state.withLock { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.firstAttemptsPending.isEmpty || state.isShutDown || Task.isCancelled { return true }
                    state.firstAttemptWaiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.firstAttemptWaiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }

    /// Stops reconnecting, closes every connection (commands in flight fail
    /// with `.connectionClosed`) and waits until they are closed, including
    /// connections still being established.
    public func shutdown() async {
        let (connections, attempts, waiters) = self.state.withLock { state in
            state.isShutDown = true
            let waiters = Array(state.firstAttemptWaiters.values)
            state.firstAttemptWaiters = [:]
            var connections: [RedisConnection] = []
            var attempts: [EventLoopFuture<RedisConnection>] = []
            for index in state.slots.indices {
                switch state.slots[index].machine.shutdown() {
                case .closeConnection:
                    if let connection = state.slots[index].connection { connections.append(connection) }
                case .cancelReconnectTimer:
                    // Cancelling only fails the timer's own future, which has no callbacks.
                    state.slots[index].reconnectTimer?.cancel()
                case .none, .connect, .scheduleReconnect:
                    break
                }
                state.slots[index].connection = nil
                state.slots[index].reconnectTimer = nil
                if let attempt = state.slots[index].connectAttempt { attempts.append(attempt) }
            }
            return (connections, attempts, waiters)
        }
        for waiter in waiters { waiter.resume() }
        for connection in connections {
            await connection.close()
        }
        for attempt in attempts {
            // The attempt's own callback closes the connection too (the state
            // machine answers `.closeConnection`); closing twice is harmless,
            // and waiting here makes shutdown complete only when it is closed.
            if let connection = try? await attempt.get() {
                await connection.close()
            }
        }
        await self.source.shutdown()
        self.logger.debug("Redis pool shut down")
    }

    // MARK: Sending

    /// Sends `command` on the next connected connection and returns a future
    /// for its reply; fails at once with `.unavailable` when none is up. See
    /// `RedisConnection.sendFuture(_:timeout:)`.
    ///
    /// With `preferring`, a connection on that event loop is chosen when one is
    /// up, so that the reply completes where the caller runs (no thread hop).
    public func sendFuture(_ command: RedisCommand, timeout: TimeAmount? = nil, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<RESPValue> {
        switch self.nextConnection(preferring: eventLoop) {
        case .success(let connection): connection.sendFuture(command, timeout: timeout)
        case .failure(let error): self.eventLoopGroup.any().makeFailedFuture(error)
        }
    }

    /// Sends `command` on the next connected connection (one on `eventLoop`
    /// when one is up) and calls `answer` with its reply on `eventLoop`, with
    /// no future: the lookup path. The errors are `sendFuture`'s; when no
    /// connection is up, `answer` is called in a later turn of `eventLoop`.
    func send(_ command: RedisCommand, timeout: TimeAmount? = nil, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<RESPValue, any Error>) -> Void) {
        switch self.nextConnection(preferring: eventLoop) {
        case .success(let connection):
            if connection.eventLoop === eventLoop {
                connection.send(command, timeout: timeout, then: answer)
            } else {
                connection.send(command, timeout: timeout) { result in eventLoop.execute { answer(result) } }
            }
        case .failure(let error):
            eventLoop.execute { answer(.failure(error)) }
        }
    }

    /// Sends `commands` on one connection with a single flush; see
    /// `RedisConnection.pipelineFuture(_:timeout:)`.
    public func pipelineFuture(_ commands: [RedisCommand], timeout: TimeAmount? = nil, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<[RESPValue]> {
        switch self.nextConnection(preferring: eventLoop) {
        case .success(let connection): connection.pipelineFuture(commands, timeout: timeout)
        case .failure(let error): self.eventLoopGroup.any().makeFailedFuture(error)
        }
    }

    /// Sends `command` and waits for its reply; see `sendFuture(_:timeout:)`.
    public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
        try await self.nextConnection().get().send(command, timeout: timeout)
    }

    /// Sends `commands` on one connection and waits for all replies; see
    /// `pipelineFuture(_:timeout:)`.
    public func pipeline(_ commands: [RedisCommand], timeout: TimeAmount? = nil) async throws -> [RESPValue] {
        try await self.nextConnection().get().pipeline(commands, timeout: timeout)
    }

    /// A connected connection on `preferred` if there is one, otherwise the
    /// next connected slot's connection in round-robin order.
    private func nextConnection(preferring preferred: (any EventLoop)? = nil) -> Result<RedisConnection, GatewayError> {
        self.state.withLock { state in
            if state.isShutDown {
                return .failure(GatewayError(.shuttingDown, "the Redis pool for \(self.source) is shut down"))
            }
            // By index, not `for slot in`: copying a slot out of the array
            // retains and releases everything it holds, on every lookup.
            if let preferred {
                for index in state.slots.indices where state.slots[index].eventLoop === preferred {
                    if let connection = state.slots[index].connection, connection.isActive { return .success(connection) }
                }
            }
            let count = state.slots.count
            for offset in 0..<count {
                let index = (state.nextSlot + offset) % count
                if let connection = state.slots[index].connection, connection.isActive {
                    state.nextSlot = (index + 1) % count
                    return .success(connection)
                }
            }
            if state.slots.allSatisfy({ $0.machine.state == .idle }) {
                return .failure(GatewayError(.unavailable, "the Redis pool for \(self.source) has not been started"))
            }
            return .failure(
                GatewayError(.unavailable, "no connection to Redis at \(self.source) is up (\(count) reconnecting)")
            )
        }
    }

    // MARK: Events

    private func perform(_ action: RedisReconnectStateMachine.Action, slot index: Int, connection: RedisConnection?) {
        switch action {
        case .none:
            break
        case .connect:
            self.connect(slot: index)
        case .scheduleReconnect(let delay):
            self.state.withLock { state in
                // Scheduling runs nothing inline, so it is safe under the lock,
                // and storing the handle there lets shutdown cancel it.
                let eventLoop = state.slots[index].eventLoop
                state.slots[index].reconnectTimer = eventLoop.scheduleTask(in: delay) {
                    self.reconnectTimerFired(slot: index)
                }
            }
        case .cancelReconnectTimer:
            let timer = self.state.withLock { state in
                defer { state.slots[index].reconnectTimer = nil }
                return state.slots[index].reconnectTimer
            }
            timer?.cancel()
        case .closeConnection:
            connection?.close()
        }
    }

    private func connect(slot index: Int) {
        let eventLoop = self.state.withLock { $0.slots[index].eventLoop }
        var slotLogger = self.logger
        slotLogger[metadataKey: "redis.pool.slot"] = "\(index)"
        let logger = slotLogger
        let configuration = self.configuration.connection
        let metrics = self.metrics
        let attempt = self.source.resolve(on: eventLoop).flatMap { url in
            RedisConnection.connect(to: url, configuration: configuration, on: eventLoop, logger: logger, metrics: metrics)
        }
        self.state.withLock { $0.slots[index].connectAttempt = attempt }
        attempt.whenComplete { result in
            self.connectCompleted(slot: index, result: result, logger: logger)
        }
    }

    private func connectCompleted(slot index: Int, result: Result<RedisConnection, any Error>, logger: Logger) {
        switch result {
        case .success(let connection) where self.source.currentEndpoint.map({ $0 != connection.url.endpoint }) ?? false:
            // The endpoint moved while this connection was being made.
            connection.close()
            let error = GatewayError(.unavailable, "Redis moved from \(connection.url.endpoint) while connecting to it")
            self.connectCompleted(slot: index, result: .failure(error), logger: logger)
        case .success(let connection):
            self.openingObserver.withLock { $0 }?(connection)
            let (action, reconnect, waiters) = self.state.withLock { state in
                state.slots[index].connectAttempt = nil
                let waiters = state.attemptFinished(slot: index)
                let action = state.slots[index].machine.connectSucceeded(now: .now())
                let reconnect = state.slots[index].wasConnected
                if action == .none {
                    state.slots[index].connection = connection
                    state.slots[index].wasConnected = true
                }
                return (action, reconnect, waiters)
            }
            for waiter in waiters { waiter.resume() }
            self.metrics?.recordBackendConnect(succeeded: true, reconnect: reconnect && action == .none)
            if action == .none {
                self.metrics?.recordBackendConnections(self.availableConnectionCount)
                logger.info("connected to Redis")
                // Registered outside the lock: an already closed connection runs the callback inline.
                connection.closeFuture.whenComplete { _ in
                    self.connectionClosed(slot: index, connection: connection, logger: logger)
                }
            }
            self.perform(action, slot: index, connection: connection)
        case .failure(let error):
            let (action, waiters) = self.state.withLock { state in
                state.slots[index].connectAttempt = nil
                return (state.slots[index].machine.connectFailed(random: Double.random(in: 0..<1)), state.attemptFinished(slot: index))
            }
            for waiter in waiters { waiter.resume() }
            self.metrics?.recordBackendConnect(succeeded: false, reconnect: false)
            if case .scheduleReconnect(let delay) = action {
                self.faults.log(
                    "redis-connect",
                    "cannot connect to Redis; retrying",
                    metadata: ["redis.error": "\(error)", "redis.retry_in": "\(delay.redisLogDescription)", "redis.pool.slot": "\(index)"]
                )
            }
            self.perform(action, slot: index, connection: nil)
        }
    }

    private func connectionClosed(slot index: Int, connection: RedisConnection, logger: Logger) {
        let action = self.state.withLock { state -> RedisReconnectStateMachine.Action in
            // Only the slot's current connection counts; an old one closing late is ignored.
            guard state.slots[index].connection === connection else { return .none }
            state.slots[index].connection = nil
            return state.slots[index].machine.connectionClosed(now: .now(), random: Double.random(in: 0..<1))
        }
        switch action {
        case .connect:
            self.noteDisconnect()
            self.faults.log("redis-closed", "the Redis connection closed; reconnecting", metadata: ["redis.pool.slot": "\(index)"])
        case .scheduleReconnect(let delay):
            self.noteDisconnect()
            self.faults.log(
                "redis-closed",
                "the Redis connection closed soon after connecting; reconnecting with backoff",
                metadata: ["redis.retry_in": "\(delay.redisLogDescription)", "redis.pool.slot": "\(index)"]
            )
        case .none, .cancelReconnectTimer, .closeConnection:
            break
        }
        self.perform(action, slot: index, connection: nil)
    }

    private func noteDisconnect() {
        guard let metrics = self.metrics else { return }
        metrics.recordBackendDisconnect()
        metrics.recordBackendConnections(self.availableConnectionCount)
    }

    /// The source's endpoint moved to `endpoint`: connections to another
    /// one leave the pool at once and close, and slots waiting out a backoff
    /// connect now (to the new endpoint).
    private func endpointChanged(to endpoint: RedisURL.Endpoint) {
        let (stale, actions) = self.state.withLock { state -> ([RedisConnection], [(Int, RedisReconnectStateMachine.Action)]) in
            guard !state.isShutDown else { return ([], []) }
            var stale: [RedisConnection] = []
            var actions: [(Int, RedisReconnectStateMachine.Action)] = []
            for index in state.slots.indices {
                if let connection = state.slots[index].connection, connection.url.endpoint != endpoint {
                    stale.append(connection)
                    state.slots[index].connection = nil
                    actions.append((index, state.slots[index].machine.connectionClosed(now: .now(), random: Double.random(in: 0..<1))))
                } else if case .waitingToReconnect = state.slots[index].machine.state {
                    // Cancelled below, outside the lock; a timer that fires
                    // meanwhile finds the slot connecting and does nothing.
                    actions.append((index, .cancelReconnectTimer))
                    actions.append((index, state.slots[index].machine.reconnectTimerFired()))
                }
            }
            return (stale, actions)
        }
        guard !stale.isEmpty || !actions.isEmpty else { return }
        self.logger.notice(
            "Redis moved; replacing the pool's connections",
            metadata: ["redis.new_endpoint": "\(endpoint)", "redis.closed_connections": "\(stale.count)"]
        )
        if !stale.isEmpty { self.noteDisconnect() }
        for (index, action) in actions {
            self.perform(action, slot: index, connection: nil)
        }
        for connection in stale { connection.close() }
    }

    private func reconnectTimerFired(slot index: Int) {
        let action = self.state.withLock { state in
            state.slots[index].reconnectTimer = nil
            return state.slots[index].machine.reconnectTimerFired()
        }
        self.perform(action, slot: index, connection: nil)
    }
}

extension RedisConnectionPool: Service {
    /// Starts the pool, waits for graceful shutdown (or cancellation), then
    /// shuts the pool down.
    public func run() async throws {
        self.start()
        try? await gracefulShutdown()
        await self.shutdown()
    }
}
