#if canImport(Glibc)
import Glibc
#endif
import GatewayDigest
import GatewayProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle
import Synchronization

/// Entries in Redis, shared by every gateway that points at the same server.
///
/// **Keys.** For namespace `ns`, a function whose name hashes (SHA-256, first
/// 16 bytes in hex) to `F`, version `V` and argument key `K` (hex), on one
/// server (`RedisKeyLayout` gives the cluster's names, which tag entries and
/// indexes by bucket):
/// - `cg:ns:e:F:V:K` — the entry (a string with a TTL);
/// - `cg:{ns:F}:i:V` — the version's index: a sorted set of `K`, scored by the
///   entry's expiry in Unix milliseconds, so that a version's entries can be
///   deleted without KEYS or SCAN; it is trimmed of expired members as it is used;
/// - `cg:{ns:F}:p:V:T` — an index taken over by a purge (`T` tells which): the
///   purge renames the version's index first, so workers storing meanwhile
///   start a new index instead of making the purge chase them;
/// - `cg:{ns:F}:v` — the set of versions that have stored entries, written
///   with each entry (the registry learns of versions a moment later, in the
///   background, so invalidation reads both);
/// - `cg:{ns:F}:r` — the function's registry record (see `FunctionRecord`);
/// - `cg:ns:fns` — a hash from `F` to the function's name, listing the namespace's functions.
/// The function name is hashed so that any name fits and no name can contain
/// the separator; the namespace is restricted to `[A-Za-z0-9_.-]` for the
/// same reason.
///
/// **Entry format.** One byte 0x02 (the format), the compute time in
/// microseconds as 8 bytes big-endian, the entry's expiry in Unix
/// milliseconds as 8 bytes big-endian (so that a reader learns it with the
/// value, in one GET: the near-cache holds the entry no longer), then the
/// value. Format 0x01 (no expiry field) is read as well. A string that does not
/// start either way is not ours and is treated as a miss.
///
/// **Fail-open.** A lookup that Redis does not answer within `lookupTimeout`,
/// or that cannot be sent (no connection up), succeeds with `.missDoNotStore`;
/// a store that fails succeeds with `false`. Each such fault is counted and
/// logged at most once per `logInterval` with the number suppressed.
public final class RedisStore: CacheStore {
    /// Settings for the Redis backend.
    public struct Configuration: Sendable {
        /// The pool's size, connection settings and backoff.
        public var pool: RedisConnectionPool.Configuration
        /// How long Redis may stay silent while a lookup waits before the
        /// worker is told to compute: counted from when the lookup was sent
        /// or from Redis's last byte, whichever is later, so that neither a
        /// queue of lookups that Redis is working through nor a large value
        /// still arriving runs out of time (see `RedisCommandHandler`).
        public var lookupTimeout: TimeAmount
        /// How long a store, an invalidation batch or an index command may take.
        public var writeTimeout: TimeAmount
        /// How many entries one step of a purge deletes (one script run that
        /// UNLINKs them inside Redis), when a version's entries go.
        ///
        /// Redis serves nobody else during a step, so this sets the delay a
        /// purge can add to other clients' commands; each step also costs a
        /// round trip. The default, 250, is what the purge benchmark (1,000,000
        /// entries, 20 readers of another function) found to keep both within
        /// bounds: the purge took 1.13–1.42× a raw pipelined UNLINK of the same
        /// keys, the readers' p99 0.97–2.21× (5 runs in 6 within 2×). At 500 the
        /// purge took 0.99–1.07× and the p99 1.63–2.45× (1 run in 3 within 2×);
        /// at 200, 1.44–1.60× and 1.05–1.68×.
        public var deleteBatchSize: Int
        /// How many of those UNLINKs a purge sends at once (each group waits
        /// for its replies): Redis serves other clients between two groups, so
        /// it is never held for longer than this many batches.
        public var deletePipelineDepth: Int
        /// The least time between two log lines about the same kind of fault.
        public var logInterval: TimeAmount
        /// Whether each store also reads its key back, in one transaction with
        /// the write (`MULTI`, `SET`, `PTTL`, `EXEC`), so that Redis tracks
        /// the key for this connection again right after writing it. The
        /// near-cache needs this to hold what it stores: its connections use
        /// `CLIENT TRACKING … NOLOOP`, and a tracked key stops being tracked
        /// once written. Default false.
        public var tracksStoredKeys: Bool
        /// Whether each store deletes the entry's fill lease (`RedisFillLeases`)
        /// in one transaction with the write (`MULTI`, `SET`, `DEL`, `EXEC`):
        /// once the entry is there nobody waits on the lease, and a miss after
        /// a later invalidation finds no stale lease. Default false (the
        /// gateway turns it on with single-flight).
        public var deletesFillLeases: Bool = false

