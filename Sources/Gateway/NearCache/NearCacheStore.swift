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

        /// Fills on while tracking is complete, off otherwise.
        mutating func followTracking() {
            if self.tracking.isComplete {
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

    /// Tests only: runs `hook` after a lookup's reply arrived from Redis and
    /// before its value fills the near-cache, so that a test can change the
    /// key in between (the invalidation then overtakes the reply).
    func holdFillsForTesting(_ hook: @escaping @Sendable (StorageKey) -> EventLoopFuture<Void>) {
        self.readHook.withLock { $0 = hook }
    }

    /// A near-cache in front of `inner`, which keeps its entries in `redis`
    /// (`inner` is `redis` itself, or a store that wraps it, such as
    /// `IntegrityStore`). Nothing starts here: `start()` wires it to Redis.
    /// `redis` must be a single-server store (its `standalonePool` is set).
    public init(wrapping inner: any CacheStore, redis: RedisStore, configuration: Configuration = Configuration(), logger: Logger, metrics: GatewayMetrics) {
        precondition(redis.standalonePool != nil, "the near-cache needs a single-server Redis store")
        self.inner = inner
        self.redis = redis
        self.configuration = configuration
        self.logger = logger
        self.metrics = metrics
        self.state = Mutex(State(cache: NearCache(capacityBytes: configuration.capacityBytes)))
    }

    /// Starts the invalidation listener and has the Redis store report its
    /// connections and deletions; call it before the Redis store starts.
    /// Calling it again does nothing.
    public func start() {
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
            if let listener = state.tracking.listener {
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

    /// A held entry, answered at once.
    public func lookupImmediately(_ key: StorageKey) -> StoreLookup? {
        guard let entry = self.state.withLock({ $0.cache.get(key, now: .now()) }) else { return nil }
        self.hits.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordNearCacheHit()
        return .hit(entry.value, computeMicroseconds: entry.computeMicroseconds)
    }

    /// Reads through to Redis and holds what comes back (see the type's documentation).
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        let ticket = self.beginFill(key)
        let result = self.inner.lookup(key, on: eventLoop)
        guard let ticket else { return result }
        let complete: @Sendable (Result<StoreLookup, any Error>) -> Void = { result in
            guard case .success(.hit(let value, let computeMicroseconds, let expiresAt?)) = result else {
                self.state.withLock { $0.cache.abandonFill(ticket) }
                return
            }
            let remaining = expiresAt - RedisStore.nowMilliseconds()
            self.completeFill(ticket, value: value, computeMicroseconds: computeMicroseconds, ttl: .milliseconds(remaining))
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

    /// Writes through to Redis and holds the value once Redis took it, if
    /// the Redis store keeps stored keys tracked (`tracksStoredKeys`; without
    /// it a later change by another gateway would not be heard of).
    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
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
            self.completeFill(ticket, value: entry.value, computeMicroseconds: entry.computeMicroseconds, ttl: entry.ttl)
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
        let listener = self.state.withLock { $0.listener }
        await listener?.shutdown()
        await self.inner.shutdown()
    }

    // MARK: Fills

    private func beginFill(_ key: StorageKey) -> NearCache.Ticket? {
        guard let backendKey = self.inner.backendKey(for: key) else { return nil }
        return self.state.withLock { $0.cache.beginFill(key, backendKey: backendKey) }
    }

    private func completeFill(_ ticket: NearCache.Ticket, value: ByteBuffer, computeMicroseconds: UInt64, ttl: TimeAmount) {
        let now = NIODeadline.now()
        let (entries, bytes) = self.state.withLock { state in
            state.cache.completeFill(ticket, value: value, computeMicroseconds: computeMicroseconds, expires: now + ttl, now: now)
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
            let (removed, entries, bytes) = self.state.withLock { state in
                (state.cache.invalidate(backendKeys: keys), state.cache.count, state.cache.costBytes)
            }
            self.metrics.recordNearCacheInvalidation(messages: 1, removed: removed)
            self.metrics.recordNearCacheSize(entries: entries, bytes: bytes)
        case .flushed:
            self.invalidationMessages.wrappingAdd(1, ordering: .relaxed)
            self.flush(stopFilling: false, reason: "Redis flushed the database")
        case .lost:
            self.state.withLock { $0.tracking.listenerLost() }
            self.flush(stopFilling: true, reason: nil)
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

extension NearCacheStore: RegistryBackendProvider {
    /// The wrapped store's registry: purges go through `RedisStore`, which
    /// reports their deletions to the near-cache.
    func makeRegistryBackend() -> (any RegistryBackend)? {
        (self.inner as? any RegistryBackendProvider)?.makeRegistryBackend()
    }
}
