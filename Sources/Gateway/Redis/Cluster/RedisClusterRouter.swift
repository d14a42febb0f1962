import GatewayProtocol
import Logging
import NIOCore
import Synchronization

/// Sends commands to the master of their slot in a Redis Cluster: a
/// `RedisConnectionPool` per master, a `ClusterSlotMap` to pick it, and the
/// redirects (`ClusterRedirectPolicy`) followed on the way.
///
/// **Topology.** The map is read with `CLUSTER SHARDS` (or `CLUSTER SLOTS`
/// from servers older than Redis 7) from a master it already reaches, else
/// from each known node and seed in turn over a short-lived connection. It is
/// read again every `refreshInterval`, and soon after a `MOVED`, a
/// `CLUSTERDOWN`, or a command that found its master's pool without a
/// connection (a failed master: its replica's promotion is learned this way),
/// at most once per `minimumRefreshInterval`. Pools of nodes that are no
/// longer masters are shut down; new masters get a pool at once.
///
/// **Pipelines.** A pipeline goes to one master as a whole, so all its
/// commands must be in one slot (the caller routes it by one of its keys).
/// Only the commands whose replies are redirects are sent again, so a
/// command that was carried out is never repeated.
///
/// **Failing open.** Like the single pool, a command whose master has no
/// connection up fails at once with `.unavailable`; a redirect that cannot be
/// followed in time leaves its error reply, which the store counts as a fault.
public final class RedisClusterRouter: Sendable {
    /// Settings for the router.
    public struct Configuration: Sendable {
        /// Each master's pool.
        public var pool: RedisConnectionPool.Configuration
        /// How often the slot map is read when nothing prompts it.
        public var refreshInterval: TimeAmount
        /// The least time between two reads of the slot map.
        public var minimumRefreshInterval: TimeAmount
        /// How long reading the map from one node may take.
        public var topologyTimeout: TimeAmount
        /// How redirects are followed.
        public var redirects: ClusterRedirectPolicy

        /// Defaults: the map read every 5 s, and at most every 100 ms when
        /// prompted; 1 s per node to read it.
        public init(
            pool: RedisConnectionPool.Configuration = RedisConnectionPool.Configuration(),
            refreshInterval: TimeAmount = .seconds(5),
            minimumRefreshInterval: TimeAmount = .milliseconds(100),
            topologyTimeout: TimeAmount = .seconds(1),
            redirects: ClusterRedirectPolicy = ClusterRedirectPolicy()
        ) {
            self.pool = pool
            self.refreshInterval = refreshInterval
            self.minimumRefreshInterval = minimumRefreshInterval
            self.topologyTimeout = topologyTimeout
            self.redirects = redirects
        }
    }

    private struct State: Sendable {
        var map = ClusterSlotMap()
        /// The pool of each master in `map.masters`, index for index.
        var masterPools: [RedisConnectionPool] = []
        /// Every pool, by endpoint (also ASK targets not yet in the map).
        var pools: [RedisURL.Endpoint: RedisConnectionPool] = [:]
        var isStarted = false
        var isShutDown = false
        var isRefreshing = false
        var refreshRequested = false
        var lastRefresh: NIODeadline? = nil
        var periodicTask: Task<Void, Never>? = nil
        var refreshWaiters: [CheckedContinuation<Void, Never>] = []
        var hasRefreshedOnce = false
    }

    /// The cluster's seeds and the settings every node's connection inherits.
    public let url: RedisClusterURL
    /// The router's settings.
    public let configuration: Configuration
    let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let metrics: GatewayMetrics?
    private let faults: RateLimitedLog
    private let state = Mutex(State())
    private let openingObserver = Mutex<(@Sendable (RedisURL.Endpoint, RedisConnection) -> Void)?>(nil)
    private let slotMapObserver = Mutex<(@Sendable (ClusterSlotMap) -> Void)?>(nil)

    /// Creates a router; it reads the topology and connects once started.
    public init(url: RedisClusterURL, configuration: Configuration, eventLoopGroup: any EventLoopGroup, logger: Logger, metrics: GatewayMetrics? = nil) throws {
        guard configuration.pool.size >= 1 else {
            throw GatewayError(.invalidConfiguration, "a Redis pool needs at least one connection, not \(configuration.pool.size)")
        }
        guard !url.seeds.isEmpty else { throw GatewayError(.invalidConfiguration, "a Redis Cluster URL needs at least one seed") }
        self.url = url
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        var logger = logger
        logger[metadataKey: "redis.cluster"] = "\(url)"
        self.logger = logger
        self.metrics = metrics
        self.faults = RateLimitedLog(logger: logger, interval: RedisConnectionPool.faultLogInterval)
    }