        /// Defaults: one connection per event loop (at least 2), lookups
        /// answered within 5 ms, reconnects backing off from 20 ms to 500 ms (so
        /// that a restarted Redis is used again within a second).
        public init(
            pool: RedisConnectionPool.Configuration = Configuration.defaultPool,
            lookupTimeout: TimeAmount = .milliseconds(5),
            writeTimeout: TimeAmount = .milliseconds(500),
            deleteBatchSize: Int = 250,
            deletePipelineDepth: Int = 1,
            logInterval: TimeAmount = .seconds(10),
            tracksStoredKeys: Bool = false
        ) {
            self.pool = pool
            self.lookupTimeout = lookupTimeout
            self.writeTimeout = writeTimeout
            self.deleteBatchSize = deleteBatchSize
            self.deletePipelineDepth = deletePipelineDepth
            self.logInterval = logInterval
            self.tracksStoredKeys = tracksStoredKeys
        }

        /// The gateway's pool: one connection per CPU (at least 2), and a
        /// reconnect backoff capped at 500 ms.
        public static var defaultPool: RedisConnectionPool.Configuration {
            var connection = RedisConnection.Configuration()
            connection.clientName = "cache-gateway"
            // A command waits at most behind this many others: at the
            // hundreds of thousands of pipelined commands a second that one
            // connection carries, about a tenth of a second. A store is eight
            // commands, so this is thousands of stores or tens of thousands of
            // lookups in flight per connection. Past it a lookup is answered
            // "compute, do not store" at once and a store is dropped (each
            // counted as a fault) rather than queued.
            connection.maximumInFlight = 65_536
            return RedisConnectionPool.Configuration(
                size: max(2, System.coreCount),
                connection: connection,
                // The initial delay and the cap are valid by construction.
                backoff: try! RedisBackoff(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(500), multiplier: 2, jitter: 0.3, stableAfter: .seconds(2))
            )
        }
    }

    /// Where commands go: one server's pool or a cluster's router.
    let target: RedisTarget
    /// The key names (one server's, or a cluster's).
    let layout: RedisKeyLayout
    /// The pool of a single-server store; nil on a cluster.
    let standalonePool: RedisConnectionPool?
    let configuration: Configuration
    private let faults: RateLimitedLog
    /// The counters and the deletion observer (see `Counters`).
    private let counters = Counters()
    private let eventLoopGroup: any EventLoopGroup
    private let metrics: GatewayMetrics

    /// Entries this gateway deletes, as the near-cache is told of them: by
    /// their Redis key, or all the keys that start with a prefix (a version).
    enum Deletion: Sendable, Equatable {
        case key(String)
        case prefix(String)
    }

    /// Calls `observer` whenever this store deletes entries: before the
    /// deletion is sent and again once Redis answered (set it before use).
    func observeDeletions(_ observer: @escaping @Sendable (Deletion) -> Void) {
        self.counters.deletionObserver.withLock { $0 = observer }
    }

    private func noteDeletion(_ deletion: Deletion) {
        self.counters.deletionObserver.withLock { $0 }?(deletion)
    }

