import GatewayProtocol
import Logging
import NIOCore
import Synchronization

/// A near-cache in front of the Redis store: the hot entries in the
/// gateway's own memory, answered inside the read that brought the lookup,
/// kept coherent with Redis by server-assisted client-side caching.
///
/// **Coherence.** Every data connection of the Redis pool enables tracking,
/// redirected to this store's `InvalidationListener`; Redis then tells the
/// listener of every change to a key this gateway read (a store, a delete, an
/// expiry or an eviction, `FLUSHDB`). `TrackingState` says when that holds
/// for every connection; only then does the near-cache fill (`NearCache`).
/// When the listener's connection drops, or a data connection does (Redis
/// forgets what that connection tracked), or Redis restarts, the near-cache
/// is flushed, and it fills again once tracking is complete again. When the
/// Redis master moves (a Sentinel failover), what the old master would have
/// said is lost: the near-cache is flushed and stops filling, and the
/// listener moves to the new master before tracking is complete again.
///
/// **What enters.** The values that lookups read from Redis and that stores
/// wrote, with the expiry they have in Redis. Lookups and stores both fill
/// through a placeholder set before the command is sent, which an
/// invalidation removes, so a value that changed while its command was out
/// is never held. Behind `IntegrityStore`, only verified values arrive here.
///
/// **On a Redis Cluster** every master gets its own listener, and each
/// connection to a master redirects its tracking to that master's listener
/// (`CLIENT TRACKING REDIRECT` names a client of the same server);
/// `ClusterTrackingState` keeps each node's `TrackingState`. The near-cache
/// fills only while the tracking of every master is complete (one gate for
/// the whole cluster: see `ClusterTrackingState` for why), and it is flushed
/// when any node's listener or data connection drops, and whenever a slot
/// changes master (`RedisClusterRouter.observeSlotMapChanges`). The
/// single-server path does none of this: it keeps one `TrackingState`.
///
/// **This gateway's own deletions** (`invalidate`, purges, integrity
/// failures) clear the near-cache at once, before and after they reach
/// Redis, through `RedisStore.observeDeletions`: the data connections use
/// `NOLOOP`, so Redis does not tell a connection of its own changes.
public final class NearCacheStore: CacheStore {
    /// Settings for the near-cache.
    public struct Configuration: Sendable {
        /// The most bytes the entries may take (values, keys and about 200
        /// bytes each of bookkeeping). Default: 64 MiB.
        public var capacityBytes: Int
        /// How often the listener's connection is checked with `PING`; a
        /// connection that does not answer within the interval is replaced
        /// (and the near-cache flushed). Default: 1 s.
        public var pingInterval: TimeAmount

        /// The default bound: 64 MiB.
        public static let defaultCapacityBytes = 64 * 1024 * 1024

        /// Creates a configuration.
        public init(capacityBytes: Int = NearCacheStore.Configuration.defaultCapacityBytes, pingInterval: TimeAmount = .seconds(1)) {
            self.capacityBytes = capacityBytes
            self.pingInterval = pingInterval
        }
    }

    private struct State: Sendable {
        var cache: NearCache
        var tracking = TrackingState<ObjectIdentifier>()
        /// The data connections open now, by identity.
        var connections: [ObjectIdentifier: RedisConnection] = [:]
        var listener: InvalidationListener?
        /// On a Redis Cluster: each node's tracking (`tracking` is then unused).
        var cluster: ClusterTrackingState<RedisURL.Endpoint, ObjectIdentifier>?
        /// On a Redis Cluster: each node's listener, and the generation its
        /// events carry (a node's earlier listener may still report).
        var clusterListeners: [RedisURL.Endpoint: (generation: UInt64, listener: InvalidationListener)] = [:]
        var nextListenerGeneration: UInt64 = 0
        var isShutDown = false

        /// A generation for a node's next listener.
        mutating func reserveListener() -> UInt64 {
            self.nextListenerGeneration += 1
            return self.nextListenerGeneration
        }