    /// Calls `observer` with each connection to a master as it opens (see
    /// `RedisConnectionPool.observeOpenings`). Set it before `start()`.
    public func observeOpenings(_ observer: @escaping @Sendable (RedisURL.Endpoint, RedisConnection) -> Void) {
        self.openingObserver.withLock { $0 = observer }
    }

    /// Calls `observer` with the slot map each time a slot gets another
    /// master (a read of the topology, or a `MOVED`), just after the map is
    /// installed. Set it before `start()`.
    public func observeSlotMapChanges(_ observer: @escaping @Sendable (ClusterSlotMap) -> Void) {
        self.slotMapObserver.withLock { $0 = observer }
    }

    private func slotMapChanged(_ map: ClusterSlotMap) {
        self.slotMapObserver.withLock { $0 }?(map)
    }

    /// The slot map as last read and corrected.
    public var slotMap: ClusterSlotMap { self.state.withLock { $0.map } }

    /// The connections up, over every master.
    public var availableConnectionCount: Int {
        self.state.withLock { $0.masterPools }.reduce(0) { $0 + $1.availableConnectionCount }
    }

    // MARK: Lifecycle

    /// Reads the topology and connects to the masters, in the background; the
    /// map is then read again periodically. Calling it again does nothing.
    public func start() {
        let shouldStart = self.state.withLock { state -> Bool in
            guard !state.isStarted, !state.isShutDown else { return false }
            state.isStarted = true
            return true
        }
        guard shouldStart else { return }
        self.requestRefresh()
        let task = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(self.configuration.refreshInterval.nanoseconds))
                if Task.isCancelled { break }
                self.requestRefresh()
            }
        }
        self.state.withLock { $0.periodicTask = task }
    }

    /// Waits until the first read of the topology finished (or failed) and
    /// every master's pool made its first connect attempt.
    public func waitForFirstConnectAttempts() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.state.withLock { state -> Bool in
                if state.hasRefreshedOnce || state.isShutDown { return true }
                state.refreshWaiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
        for pool in self.state.withLock({ $0.masterPools }) {
            await pool.waitForFirstConnectAttempts()
        }
    }

    /// Stops refreshing and shuts every pool down.
    public func shutdown() async {
        let (pools, task, waiters) = self.state.withLock { state in
            state.isShutDown = true
            defer {
                state.pools = [:]
                state.masterPools = []
                state.refreshWaiters = []
            }
            return (Array(state.pools.values), state.periodicTask, state.refreshWaiters)
        }
        task?.cancel()
        for waiter in waiters { waiter.resume() }
        for pool in pools { await pool.shutdown() }
    }

    // MARK: Sending

    /// Sends `command` to the master of `slot`, following redirects; see the type.
    public func sendFuture(_ command: RedisCommand, slot: ClusterSlot, timeout: TimeAmount, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<RESPValue> {
        // The lookups' path: one command, sent as such (no pipeline of one),
        // and only an error reply goes through the redirect logic.
        let deadline = NIODeadline.now() + timeout
        switch self.masterPool(for: slot) {
        case .success(let (endpoint, pool)):
            return pool.sendFuture(command, timeout: timeout, preferring: eventLoop)
                .flatMapError { error in
                    self.refreshIfMasterLost(error)
                    return pool.eventLoopGroup.any().makeFailedFuture(error)
                }
                .flatMap { reply in
                    guard case .error = reply else { return (eventLoop ?? pool.eventLoopGroup.any()).makeSucceededFuture(reply) }
                    return self.followRedirects([command], replies: [reply], from: endpoint, slot: slot, deadline: deadline, redirects: 0, preferring: eventLoop).map { $0[0] }
                }
        case .failure(let error):
            return (eventLoop ?? self.eventLoopGroup.any()).makeFailedFuture(error)
        }
    }

    /// Sends `command` to the master of `slot` and calls `answer` with its
    /// reply on `eventLoop`: the lookups' path. As on a single server, it
    /// goes out on a connection of `eventLoop` when one is up, with no future;
    /// only an error reply (a redirect, which is followed) takes the future
    /// path. With no connection up, `answer` is called in a later turn.
    func send(
        _ command: RedisCommand,
        slot: ClusterSlot,
        timeout: TimeAmount,
        on eventLoop: any EventLoop,
        then answer: @escaping @Sendable (Result<RESPValue, any Error>) -> Void
    ) {
        let deadline = NIODeadline.now() + timeout
        switch self.masterPool(for: slot) {
        case .success(let (endpoint, pool)):
            pool.send(command, timeout: timeout, on: eventLoop) { result in
                switch result {
                case .success(let reply):
                    guard case .error = reply else { return answer(result) }
                    self.followRedirects([command], replies: [reply], from: endpoint, slot: slot, deadline: deadline, redirects: 0, preferring: eventLoop)
                        .map { $0[0] }
                        .hop(to: eventLoop)
                        .whenComplete(answer)
                case .failure(let error):
                    self.refreshIfMasterLost(error)
                    answer(result)
                }
            }
        case .failure(let error):
            eventLoop.execute { answer(.failure(error)) }
        }
    }

    /// Sends `commands`, all keyed in `slot`, to its master as one pipeline, following redirects.
    public func pipelineFuture(_ commands: [RedisCommand], slot: ClusterSlot, timeout: TimeAmount, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<[RESPValue]> {
        let deadline = NIODeadline.now() + timeout
        switch self.masterPool(for: slot) {
        case .success(let (endpoint, pool)):
            return self.send(commands, asking: false, to: endpoint, pool: pool, slot: slot, deadline: deadline, redirects: 0, preferring: eventLoop)
        case .failure(let error):
            return (eventLoop ?? self.eventLoopGroup.any()).makeFailedFuture(error)
        }
    }

    /// Sends `command` to `slot`'s master and waits for its reply.
    public func send(_ command: RedisCommand, slot: ClusterSlot, timeout: TimeAmount) async throws -> RESPValue {
        try await self.sendFuture(command, slot: slot, timeout: timeout).get()
    }

    /// Sends `commands` to `slot`'s master and waits for every reply.
    public func pipeline(_ commands: [RedisCommand], slot: ClusterSlot, timeout: TimeAmount) async throws -> [RESPValue] {
        try await self.pipelineFuture(commands, slot: slot, timeout: timeout).get()
    }

    /// A command failed for want of its master (no connection, or one lost
    /// mid-command): the master may have failed over, so the map is read
    /// again soon.
    private func refreshIfMasterLost(_ error: any Error) {
        if let error = error as? GatewayError, error.code == .unavailable || error.code == .connectionClosed {
            self.requestRefresh()
        }
    }

    private func masterPool(for slot: ClusterSlot) -> Result<(RedisURL.Endpoint, RedisConnectionPool), GatewayError> {
        let found = self.state.withLock { state -> Result<(RedisURL.Endpoint, RedisConnectionPool), GatewayError> in
            if state.isShutDown { return .failure(GatewayError(.shuttingDown, "the Redis Cluster router is shut down")) }
            guard let index = state.map.masterIndex(for: slot) else {
                return .failure(GatewayError(.unavailable, "no master of the Redis Cluster is known for slot \(slot)"))
            }
            return .success((state.map.masters[index], state.masterPools[index]))
        }
        if case .failure = found { self.requestRefresh() }
        return found
    }

    private func send(
        _ commands: [RedisCommand],
        asking: Bool,
        to endpoint: RedisURL.Endpoint,
        pool: RedisConnectionPool,
        slot: ClusterSlot,
        deadline: NIODeadline,
        redirects: Int,
        preferring eventLoop: (any EventLoop)?
    ) -> EventLoopFuture<[RESPValue]> {
        let remaining = deadline - NIODeadline.now()
        let wire: [RedisCommand]
        if asking {
            wire = commands.flatMap { [RedisCommand("ASKING"), $0] }
        } else {
            wire = commands
        }
        return pool.pipelineFuture(wire, timeout: max(remaining, .milliseconds(1)), preferring: eventLoop)
            .flatMapError { error in
                self.refreshIfMasterLost(error)
                return pool.eventLoopGroup.any().makeFailedFuture(error)
            }
            .flatMap { wireReplies in
                let replies = asking ? stride(from: 1, to: wireReplies.count, by: 2).map { wireReplies[$0] } : wireReplies
                return self.followRedirects(commands, replies: replies, from: endpoint, slot: slot, deadline: deadline, redirects: redirects, preferring: eventLoop)
            }
    }

    private func followRedirects(
        _ commands: [RedisCommand],
        replies: [RESPValue],
        from endpoint: RedisURL.Endpoint,
        slot: ClusterSlot,
        deadline: NIODeadline,
        redirects: Int,
        preferring eventLoop: (any EventLoop)?
    ) -> EventLoopFuture<[RESPValue]> {
        let loop = eventLoop ?? self.eventLoopGroup.any()
        // The fast path: no error reply at all.
        guard replies.contains(where: { if case .error = $0 { true } else { false } }) else {
            return loop.makeSucceededFuture(replies)
        }
        let senderHost: String
        if case .tcp(let host, _) = endpoint { senderHost = host } else { senderHost = "" }
        var redirected: [Int] = []
        var first: ClusterRedirect? = nil
        for (index, reply) in replies.enumerated() {
            guard case .error(let message) = reply, let redirect = ClusterRedirect(errorMessage: message, senderHost: senderHost) else { continue }
            redirected.append(index)
            if first == nil { first = redirect }
        }
        guard let first else { return loop.makeSucceededFuture(replies) }
        let again = redirected.map { commands[$0] }
        let next: EventLoopFuture<[RESPValue]>
        switch self.configuration.redirects.decide(first, redirectsSoFar: redirects, remaining: deadline - NIODeadline.now()) {
        case .giveUp:
            self.faults.log("cluster-redirect", "a Redis Cluster redirect could not be followed in time: \(first)")
            return loop.makeSucceededFuture(replies)
        case .resend(let target, let asking, let updatesMap):
            let pool = self.pool(for: target)
            if updatesMap {
                let changed = self.state.withLock { state -> ClusterSlotMap? in
                    let before = state.map.master(for: slot)
                    state.map.move(slot, to: target)
                    Self.alignPools(&state, make: self.makePool)
                    return before == target ? nil : state.map
                }
                if let changed { self.slotMapChanged(changed) }
                self.requestRefresh()
            }
            next = self.send(again, asking: asking, to: target, pool: pool, slot: slot, deadline: deadline, redirects: redirects + 1, preferring: eventLoop)
        case .retry(let delay, let refreshesMap):
            if refreshesMap { self.requestRefresh() }
            next = loop.scheduleTask(in: delay) {}.futureResult.flatMap {
                switch self.masterPool(for: slot) {
                case .success(let (endpoint, pool)):
                    return self.send(again, asking: false, to: endpoint, pool: pool, slot: slot, deadline: deadline, redirects: redirects + 1, preferring: eventLoop)
                case .failure(let error):
                    return loop.makeFailedFuture(error)
                }
            }
        }
        let redirectedIndexes = redirected
        return next.map { newReplies in
            var merged = replies
            for (position, index) in redirectedIndexes.enumerated() { merged[index] = newReplies[position] }
            return merged
        }
    }

    // MARK: Pools

    /// The pool for `endpoint`, made (and started) if there is none yet.
    private func pool(for endpoint: RedisURL.Endpoint) -> RedisConnectionPool {
        let (pool, isNew) = self.state.withLock { state -> (RedisConnectionPool, Bool) in
            if let pool = state.pools[endpoint] { return (pool, false) }
            let pool = self.makePool(endpoint)
            state.pools[endpoint] = pool
            return (pool, state.isStarted && !state.isShutDown)
        }
        if isNew { pool.start() }
        return pool
    }

    private func makePool(_ endpoint: RedisURL.Endpoint) -> RedisConnectionPool {
        // The configuration was validated in init (size >= 1), so this cannot throw.
        let pool = try! RedisConnectionPool(url: self.url.nodeURL(endpoint), configuration: self.configuration.pool, eventLoopGroup: self.eventLoopGroup, logger: self.logger, metrics: self.metrics)
        if let observer = self.openingObserver.withLock({ $0 }) {
            pool.observeOpenings { connection in observer(endpoint, connection) }
        }
        return pool
    }

    /// Makes `masterPools` match `map.masters`, creating the missing pools
    /// (not yet started). Returns the new pools.
    @discardableResult
    private static func alignPools(_ state: inout State, make: (RedisURL.Endpoint) -> RedisConnectionPool) -> [RedisConnectionPool] {
        var created: [RedisConnectionPool] = []
        state.masterPools = state.map.masters.map { endpoint in
            if let pool = state.pools[endpoint] { return pool }
            let pool = make(endpoint)
            state.pools[endpoint] = pool
            created.append(pool)
            return pool
        }
        return created
    }

    // MARK: Topology

    /// Reads the map again soon: now, unless a read is running (it is then
    /// read once more after it) or the last one was less than
    /// `minimumRefreshInterval` ago (it is then read once that has passed).
    public func requestRefresh() {
        let delay = self.state.withLock { state -> TimeAmount? in
            guard state.isStarted, !state.isShutDown else { return nil }
            if state.isRefreshing {
                state.refreshRequested = true
                return nil
            }
            state.isRefreshing = true
            guard let last = state.lastRefresh else { return .zero }
            return max(.zero, self.configuration.minimumRefreshInterval - (NIODeadline.now() - last))
        }
        guard let delay else { return }
        Task { [self] in
            if delay > .zero { try? await Task.sleep(nanoseconds: UInt64(delay.nanoseconds)) }
            await self.refreshLoop()
        }
    }

    private func refreshLoop() async {
        while true {
            await self.refreshOnce()
            let (again, waiters) = self.state.withLock { state -> (Bool, [CheckedContinuation<Void, Never>]) in
                state.lastRefresh = .now()
                state.hasRefreshedOnce = true
                let waiters = state.refreshWaiters
                state.refreshWaiters = []
                if state.refreshRequested, !state.isShutDown {
                    state.refreshRequested = false
                    return (true, waiters)
                }
                state.isRefreshing = false
                return (false, waiters)
            }
            for waiter in waiters { waiter.resume() }
            guard again else { return }
            try? await Task.sleep(nanoseconds: UInt64(self.configuration.minimumRefreshInterval.nanoseconds))
        }
    }

    /// Reads the map from the first node that answers and installs it.
    private func refreshOnce() async {
        let (known, masterPools) = self.state.withLock { ($0.map.nodes, $0.masterPools) }
        var map: ClusterSlotMap? = nil
        var lastError: (any Error)? = nil
        // Masters already connected first: no new connection needed.
        for pool in masterPools where pool.availableConnectionCount > 0 {
            do {
                map = try await self.readMap { command in try await pool.send(command, timeout: self.configuration.topologyTimeout) }
                break
            } catch {
                lastError = error
            }
        }
        if map == nil {
            var candidates = known
            for seed in self.url.seeds where !candidates.contains(seed.endpoint) { candidates.append(seed.endpoint) }
            for endpoint in candidates {
                do {
                    map = try await self.readMap(from: endpoint)
                    break
                } catch {
                    lastError = error
                }
            }
        }
        guard let map, map.assignedSlotCount > 0 else {
            self.faults.log("cluster-topology", "cannot read the Redis Cluster's slot map: \(lastError.map { "\($0)" } ?? "no slot is assigned")")
            return
        }
        let (created, retired, isStarted, ownersChanged) = self.state.withLock { state -> ([RedisConnectionPool], [RedisConnectionPool], Bool, Bool) in
            guard !state.isShutDown else { return ([], [], false, false) }
            let changed = state.map.masters != map.masters
            let ownersChanged = !state.map.hasSameOwners(as: map)
            state.map = map
            let created = Self.alignPools(&state, make: self.makePool)
            var retired: [RedisConnectionPool] = []
            for (endpoint, pool) in state.pools where !map.masters.contains(endpoint) {
                retired.append(pool)
                state.pools[endpoint] = nil
            }
            if changed {
                self.logger.info("Redis Cluster masters", metadata: ["redis.masters": "\(map.masters.map(\.description).joined(separator: ","))"])
            }
            return (created, retired, state.isStarted, ownersChanged)
        }
        if ownersChanged { self.slotMapChanged(map) }
        if isStarted { for pool in created { pool.start() } }
        for pool in retired { await pool.shutdown() }
    }

    private func readMap(from endpoint: RedisURL.Endpoint) async throws -> ClusterSlotMap {
        var connectionConfiguration = self.configuration.pool.connection
        connectionConfiguration.connectTimeout = min(connectionConfiguration.connectTimeout, self.configuration.topologyTimeout)
        let connection = try await RedisConnection.connect(to: self.url.nodeURL(endpoint), configuration: connectionConfiguration, on: self.eventLoopGroup.any(), logger: self.logger)
        do {
            let map = try await self.readMap { command in try await connection.send(command, timeout: self.configuration.topologyTimeout) }
            await connection.close()
            return map
        } catch {
            await connection.close()
            throw error
        }
    }

    private func readMap(_ send: (RedisCommand) async throws -> RESPValue) async throws -> ClusterSlotMap {
        let defaultHost: String
        if case .tcp(let host, _) = self.url.seeds[0].endpoint { defaultHost = host } else { defaultHost = "127.0.0.1" }
        let shards = try await send(RedisCommand("CLUSTER", "SHARDS"))
        if case .error(let message) = shards {
            // Servers before Redis 7 have no CLUSTER SHARDS.
            guard message.lowercased().contains("unknown subcommand") else {
                throw GatewayError(.backendError, "CLUSTER SHARDS failed: \(message)")
            }
            return try ClusterSlotMap.parseSlots(try await send(RedisCommand("CLUSTER", "SLOTS")).checked(), defaultHost: defaultHost)
        }
        // Over TLS the nodes listen for clients on their TLS ports.
        return try ClusterSlotMap.parseShards(shards, defaultHost: defaultHost, usesTLSPort: self.url.usesTLS)
    }
}