    /// Creates the store; it connects once started (`start()`, or `run()` as a
    /// `Service`), and until then every command fails at once as Redis being
    /// down does. `metrics` (by default through `MetricsSystem.factory`)
    /// records its faults, its connections and the round trips of its commands.
    public init(url: RedisURL, configuration: Configuration = Configuration(), eventLoopGroup: any EventLoopGroup, logger: Logger, metrics: GatewayMetrics = GatewayMetrics()) throws {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.metrics = metrics
        let pool = try RedisConnectionPool(url: url, configuration: configuration.pool, eventLoopGroup: eventLoopGroup, logger: logger, metrics: metrics)
        self.standalonePool = pool
        self.target = .single(pool)
        self.layout = .single
        self.faults = RateLimitedLog(logger: logger, interval: configuration.logInterval)
    }

    /// Creates the store on a pool that asks `source` where Redis is before
    /// every connect (a Sentinel's master: `SentinelResolver`); see `init(url:…)`.
    public init(source: any RedisEndpointSource, configuration: Configuration = Configuration(), eventLoopGroup: any EventLoopGroup, logger: Logger, metrics: GatewayMetrics = GatewayMetrics()) throws {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.metrics = metrics
        let pool = try RedisConnectionPool(source: source, configuration: configuration.pool, eventLoopGroup: eventLoopGroup, logger: logger, metrics: metrics)
        self.standalonePool = pool
        self.target = .single(pool)
        self.layout = .single
        self.faults = RateLimitedLog(logger: logger, interval: configuration.logInterval)
    }

    /// Creates a store on the Redis Cluster at `cluster`, with the cluster
    /// layout (`RedisKeyLayout.cluster`): a pool of `configuration.pool` per
    /// master, found and followed as `RedisClusterRouter` describes.
    /// `tracksStoredKeys` must be false (the near-cache needs one server).
    public init(cluster: RedisClusterURL, configuration: Configuration = Configuration(), router routerConfiguration: RedisClusterRouter.Configuration? = nil, eventLoopGroup: any EventLoopGroup, logger: Logger, metrics: GatewayMetrics = GatewayMetrics()) throws {
        guard !configuration.tracksStoredKeys else {
            throw GatewayError(.invalidConfiguration, "the near-cache's key tracking is not available on a Redis Cluster")
        }
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.metrics = metrics
        var routerConfiguration = routerConfiguration ?? RedisClusterRouter.Configuration()
        routerConfiguration.pool = configuration.pool
        self.target = .cluster(try RedisClusterRouter(url: cluster, configuration: routerConfiguration, eventLoopGroup: eventLoopGroup, logger: logger, metrics: metrics))
        self.standalonePool = nil
        self.layout = .cluster
        self.faults = RateLimitedLog(logger: logger, interval: configuration.logInterval)
    }

    /// Starts connecting to Redis in the background. Calling it again, or
    /// after `shutdown()`, does nothing. A started store must be shut down.
    public func start() {
        self.target.start()
    }

    /// Waits until every connection made its first connect attempt (on a
    /// cluster, once the topology was first read); see `RedisConnectionPool.waitForFirstConnectAttempts()`.
    public func waitForFirstConnectAttempts() async {
        await self.target.waitForFirstConnectAttempts()
    }

    /// `redis`, or `redis-cluster`.
    public var kind: String { self.layout == .cluster ? "redis-cluster" : "redis" }

    /// Whether at least one connection is up.
    public var isHealthy: Bool { self.target.availableConnectionCount > 0 }

    /// Lookups and stores that Redis could not serve, and entries that were not in our format.
    public var statistics: [String: Stats.Value] {
        [
            "backendLookupFaults": .count(self.counters.lookupFaults.load(ordering: .relaxed)),
            "backendStoreFaults": .count(self.counters.storeFaults.load(ordering: .relaxed)),
            "corruptEntries": .count(self.counters.corruptEntries.load(ordering: .relaxed)),
            "backendConnections": .count(UInt64(self.target.availableConnectionCount)),
        ]
    }

    // MARK: Keys

    /// The format this gateway writes: compute time and expiry in the header.
    static let entryFormat: UInt8 = 0x02
    static let entryHeaderLength = 17
    /// The format without the expiry, still read.
    static let entryFormatWithoutExpiry: UInt8 = 0x01