        /// Fills on while tracking is complete, off otherwise.
        mutating func followTracking() {
            if self.cluster?.isComplete ?? self.tracking.isComplete {
                if !self.cache.isFilling { self.cache.startFilling() }
            } else if self.cache.isFilling {
                self.cache.stopFilling()
            }
        }
    }

    private let inner: any CacheStore
    private let redis: RedisStore
    private let configuration: Configuration
    private let logger: Logger
    private let metrics: GatewayMetrics
    private let state: Mutex<State>
    private let hits = Atomic<UInt64>(0)
    private let invalidationMessages = Atomic<UInt64>(0)
    private let readHook = Mutex<(@Sendable (StorageKey) -> EventLoopFuture<Void>)?>(nil)
    private let changeObserver = Mutex<(@Sendable ([String]?) -> Void)?>(nil)

    /// Calls `observer` with the Redis keys of every invalidation message
    /// (keys other gateways changed, that this gateway read or looked up and
    /// missed: Redis tracks a missing key as well), and with nil when any key
    /// may have changed unseen (a flush, or the listener's connection lost).
    /// Fill leases learn of other gateways' values this way.
    func observeChanges(_ observer: @escaping @Sendable ([String]?) -> Void) {
        self.changeObserver.withLock { $0 = observer }
    }

    /// Whether invalidations arrive now (tracking is complete; the near-cache fills).
    var tracksChanges: Bool {
        self.state.withLock { $0.cache.isFilling }
    }

    /// Tests only: runs `hook` after a lookup's reply arrived from Redis and
    /// before its value fills the near-cache, so that a test can change the
    /// key in between (the invalidation then overtakes the reply).
    func holdFillsForTesting(_ hook: @escaping @Sendable (StorageKey) -> EventLoopFuture<Void>) {
        self.readHook.withLock { $0 = hook }
    }

    /// A near-cache in front of `inner`, which keeps its entries in `redis`
    /// (`inner` is `redis` itself, or a store that wraps it, such as
    /// `IntegrityStore`). Nothing starts here: `start()` wires it to Redis.
    /// `redis` is a single-server store or a cluster's (see "On a Redis
    /// Cluster" in the type's documentation).
    public init(wrapping inner: any CacheStore, redis: RedisStore, configuration: Configuration = Configuration(), logger: Logger, metrics: GatewayMetrics) {
        self.inner = inner
        self.redis = redis
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        var state = State(cache: NearCache(capacityBytes: configuration.capacityBytes))
        if case .cluster = redis.target { state.cluster = ClusterTrackingState() }
        self.state = Mutex(state)
    }

    /// Starts the invalidation listener and has the Redis store report its
    /// connections and deletions; call it before the Redis store starts.
    /// Calling it again does nothing.
    public func start() {
        if case .cluster(let router) = self.redis.target {
            self.startOnCluster(router)
            return
        }
        let listener = InvalidationListener(
            source: self.redis.standalonePool!.source,
            configuration: self.redis.configuration.pool.connection,
            eventLoop: self.redis.standalonePool!.eventLoopGroup.next(),
            logger: self.logger,
            pingInterval: self.configuration.pingInterval
        ) { [self] event in
            self.listenerEvent(event)
        }
        let isFirst = self.state.withLock { state -> Bool in
            guard state.listener == nil else { return false }
            state.listener = listener
            return true
        }
        guard isFirst else { return }
        self.redis.standalonePool!.observeOpenings { [self] connection in self.connectionOpening(connection) }
        self.redis.standalonePool!.source.observeChanges { [self] endpoint in self.masterMoved(to: endpoint) }
        self.redis.observeDeletions { [self] deletion in self.deleted(deletion) }
        listener.start()
    }

    // MARK: CacheStore

    /// The wrapped store's kind.
    public var kind: String { self.inner.kind }

