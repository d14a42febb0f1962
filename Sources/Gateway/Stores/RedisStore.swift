#if canImport(Glibc)
import Glibc
#endif
import GatewayDigest
import GatewayProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// Entries in Redis, shared by every gateway that points at the same server.
///
/// **Keys.** For namespace `ns`, a function whose name hashes (SHA-256, first
/// 16 bytes in hex) to `F`, version `V` and argument key `K` (hex):
/// - `cg:ns:e:F:V:K` — the entry (a string with a TTL);
/// - `cg:ns:i:F:V` — the version's index: a sorted set of `K`, scored by the
///   entry's expiry in Unix milliseconds, so that a version's entries can be
///   deleted without KEYS or SCAN; it is trimmed of expired members as it is used;
/// - `cg:ns:v:F` — the set of versions that have entries.
/// The function name is hashed so that any name fits and no name can contain
/// the separator; the namespace is restricted to `[A-Za-z0-9_.-]` for the
/// same reason. No hash tags are used: with Redis Cluster a popular version's
/// entries then spread over every node instead of loading one.
///
/// **Entry format.** One byte 0x01 (the format), the compute time in
/// microseconds as 8 bytes big-endian, then the value. A string that does not
/// start this way is not ours and is treated as a miss.
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
        /// How long a lookup may wait for Redis before the worker is told to compute.
        public var lookupTimeout: TimeAmount
        /// How long a store, an invalidation batch or an index command may take.
        public var writeTimeout: TimeAmount
        /// How many keys one UNLINK deletes, when a version's entries go.
        public var deleteBatchSize: Int
        /// The least time between two log lines about the same kind of fault.
        public var logInterval: TimeAmount

        /// Defaults: one connection per event loop (at least 2), lookups
        /// answered within 5 ms, reconnects backing off from 20 ms to 500 ms (so
        /// that a restarted Redis is used again within a second).
        public init(
            pool: RedisConnectionPool.Configuration = Configuration.defaultPool,
            lookupTimeout: TimeAmount = .milliseconds(5),
            writeTimeout: TimeAmount = .milliseconds(500),
            deleteBatchSize: Int = 500,
            logInterval: TimeAmount = .seconds(10)
        ) {
            self.pool = pool
            self.lookupTimeout = lookupTimeout
            self.writeTimeout = writeTimeout
            self.deleteBatchSize = deleteBatchSize
            self.logInterval = logInterval
        }

        /// The gateway's pool: one connection per CPU (at least 2), and a
        /// reconnect backoff capped at 500 ms.
        public static var defaultPool: RedisConnectionPool.Configuration {
            var connection = RedisConnection.Configuration()
            connection.clientName = "cache-gateway"
            return RedisConnectionPool.Configuration(
                size: max(2, System.coreCount),
                connection: connection,
                // The initial delay and the cap are valid by construction.
                backoff: try! RedisBackoff(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(500), multiplier: 2, jitter: 0.3, stableAfter: .seconds(2))
            )
        }
    }

    private let pool: RedisConnectionPool
    private let configuration: Configuration
    private let faults: RateLimitedLog
    private let lookupFaults = Atomic<UInt64>(0)
    private let storeFaults = Atomic<UInt64>(0)
    private let corruptEntries = Atomic<UInt64>(0)
    private let eventLoopGroup: any EventLoopGroup
    private let metrics: GatewayMetrics

    /// Creates the store and starts connecting in the background; `metrics`
    /// (by default through `MetricsSystem.factory`) records its faults, its
    /// connections and the round trips of its commands.
    public init(url: RedisURL, configuration: Configuration = Configuration(), eventLoopGroup: any EventLoopGroup, logger: Logger, metrics: GatewayMetrics = GatewayMetrics()) throws {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.metrics = metrics
        self.pool = try RedisConnectionPool(url: url, configuration: configuration.pool, eventLoopGroup: eventLoopGroup, logger: logger, metrics: metrics)
        self.faults = RateLimitedLog(logger: logger, interval: configuration.logInterval)
        self.pool.start()
    }

    /// `redis`.
    public var kind: String { "redis" }

    /// Whether at least one connection is up.
    public var isHealthy: Bool { self.pool.availableConnectionCount > 0 }

    /// Lookups and stores that Redis could not serve, and entries that were not in our format.
    public var statistics: [String: Stats.Value] {
        [
            "backendLookupFaults": .count(self.lookupFaults.load(ordering: .relaxed)),
            "backendStoreFaults": .count(self.storeFaults.load(ordering: .relaxed)),
            "corruptEntries": .count(self.corruptEntries.load(ordering: .relaxed)),
            "backendConnections": .count(UInt64(self.pool.availableConnectionCount)),
        ]
    }

    // MARK: Keys

    static let entryFormat: UInt8 = 0x01
    static let entryHeaderLength = 9

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

    static func entryKey(_ key: StorageKey) -> ByteBuffer {
        ByteBuffer(string: "cg:\(key.namespace):e:\(self.functionID(key.function.function)):\(key.function.version):\(key.key.digest.hexString)")
    }

    static func indexKey(namespace: String, functionID: String, version: String) -> ByteBuffer {
        ByteBuffer(string: "cg:\(namespace):i:\(functionID):\(version)")
    }

    static func versionsKey(namespace: String, functionID: String) -> ByteBuffer {
        ByteBuffer(string: "cg:\(namespace):v:\(functionID)")
    }

    // MARK: CacheStore

    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        let future = self.pool.sendFuture(.get(Self.entryKey(key)), timeout: self.configuration.lookupTimeout, preferring: eventLoop)
        return future.hop(to: eventLoop).map { reply -> StoreLookup in
            switch reply {
            case .bulkString(nil):
                return .miss
            case .bulkString(var bytes?):
                guard bytes.readInteger(as: UInt8.self) == Self.entryFormat, let computeMicroseconds = bytes.readInteger(as: UInt64.self) else {
                    self.corruptEntries.wrappingAdd(1, ordering: .relaxed)
                    self.metrics.recordCorruptEntry()
                    self.faults.log("entry-format", "an entry in Redis is not in the gateway's format; treated as a miss")
                    return .miss
                }
                return .hit(bytes, computeMicroseconds: computeMicroseconds)
            case .error(let message):
                self.noteLookupFault("Redis answered a lookup with an error: \(message)")
                return .missDoNotStore
            default:
                self.noteLookupFault("Redis answered a lookup with \(reply)")
                return .missDoNotStore
            }
        }.recover { error in
            self.noteLookupFault("lookup not answered: \(error)")
            return .missDoNotStore
        }
    }

    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        var payload = ByteBufferAllocator().buffer(capacity: Self.entryHeaderLength + entry.value.readableBytes)
        payload.writeInteger(Self.entryFormat)
        payload.writeInteger(entry.computeMicroseconds)
        payload.writeImmutableBuffer(entry.value)

        let ttlMilliseconds = max(1, entry.ttl.nanoseconds / 1_000_000)
        let expiresAt = Self.nowMilliseconds() + ttlMilliseconds
        let functionID = Self.functionID(key.function.function)
        let index = Self.indexKey(namespace: key.namespace, functionID: functionID, version: key.function.version)
        let versions = Self.versionsKey(namespace: key.namespace, functionID: functionID)
        let commands = [
            RedisCommand("SET", arguments: [Self.entryKey(key), payload, ByteBuffer(string: "PX"), ByteBuffer(string: "\(ttlMilliseconds)")]),
            RedisCommand("ZADD", arguments: [index, ByteBuffer(string: "\(expiresAt)"), ByteBuffer(string: key.key.digest.hexString)]),
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
        return self.pool.pipelineFuture(commands, timeout: self.configuration.writeTimeout, preferring: eventLoop)
            .hop(to: eventLoop)
            .map { replies -> Bool in
                if case .error(let message) = replies.first {
                    self.noteStoreFault("Redis refused a store: \(message)")
                    return false
                }
                // The entry is stored; an index command that failed (PEXPIRE's
                // GT and NX need Redis 7) only weakens invalidation: say so.
                for case .error(let message) in replies.dropFirst() {
                    self.metrics.recordBackendError(.index)
                    self.faults.log("index", "Redis refused an index update (Redis 7 or later is required): \(message)")
                }
                return true
            }.recover { error in
                self.noteStoreFault("store dropped: \(error)")
                return false
            }
    }

    public func invalidate(namespace: String, function: String, version: String?, key: CacheKey?, on eventLoop: any EventLoop) -> EventLoopFuture<UInt64> {
        let functionID = Self.functionID(function)
        if let version, let key {
            let entry = Self.entryKey(StorageKey(namespace: namespace, function: FunctionVersion(function: function, version: version), key: key))
            let commands = [
                RedisCommand("UNLINK", arguments: [entry]),
                RedisCommand("ZREM", arguments: [Self.indexKey(namespace: namespace, functionID: functionID, version: version), ByteBuffer(string: key.digest.hexString)]),
            ]
            return self.pool.pipelineFuture(commands, timeout: self.configuration.writeTimeout, preferring: eventLoop)
                .flatMapThrowing { replies in UInt64(try replies[0].checked().integer ?? 0) }
                .hop(to: eventLoop)
        }
        let promise = eventLoop.makePromise(of: UInt64.self)
        promise.completeWithTask {
            if let version {
                return try await self.deleteVersion(namespace: namespace, functionID: functionID, version: version)
            }
            let versions = try await self.pool.send(.init("SMEMBERS", arguments: [Self.versionsKey(namespace: namespace, functionID: functionID)]), timeout: self.configuration.writeTimeout).checked()
            var deleted: UInt64 = 0
            for member in versions.array ?? [] {
                guard let name = member.string else { continue }
                deleted += try await self.deleteVersion(namespace: namespace, functionID: functionID, version: name)
            }
            return deleted
        }
        return promise.futureResult
    }

    /// Deletes every entry of one version through its index, in batches of
    /// UNLINK, then the index itself.
    private func deleteVersion(namespace: String, functionID: String, version: String) async throws -> UInt64 {
        let index = Self.indexKey(namespace: namespace, functionID: functionID, version: version)
        let batch = self.configuration.deleteBatchSize
        var deleted: UInt64 = 0
        while true {
            let members = try await self.pool.send(
                .init("ZRANGE", arguments: [index, ByteBuffer(string: "0"), ByteBuffer(string: "\(batch - 1)")]),
                timeout: self.configuration.writeTimeout
            ).checked()
            let keys = (members.array ?? []).compactMap(\.string)
            if keys.isEmpty { break }
            let entries = keys.map { ByteBuffer(string: "cg:\(namespace):e:\(functionID):\(version):\($0)") }
            let replies = try await self.pool.pipeline(
                [RedisCommand("UNLINK", arguments: entries), RedisCommand("ZREM", arguments: [index] + keys.map { ByteBuffer(string: $0) })],
                timeout: self.configuration.writeTimeout
            )
            deleted += UInt64(try replies[0].checked().integer ?? 0)
            _ = try replies[1].checked()
        }
        _ = try await self.pool.pipeline(
            [RedisCommand("UNLINK", arguments: [index]), RedisCommand("SREM", arguments: [Self.versionsKey(namespace: namespace, functionID: functionID), ByteBuffer(string: version)])],
            timeout: self.configuration.writeTimeout
        )
        return deleted
    }

    public func shutdown() async {
        await self.pool.shutdown()
    }

    // MARK: Faults

    private func noteLookupFault(_ message: @autoclosure () -> String) {
        self.lookupFaults.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordBackendError(.lookup)
        self.faults.log("lookup", message())
    }

    private func noteStoreFault(_ message: @autoclosure () -> String) {
        self.storeFaults.wrappingAdd(1, ordering: .relaxed)
        self.metrics.recordBackendError(.store)
        self.faults.log("store", message())
    }

    static func nowMilliseconds() -> Int64 {
        Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000) + Self.uptimeToUnixMilliseconds
    }

    /// NIODeadline counts from boot; index scores are Unix milliseconds, so the
    /// offset is read once from the wall clock.
    private static let uptimeToUnixMilliseconds: Int64 = {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        let unix = Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
        return unix - Int64(NIODeadline.now().uptimeNanoseconds / 1_000_000)
    }()
}