    /// Hashed names of the functions seen, so that a lookup does not hash the
    /// name again (workers call a handful of functions). Bounded: cleared when full.
    private static let functionIDs = NIOLockedValueBox<[String: String]>([:])

    static func functionID(_ function: String) -> String {
        if let known = self.functionIDs.withLockedValue({ $0[function] }) { return known }
        // Hashing a name cannot fail short of libcrypto failing to allocate; the
        // name itself is then used, which only costs key length.
        guard let digest = try? SHA256.hash(Array(function.utf8)) else { return function }
        let id = String(digest.hexString.prefix(32))
        self.functionIDs.withLockedValue { cache in
            if cache.count >= 10_000 { cache.removeAll(keepingCapacity: true) }
            cache[function] = id
        }
        return id
    }

    // The key names are `RedisKeyLayout`'s. Entry keys carry their hash tag
    // (on a cluster) before the argument key: a key derived from an entry key
    // by appending a suffix stays in the entry's slot, so that it can go with
    // the entry in one command or script; a fill lease has a key of its own
    // with the same tag (`RedisKeyLayout.leaseKey`).

    func entryKey(_ key: StorageKey) -> ByteBuffer {
        self.layout.entryKey(namespace: key.namespace, functionID: Self.functionID(key.function.function), version: key.function.version, digest: key.key.digest)
    }

    /// The entry's Redis key.
    public func backendKey(for key: StorageKey) -> String? {
        String(buffer: self.entryKey(key))
    }

    static func versionsKey(namespace: String, functionID: String) -> ByteBuffer {
        ByteBuffer(string: "cg:{\(namespace):\(functionID)}:v")
    }

    static func recordKey(namespace: String, functionID: String) -> ByteBuffer {
        ByteBuffer(string: "cg:{\(namespace):\(functionID)}:r")
    }

    static func functionsKey(namespace: String) -> ByteBuffer {
        ByteBuffer(string: "cg:\(namespace):fns")
    }