    /// The wrapped store's health.
    public var isHealthy: Bool { self.inner.isHealthy }

    /// The wrapped store's counters, and the near-cache's own.
    public var statistics: [String: Stats.Value] {
        var statistics = self.inner.statistics
        // Numbers only: a copy of the cache kept past the lock would make
        // the next change copy all of it.
        let own = self.state.withLock { state -> [String: Stats.Value] in
            var own: [String: Stats.Value] = [
                "nearCacheEntries": .count(UInt64(state.cache.count)),
                "nearCacheBytes": .count(UInt64(state.cache.costBytes)),
                "nearCacheCapacityBytes": .count(UInt64(state.cache.capacityBytes)),
                "nearCacheInvalidatedEntries": .count(state.cache.invalidatedEntries),
                "nearCacheFlushes": .count(state.cache.flushes),
                "nearCacheDiscardedFills": .count(state.cache.discardedFills),
                "nearCacheFilling": .count(state.cache.isFilling ? 1 : 0),
            ]
            if let cluster = state.cluster {
                own["nearCacheTrackingClientIDs"] = .text(
                    cluster.listenerIDs.map { "\($0.key)=\($0.value)" }.sorted().joined(separator: ",")
                )
            } else if let listener = state.tracking.listener {
                own["nearCacheTrackingClientID"] = .count(UInt64(clamping: listener))
            }
            return own
        }
        statistics.merge(own) { $1 }
        statistics["nearCacheHits"] = .count(self.hits.load(ordering: .relaxed))
        statistics["nearCacheInvalidationMessages"] = .count(self.invalidationMessages.load(ordering: .relaxed))
        return statistics
    }

    /// The wrapped store's name for the entry.
    public func backendKey(for key: StorageKey) -> String? {
        self.inner.backendKey(for: key)
    }

    /// Extends Redis's copy; the near-cache's own copy expires as it
    /// would, and lookups then read the extended one in Redis (an entry
    /// past its recorded expiry is not held here again).
    public func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop) {
        self.inner.extendLife(key, untilUnixMilliseconds: unixMilliseconds, on: eventLoop)
    }

    /// A held entry, answered at once.
    public func lookupImmediately(_ key: StorageKey, now: NIODeadline) -> StoreLookup? {
        guard let entry = self.state.withLock({ $0.cache.get(key, now: now) }) else { return nil }
        self.hits.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordNearCacheHit()
        return .hit(entry.value, computeMicroseconds: entry.computeMicroseconds, expiresAtUnixMilliseconds: entry.expiresAtUnixMilliseconds)
    }

    /// Reads through to Redis and holds what comes back (see the type's documentation).
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        let ticket = self.beginFill(key)
        let result = self.inner.lookup(key, on: eventLoop)
        guard let ticket else { return result }
        let complete: @Sendable (Result<StoreLookup, any Error>) -> Void = { result in
            self.finishFill(ticket, with: result)
        }
        guard let hook = self.readHook.withLock({ $0 }) else {
            result.whenComplete(complete)
            return result
        }
        return result.flatMap { reply in
            hook(key).map {
                complete(.success(reply))
                return reply
            }
        }
    }

    /// Reads through to Redis as `lookup(_:on:)` does, with no future: the
    /// fill is completed (or abandoned) before `answer` is called. With a
    /// read hook (tests), through `lookup(_:on:)`.
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<StoreLookup, any Error>) -> Void) {
        guard self.readHook.withLock({ $0 }) == nil else {
            self.lookup(key, on: eventLoop).hop(to: eventLoop).whenComplete(answer)
            return
        }
        guard let ticket = self.beginFill(key) else {
            self.inner.lookup(key, on: eventLoop, then: answer)
            return
        }
        self.inner.lookup(key, on: eventLoop) { result in
            self.finishFill(ticket, with: result)
            answer(result)
        }
    }

    /// Holds what a read-through brought (a hit with its expiry), or gives
    /// the fill up (anything else).
    private func finishFill(_ ticket: NearCache.Ticket, with result: Result<StoreLookup, any Error>) {
        guard case .success(.hit(let value, let computeMicroseconds, let expiresAt?)) = result else {
            self.state.withLock { $0.cache.abandonFill(ticket) }
            return
        }
        let remaining = expiresAt - RedisStore.nowMilliseconds()
        self.completeFill(ticket, value: value, computeMicroseconds: computeMicroseconds, expiresAt: expiresAt, ttl: .milliseconds(remaining))
    }

    /// Writes through to Redis and holds the value once Redis took it, if
    /// the Redis store keeps stored keys tracked (`tracksStoredKeys`; without
    /// it a later change by another gateway would not be heard of).
    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        // One expiry for Redis's copy and this one (see `StoreEntry`).
        var fixed = entry
        fixed.expiresAtUnixMilliseconds = entry.expiresAtUnixMilliseconds ?? RedisStore.nowMilliseconds() + max(1, entry.ttl.nanoseconds / 1_000_000)
        let entry = fixed
        guard self.redis.configuration.tracksStoredKeys else {
            // What it held under the key is replaced: dropped before and after.
            guard let backendKey = self.inner.backendKey(for: key) else { return self.inner.store(key, entry: entry, on: eventLoop) }
            self.deleted(.key(backendKey))
            let result = self.inner.store(key, entry: entry, on: eventLoop)
            result.whenComplete { _ in self.deleted(.key(backendKey)) }
            return result
        }
        let ticket = self.beginFill(key)
        let result = self.inner.store(key, entry: entry, on: eventLoop)
        guard let ticket else { return result }
        result.whenComplete { result in
            guard case .success(true) = result else {
                self.state.withLock { $0.cache.abandonFill(ticket) }
                return
            }
            self.completeFill(ticket, value: entry.value, computeMicroseconds: entry.computeMicroseconds, expiresAt: entry.expiresAtUnixMilliseconds!, ttl: entry.ttl)
        }
        return result
    }

    /// Deletes through the wrapped store, which reports each deletion to the
    /// near-cache before and after it reaches Redis.
    public func invalidate(namespace: String, function: String, version: String?, key: CacheKey?, on eventLoop: any EventLoop) -> EventLoopFuture<UInt64> {
        self.inner.invalidate(namespace: namespace, function: function, version: version, key: key, on: eventLoop)
    }

    /// Stops the listener, then the wrapped store.
    public func shutdown() async {
        let (listener, clusterListeners) = self.state.withLock { state in
            state.isShutDown = true
            defer { state.clusterListeners = [:] }
            return (state.listener, state.clusterListeners.values.map(\.listener))
        }
        await listener?.shutdown()
        for listener in clusterListeners { await listener.shutdown() }
        await self.inner.shutdown()
    }

    // MARK: Fills

    private func beginFill(_ key: StorageKey) -> NearCache.Ticket? {
        guard let backendKey = self.inner.backendKey(for: key) else { return nil }
        return self.state.withLock { $0.cache.beginFill(key, backendKey: backendKey) }
    }

    private func completeFill(_ ticket: NearCache.Ticket, value: ByteBuffer, computeMicroseconds: UInt64, expiresAt: Int64, ttl: TimeAmount) {
        let now = NIODeadline.now()
        let (entries, bytes) = self.state.withLock { state in
            state.cache.completeFill(ticket, value: value, computeMicroseconds: computeMicroseconds, expiresAtUnixMilliseconds: expiresAt, expires: now + ttl, now: now)
            return (state.cache.count, state.cache.costBytes)
        }
        self.metrics.recordNearCacheSize(entries: entries, bytes: bytes)
    }

    // MARK: Events

    private func listenerEvent(_ event: InvalidationListener.Event) {
        switch event {
        case .subscribed(let clientID):
            let actions = self.state.withLock { state in
                let actions = state.tracking.listenerSubscribed(id: clientID)
                state.followTracking()
                return actions.map { action in (action, state.connections[Self.connectionID(of: action)]) }
            }
            self.perform(actions)
        case .invalidated(let keys):
            self.invalidationMessages.wrappingAdd(1, ordering: .relaxed)
            defer { self.changeObserver.withLock { $0 }?(keys) }
            let (removed, entries, bytes) = self.state.withLock { state in
                (state.cache.invalidate(backendKeys: keys), state.cache.count, state.cache.costBytes)
            }
            self.metrics.recordNearCacheInvalidation(messages: 1, removed: removed)
            self.metrics.recordNearCacheSize(entries: entries, bytes: bytes)
        case .flushed:
            self.invalidationMessages.wrappingAdd(1, ordering: .relaxed)
            self.flush(stopFilling: false, reason: "Redis flushed the database")
            self.changeObserver.withLock { $0 }?(nil)
        case .lost:
            self.state.withLock { $0.tracking.listenerLost() }
            self.flush(stopFilling: true, reason: nil)
            self.changeObserver.withLock { $0 }?(nil)
        }
    }

    /// The master moved: invalidations from the old one are lost, and its
    /// listener's client id means nothing on the new one.
    private func masterMoved(to endpoint: RedisURL.Endpoint) {
        let listener = self.state.withLock { state in
            state.tracking.listenerLost()
            return state.listener
        }
        self.flush(stopFilling: true, reason: "the Redis master moved to \(endpoint)")
        listener?.reconnect()
    }

    private func connectionOpening(_ connection: RedisConnection) {
        let id = ObjectIdentifier(connection)
        let actions = self.state.withLock { state in
            state.connections[id] = connection
            let actions = state.tracking.connectionOpened(id)
            // Reads already out may go to this connection, which Redis does not track yet.
            state.followTracking()
            return actions.map { ($0, Optional(connection)) }
        }
        connection.closeFuture.whenComplete { _ in self.connectionClosed(id) }
        self.perform(actions)
    }

    private func connectionClosed(_ id: ObjectIdentifier) {
        let wasOpen = self.state.withLock { state in
            state.tracking.connectionClosed(id)
            return state.connections.removeValue(forKey: id) != nil
        }
        guard wasOpen else { return }
        // What this connection tracked, Redis has forgotten.
        self.flush(stopFilling: true, reason: nil)
    }

    private func deleted(_ deletion: RedisStore.Deletion) {
        let removed = self.state.withLock { state in
            switch deletion {
            case .key(let key): state.cache.invalidate(backendKeys: [key])
            case .prefix(let prefix): state.cache.invalidate(backendKeyPrefix: prefix)
            }
        }
        self.metrics.recordNearCacheInvalidation(messages: 0, removed: removed)
    }

    private func flush(stopFilling: Bool, reason: String?) {
        let removed = self.state.withLock { state in
            let removed = state.cache.flush(stopFilling: stopFilling)
            state.followTracking()
            return removed
        }
        self.metrics.recordNearCacheFlush()
        self.metrics.recordNearCacheSize(entries: 0, bytes: 0)
        if let reason, removed > 0 {
            self.logger.info("near-cache flushed", metadata: ["reason": "\(reason)", "entries": "\(removed)"])
        }
    }

    private static func connectionID(of action: TrackingState<ObjectIdentifier>.Action) -> ObjectIdentifier {
        switch action {
        case .enableTracking(let id, _): id
        }
    }

    /// Sends `CLIENT TRACKING` where the tracking state asks for it. A
    /// connection that refuses it is closed: the pool replaces it, and the
    /// new one tries again.
    private func perform(_ actions: [(TrackingState<ObjectIdentifier>.Action, RedisConnection?)]) {
        for (action, connection) in actions {
            guard case .enableTracking(let id, let redirect) = action, let connection else { continue }
            let command = RedisCommand("CLIENT", "TRACKING", "on", "REDIRECT", "\(redirect)", "NOLOOP")
            connection.sendFuture(command, timeout: self.redis.configuration.writeTimeout).whenComplete { result in
                if case .success(.simpleString("OK")) = result {
                    self.state.withLock { state in
                        state.tracking.trackingEnabled(id, redirect: redirect)
                        state.followTracking()
                    }
                    return
                }
                self.state.withLock { $0.tracking.trackingFailed(id, redirect: redirect) }
                self.logger.warning("Redis did not enable tracking on a connection; replacing it", metadata: ["reply": "\(result)"])
                connection.close()
            }
        }
    }
}