    // MARK: CacheStore

    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        let entryKey = self.entryKey(key)
        let future = self.target.sendFuture(.get(entryKey), routedBy: entryKey, timeout: self.configuration.lookupTimeout, preferring: eventLoop)
        return future.hop(to: eventLoop).map { reply -> StoreLookup in
            self.storeLookup(reply)
        }.recover { error in
            self.lookupNotAnswered(error)
        }
    }

    /// The lookup with no future: the GET goes out with the other commands
    /// of this turn of the event loop (one write per Redis connection), and
    /// `answer` is called from within the turn that read Redis's reply.
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<StoreLookup, any Error>) -> Void) {
        let entryKey = self.entryKey(key)
        self.target.send(.get(entryKey), routedBy: entryKey, timeout: self.configuration.lookupTimeout, on: eventLoop) { result in
            switch result {
            case .success(let reply): answer(.success(self.storeLookup(reply)))
            case .failure(let error): answer(.success(self.lookupNotAnswered(error)))
            }
        }
    }

    /// What Redis's reply to a lookup's GET means.
    private func storeLookup(_ reply: RESPValue) -> StoreLookup {
        switch reply {
        case .bulkString(nil):
            return .miss
        case .bulkString(var bytes?):
            guard let (computeMicroseconds, expiresAt) = Self.readHeader(&bytes) else {
                self.counters.corruptEntries.wrappingAdd(1, ordering: .relaxed)
                self.metrics.recordCorruptEntry()
                self.faults.log("entry-format", "an entry in Redis is not in the gateway's format; treated as a miss")
                return .miss
            }
            return .hit(bytes, computeMicroseconds: computeMicroseconds, expiresAtUnixMilliseconds: expiresAt)
        case .error(let message):
            self.noteLookupFault("Redis answered a lookup with an error: \(message)")
            return .missDoNotStore
        default:
            self.noteLookupFault("Redis answered a lookup with \(reply)")
            return .missDoNotStore
        }
    }

    /// A lookup's GET that Redis did not answer (or that could not be sent): fail-open.
    private func lookupNotAnswered(_ error: any Error) -> StoreLookup {
        self.noteLookupFault("lookup not answered: \(error)")
        return .missDoNotStore
    }

    /// Reads an entry's header, leaving `bytes` at the value: the compute
    /// time, and the expiry in Unix milliseconds (nil in format 0x01). Nil
    /// when the bytes are not an entry of ours.
    static func readHeader(_ bytes: inout ByteBuffer) -> (computeMicroseconds: UInt64, expiresAt: Int64?)? {
        switch bytes.readInteger(as: UInt8.self) {
        case Self.entryFormat:
            guard let compute = bytes.readInteger(as: UInt64.self), let expiresAt = bytes.readInteger(as: Int64.self) else { return nil }
            return (compute, expiresAt)
        case Self.entryFormatWithoutExpiry:
            guard let compute = bytes.readInteger(as: UInt64.self) else { return nil }
            return (compute, nil)
        default:
            return nil
        }
    }

    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        let ttlMilliseconds = max(1, entry.ttl.nanoseconds / 1_000_000)
        let expiresAt = entry.expiresAtUnixMilliseconds ?? Self.nowMilliseconds() + ttlMilliseconds
        var payload = ByteBufferAllocator().buffer(capacity: Self.entryHeaderLength + entry.value.readableBytes)
        payload.writeInteger(Self.entryFormat)
        payload.writeInteger(entry.computeMicroseconds)
        payload.writeInteger(expiresAt)
        payload.writeImmutableBuffer(entry.value)

        let functionID = Self.functionID(key.function.function)
        let hex = key.key.digest.hexString
        let index = self.layout.indexKey(namespace: key.namespace, functionID: functionID, version: key.function.version, bucket: self.layout.bucket(ofHex: hex))
        let versions = Self.versionsKey(namespace: key.namespace, functionID: functionID)
        let entryKey = self.layout.entryKey(namespace: key.namespace, functionID: functionID, version: key.function.version, digest: key.key.digest)
        let set = RedisCommand("SET", arguments: [entryKey, payload, ByteBuffer(string: "PX"), ByteBuffer(string: "\(ttlMilliseconds)")])
        // With tracking, the write and a read of the key are one transaction,
        // so that no other client's write can fall between them untracked.
        // The entry's fill lease, if any, goes in the same transaction as the write.
        let lease = self.configuration.deletesFillLeases
            ? [RedisCommand("DEL", arguments: [ByteBuffer(string: self.layout.leaseKey(namespace: key.namespace, functionID: functionID, version: key.function.version, hex: hex))])]
            : []
        let write = self.configuration.tracksStoredKeys || !lease.isEmpty
            ? [RedisCommand("MULTI"), set] + (self.configuration.tracksStoredKeys ? [RedisCommand("PTTL", arguments: [entryKey])] : []) + lease + [RedisCommand("EXEC")]
            : [set]
        let commands = write + [
            RedisCommand("ZADD", arguments: [index, ByteBuffer(string: "\(expiresAt)"), ByteBuffer(string: hex)]),
            // Members whose entries have expired leave the index as it is written
            // to; with a minute's margin, so that a gateway whose clock runs ahead
            // does not drop members of entries that are still live.
            RedisCommand("ZREMRANGEBYSCORE", arguments: [index, ByteBuffer(string: "-inf"), ByteBuffer(string: "(\(expiresAt - ttlMilliseconds - 60_000)")]),
            // The index lives as long as its longest-lived entry could.
            RedisCommand("PEXPIRE", arguments: [index, ByteBuffer(string: "\(ttlMilliseconds)"), ByteBuffer(string: "GT")]),
            RedisCommand("PEXPIRE", arguments: [index, ByteBuffer(string: "\(ttlMilliseconds)"), ByteBuffer(string: "NX")]),
            RedisCommand("SADD", arguments: [versions, ByteBuffer(string: key.function.version)]),
            // The versions set, too, lives as long as the longest-lived entry could.
            RedisCommand("PEXPIRE", arguments: [versions, ByteBuffer(string: "\(ttlMilliseconds)"), ByteBuffer(string: "GT")]),
            RedisCommand("PEXPIRE", arguments: [versions, ByteBuffer(string: "\(ttlMilliseconds)"), ByteBuffer(string: "NX")]),
        ]
        let sent: EventLoopFuture<[RESPValue]>
        switch self.target {
        case .single(let pool):
            sent = pool.pipelineFuture(commands, timeout: self.configuration.writeTimeout, preferring: eventLoop)
        case .cluster(let router):
            // The entry and its bucket's index share a slot; the versions set
            // is in the function's slot: two pipelines, to two masters.
            let split = commands.count - 3
            let entryReplies = router.pipelineFuture(Array(commands[..<split]), slot: ClusterSlot(key: entryKey), timeout: self.configuration.writeTimeout, preferring: eventLoop)
            let versionReplies = router.pipelineFuture(Array(commands[split...]), slot: ClusterSlot(key: versions), timeout: self.configuration.writeTimeout, preferring: eventLoop)
            sent = entryReplies.and(versionReplies).map { $0 + $1 }
        }
        return sent
            .hop(to: eventLoop)
            .map { replies -> Bool in
                // The SET's own reply: plain, or the first of EXEC's.
                let setReply: RESPValue?
                if write.count == 1 {
                    setReply = replies.first
                } else if case .array(let results?) = replies[write.count - 1] {
                    setReply = results.first
                } else {
                    // EXEC refused (EXECABORT carries the queued command's error).
                    setReply = replies[write.count - 1]
                }
                if case .error(let message) = setReply {
                    self.noteStoreFault("Redis refused a store: \(message)")
                    return false
                }
                // The entry is stored; an index command that failed (PEXPIRE's
                // GT and NX need Redis 7) only weakens invalidation: say so.
                for case .error(let message) in replies.dropFirst(write.count) {
                    self.metrics.recordBackendError(.index)
                    self.faults.log("index", "Redis refused an index update (Redis 7 or later is required): \(message)")
                }
                return true
            }.recover { error in
                self.noteStoreFault("store dropped: \(error)")
                return false
            }
    }

    /// `PEXPIREAT key ms GT`: a later expiry stays, a missing entry stays
    /// missing. Not waited for; a failure costs the refresh's callers a
    /// miss (they wait for the refresh like for any fill).
    public func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop) {
        let entryKey = self.entryKey(key)
        let command = RedisCommand("PEXPIREAT", arguments: [entryKey, ByteBuffer(string: "\(unixMilliseconds)"), ByteBuffer(string: "GT")])
        _ = self.target.sendFuture(command, routedBy: entryKey, timeout: self.configuration.writeTimeout, preferring: eventLoop)
    }

    public func invalidate(namespace: String, function: String, version: String?, key: CacheKey?, on eventLoop: any EventLoop) -> EventLoopFuture<UInt64> {
        let functionID = Self.functionID(function)
        let promise = eventLoop.makePromise(of: UInt64.self)
        promise.completeWithTask {
            // The versions set is written with each entry, so it lists every
            // version with entries at once; the registry record adds versions
            // registered on other gateways whose stores are still on their way.
            var versions: [String]
            if let version {
                versions = [version]
            } else {
                let versionsKey = Self.versionsKey(namespace: namespace, functionID: functionID)
                let stored = try await self.target.send(RedisCommand("SMEMBERS", arguments: [versionsKey]), routedBy: versionsKey, timeout: self.configuration.writeTimeout).checked()
                var all = Set((stored.array ?? []).compactMap(\.string))
                if let record = try await self.registryRecord(namespace: namespace, functionID: functionID)?.record {
                    all.formUnion(record.versions.keys)
                }
                versions = all.sorted()
            }
            var deleted: UInt64 = 0
            for version in versions {
                if let key {
                    deleted += try await self.deleteEntry(namespace: namespace, functionID: functionID, version: version, key: key)
                } else {
                    deleted += try await self.deleteVersion(namespace: namespace, functionID: functionID, version: version)
                }
            }
            return deleted
        }
        return promise.futureResult
    }

    private func deleteEntry(namespace: String, functionID: String, version: String, key: CacheKey) async throws -> UInt64 {
        let hex = key.digest.hexString
        let entryKey = self.layout.entryKey(namespace: namespace, functionID: functionID, version: version, hex: hex)
        // Told before and after: a read that was out while the entry went
        // cannot leave its old value behind in the near-cache.
        self.noteDeletion(.key(entryKey))
        defer { self.noteDeletion(.key(entryKey)) }
        let entryKeyBytes = ByteBuffer(string: entryKey)
        let index = self.layout.indexKey(namespace: namespace, functionID: functionID, version: version, bucket: self.layout.bucket(ofHex: hex))
        let replies = try await self.target.pipeline([
            RedisCommand("UNLINK", arguments: [entryKeyBytes]),
            RedisCommand("ZREM", arguments: [index, ByteBuffer(string: hex)]),
        ], routedBy: entryKeyBytes, timeout: self.configuration.writeTimeout)
        return UInt64(try replies[0].checked().integer ?? 0)
    }

    /// Deletes every entry of one version (a manual purge): its index is
    /// renamed first, so that what is deleted is what existed at that moment,
    /// and workers storing meanwhile start a new index.
    private func deleteVersion(namespace: String, functionID: String, version: String) async throws -> UInt64 {
        try await self.captureAndDelete(namespace: namespace, functionID: functionID, version: version, tag: "m\(UInt64.random(in: 1...UInt64.max))", exclusive: false)
    }

    /// Renames each bucket's index of a version (one on a single server) to
    /// a purge index tagged `tag`, then deletes the entries it lists; the
    /// buckets of a cluster go at once, each on its own master. With
    /// `exclusive` (a registry purge on a cluster, which may be a retry), a
    /// bucket whose purge index already exists is not captured again: its
    /// earlier capture is deleted instead (RENAMENX).
    func captureAndDelete(namespace: String, functionID: String, version: String, tag: String, exclusive: Bool) async throws -> UInt64 {
        try await withThrowingTaskGroup(of: UInt64.self) { group in
            for bucket in self.layout.buckets {
                group.addTask {
                    let index = self.layout.indexKey(namespace: namespace, functionID: functionID, version: version, bucket: bucket)
                    let captured = self.layout.purgeIndexKey(namespace: namespace, functionID: functionID, version: version, bucket: bucket, tag: tag)
                    let renamed = try await self.target.send(RedisCommand(exclusive ? "RENAMENX" : "RENAME", arguments: [index, captured]), routedBy: index, timeout: self.configuration.writeTimeout)
                    if case .error(let message) = renamed {
                        // No index: the bucket has no entries (RENAME's only
                        // error for a missing key); an exclusive purge may
                        // still find its earlier capture.
                        guard message.contains("no such key") else { throw GatewayError(.backendError, "Redis refused RENAME: \(message)") }
                        if !exclusive { return 0 }
                    }
                    return try await self.deleteCaptured(namespace: namespace, functionID: functionID, version: version, bucket: bucket, index: captured)
                }
            }
            var deleted: UInt64 = 0
            for try await count in group { deleted += count }
            return deleted
        }
    }

    /// Deletes the entries listed in a captured index, then the index.
    ///
    /// Each step is one script run inside Redis: read `deleteBatchSize`
    /// members of the index by rank, UNLINK their entries. Done this way, the
    /// key names never travel to the gateway and back (a million entries are
    /// about 100 MB of names), and the gateway's CPU stays with its workers.
    /// The index is read, not popped: nobody else writes a captured index,
    /// and reading costs Redis far less than removing members one by one; the
    /// whole index goes at the end with one UNLINK, freed in the background.
    /// Steps go out `deletePipelineDepth` at a time, each group after the
    /// previous one's replies, so Redis serves other clients between two
    /// groups: a purge never holds it for longer than one group.
    ///
    /// The script names the entry keys itself rather than in KEYS; on a
    /// cluster they share the index's hash tag (`RedisKeyLayout`), so they
    /// are in its slot, on the node the script runs on.
    func deleteCaptured(namespace: String, functionID: String, version: String, bucket: Int?, index: ByteBuffer) async throws -> UInt64 {
        // Lua's unpack() takes at most about 8,000 values.
        let batch = min(5_000, max(1, self.configuration.deleteBatchSize))
        let depth = max(1, self.configuration.deletePipelineDepth)
        let prefixText = self.layout.entryKeyPrefix(namespace: namespace, functionID: functionID, version: version)
        let prefix = ByteBuffer(string: self.layout.bucketEntryPrefix(namespace: namespace, functionID: functionID, version: version, bucket: bucket))
        self.noteDeletion(.prefix(prefixText))
        defer { self.noteDeletion(.prefix(prefixText)) }
        let script = ByteBuffer(string: Self.deleteBatchScript)
        var deleted: UInt64 = 0
        var start = 0
        while true {
            var commands: [RedisCommand] = []
            for step in 0..<depth {
                let first = start + step * batch
                commands.append(RedisCommand("EVAL", arguments: [
                    script, ByteBuffer(string: "1"), index,
                    ByteBuffer(string: "\(first)"), ByteBuffer(string: "\(first + batch - 1)"), prefix,
                ]))
            }
            var finished = false
            for reply in try await self.target.pipeline(commands, routedBy: index, timeout: self.configuration.writeTimeout) {
                let counts = try reply.checked().array ?? []
                guard counts.count == 2, let removed = counts[0].integer, let read = counts[1].integer else {
                    throw GatewayError(.backendError, "the purge script answered \(reply)")
                }
                deleted += UInt64(max(0, removed))
                if read < batch { finished = true }
            }
            if finished { break }
            start += depth * batch
        }
        _ = try await self.target.send(RedisCommand("UNLINK", arguments: [index]), routedBy: index, timeout: self.configuration.writeTimeout)
        return deleted
    }

    /// KEYS[1]: a captured index; ARGV: first and last rank, entry key prefix.
    /// Returns {entries deleted, members read}.
    static let deleteBatchScript = """
        local members = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2])
        if #members == 0 then return {0, 0} end
        local keys = {}
        for i, member in ipairs(members) do keys[i] = ARGV[3] .. member end
        return {redis.call('UNLINK', unpack(keys)), #members}
        """

    /// Stops reconnecting and closes every connection; commands fail with
    /// `.shuttingDown` from then on.
    public func shutdown() async {
        await self.target.shutdown()
    }

    // MARK: Faults

    private func noteLookupFault(_ message: @autoclosure () -> String) {
        self.counters.lookupFaults.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordBackendError(.lookup)
        self.faults.log("lookup", message())
    }

    private func noteStoreFault(_ message: @autoclosure () -> String) {
        self.counters.storeFaults.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordBackendError(.store)
        self.faults.log("store", message())
    }

    static func nowMilliseconds() -> Int64 {
        Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) + Self.uptimeToUnixMilliseconds
    }

    /// NIODeadline counts from boot; index scores are Unix milliseconds, so the
    /// offset is read once from the wall clock.
    static let uptimeToUnixMilliseconds: Int64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let unix = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        return unix - Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000)
    }()
}

extension RedisStore: Service {
    /// Starts the store, waits for graceful shutdown (or cancellation), then
    /// shuts the store down.
    public func run() async throws {
        self.start()
        try? await gracefulShutdown()
        await self.shutdown()
    }
}

extension RedisStore {
    /// The store's fault counters and its deletion observer, in a class of
    /// their own rather than as stored properties of `RedisStore`: Swift 6.3's
    /// optimizer crashes (an ownership error in CopyPropagation) on a throwing
    /// initializer of a class with `Atomic` stored properties, which broke
    /// release builds.
    fileprivate final class Counters: Sendable {
        let lookupFaults = Atomic<UInt64>(0)
        let storeFaults = Atomic<UInt64>(0)
        let corruptEntries = Atomic<UInt64>(0)
        let deletionObserver = Mutex<(@Sendable (Deletion) -> Void)?>(nil)
    }
}