// MARK: On a Redis Cluster

extension NearCacheStore {
    /// Wires the near-cache to every node of the cluster: a listener per
    /// master (made as the slot map names it), the tracking of each
    /// connection redirected to its own node's listener, and a flush
    /// whenever a slot changes master.
    private func startOnCluster(_ router: RedisClusterRouter) {
        let isFirst = self.state.withLock { state -> Bool in
            guard state.nextListenerGeneration == 0, !state.isShutDown else { return false }
            state.nextListenerGeneration = 1
            return true
        }
        guard isFirst else { return }
        router.observeOpenings { [self] endpoint, connection in self.clusterConnectionOpening(endpoint, connection, router: router) }
        router.observeSlotMapChanges { [self] map in self.slotMapChanged(map, router: router) }
        self.redis.observeDeletions { [self] deletion in self.deleted(deletion) }
    }

    /// A slot has another master (a resharding, a failover, a new master):
    /// Redis tracks a key only on the node that served the read, so the
    /// entries read from a slot's former master would hear of no change
    /// made on its new one. Everything is flushed rather than the moved
    /// slots' entries: slot changes are rare, the near-cache refills from
    /// Redis at the cost of one read per key, and a flush cannot miss an
    /// entry filled through a redirect from a node the map no longer names.
    /// Fills stop until the new masters' tracking is complete.
    private func slotMapChanged(_ map: ClusterSlotMap, router: RedisClusterRouter) {
        let (added, removed) = self.state.withLock { state -> ([(RedisURL.Endpoint, UInt64)], [InvalidationListener]) in
            guard !state.isShutDown, state.cluster != nil else { return ([], []) }
            let (added, removed) = state.cluster!.mastersChanged(map.masters)
            let listeners = removed.compactMap { state.clusterListeners.removeValue(forKey: $0)?.listener }
            let generations = added.map { node in (node, state.reserveListener()) }
            return (generations, listeners)
        }
        self.flush(stopFilling: true, reason: "a Redis Cluster slot changed master")
        for (node, generation) in added { self.startListener(node, generation: generation, router: router) }
        for listener in removed { Task { await listener.shutdown() } }
    }

    private func clusterConnectionOpening(_ node: RedisURL.Endpoint, _ connection: RedisConnection, router: RedisClusterRouter) {
        let id = ObjectIdentifier(connection)
        let (actions, newListener) = self.state.withLock { state -> ([ClusterTrackingState<RedisURL.Endpoint, ObjectIdentifier>.Action], UInt64?) in
            guard !state.isShutDown, state.cluster != nil else { return ([], nil) }
            state.connections[id] = connection
            let (actions, isNew) = state.cluster!.connectionOpened(node: node, id)
            // Reads already out may go to this connection, which Redis does not track yet.
            state.followTracking()
            return (actions, isNew ? state.reserveListener() : nil)
        }
        connection.closeFuture.whenComplete { _ in self.clusterConnectionClosed(node, id) }
        if let generation = newListener { self.startListener(node, generation: generation, router: router) }
        self.performOnCluster(actions)
    }

    private func clusterConnectionClosed(_ node: RedisURL.Endpoint, _ id: ObjectIdentifier) {
        let (wasOpen, forgotten) = self.state.withLock { state -> (Bool, InvalidationListener?) in
            let forgotten = state.cluster?.connectionClosed(node: node, id) ?? false
            let listener = forgotten ? state.clusterListeners.removeValue(forKey: node)?.listener : nil
            return (state.connections.removeValue(forKey: id) != nil, listener)
        }
        if let forgotten { Task { await forgotten.shutdown() } }
        guard wasOpen else { return }
        // What this connection tracked, its node has forgotten.
        self.flush(stopFilling: true, reason: nil)
    }

    private func startListener(_ node: RedisURL.Endpoint, generation: UInt64, router: RedisClusterRouter) {
        let listener = InvalidationListener(
            source: FixedRedisEndpoint(router.url.nodeURL(node)),
            configuration: router.configuration.pool.connection,
            eventLoop: router.eventLoopGroup.next(),
            logger: self.logger,
            pingInterval: self.configuration.pingInterval
        ) { [self] event in
            self.clusterListenerEvent(event, node: node, generation: generation)
        }
        let keep = self.state.withLock { state -> Bool in
            guard !state.isShutDown, state.cluster?.knows(node) == true,
                state.clusterListeners[node].map({ $0.generation < generation }) ?? true
            else { return false }
            state.clusterListeners[node] = (generation, listener)
            return true
        }
        if keep { listener.start() }
    }

    private func clusterListenerEvent(_ event: InvalidationListener.Event, node: RedisURL.Endpoint, generation: UInt64) {
        switch event {
        case .subscribed(let clientID):
            let actions = self.state.withLock { state -> [ClusterTrackingState<RedisURL.Endpoint, ObjectIdentifier>.Action] in
                guard state.clusterListeners[node]?.generation == generation else { return [] }
                let actions = state.cluster?.listenerSubscribed(node: node, id: clientID) ?? []
                state.followTracking()
                return actions
            }
            self.performOnCluster(actions)
        case .invalidated, .flushed:
            self.listenerEvent(event)
        case .lost:
            // Whichever listener it was (a node's earlier one included), its
            // node's invalidations may have been missed meanwhile.
            self.state.withLock { state in
                if state.clusterListeners[node]?.generation == generation { state.cluster?.listenerLost(node: node) }
            }
            self.flush(stopFilling: true, reason: nil)
        }
    }

    /// Sends `CLIENT TRACKING` where the cluster's tracking state asks for
    /// it; a connection that refuses it is closed, and its pool replaces it.
    private func performOnCluster(_ actions: [ClusterTrackingState<RedisURL.Endpoint, ObjectIdentifier>.Action]) {
        for action in actions {
            guard case .enableTracking(let node, let id, let redirect) = action,
                let connection = self.state.withLock({ $0.connections[id] })
            else { continue }
            let command = RedisCommand("CLIENT", "TRACKING", "on", "REDIRECT", "\(redirect)", "NOLOOP")
            connection.sendFuture(command, timeout: self.redis.configuration.writeTimeout).whenComplete { result in
                if case .success(.simpleString("OK")) = result {
                    self.state.withLock { state in
                        state.cluster?.trackingEnabled(node: node, id, redirect: redirect)
                        state.followTracking()
                    }
                    return
                }
                self.state.withLock { $0.cluster?.trackingFailed(node: node, id, redirect: redirect) }
                self.logger.warning("Redis did not enable tracking on a connection; replacing it", metadata: ["reply": "\(result)", "redis.endpoint": "\(node)"])
                connection.close()
            }
        }
    }
}

extension NearCacheStore: RegistryBackendProvider {
    /// The wrapped store's registry: purges go through `RedisStore`, which
    /// reports their deletions to the near-cache.
    func makeRegistryBackend() -> (any RegistryBackend)? {
        (self.inner as? any RegistryBackendProvider)?.makeRegistryBackend()
    }
}
