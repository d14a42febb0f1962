import GatewayProtocol
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals

extension GatewayApplication {
    /// Everything the assembled gateway needs, with a default for every field:
    /// by default an embedded in-memory gateway on `GatewayConfiguration.defaultSocketPath`
    /// that stops gracefully on SIGTERM and SIGINT.
    ///
    /// Each part keeps its own configuration type; this one only gathers them
    /// and adds what belongs to no single part.
    public struct Configuration: Sendable {
        /// The server's socket, limits, namespace and access control.
        public var server: GatewayConfiguration
        /// Where entries live.
        public var backend: Backend
        /// The registry's purge policy, grace, lease and sweep timing, and this gateway's id.
        public var registry: Registry.Configuration
        /// When set, every stored value is signed with HMAC-SHA-256 under this
        /// key (see `IntegrityStore`); values that do not verify are misses.
        public var integrityKey: IntegrityStore.Key?
        /// The near-cache in front of a Redis backend (see `NearCacheStore`);
        /// nil for none. On by default (64 MiB); the memory backend has none.
        public var nearCache: NearCacheStore.Configuration?
        /// Where Prometheus metrics are served (`GET /metrics`); nil serves none.
        /// The document comes from the application's `metricsExposition`. A Unix
        /// socket here gets the server socket's mode and group.
        public var metricsEndpoint: MetricsEndpoint?
        /// Whether the gateway tells systemd (through `NOTIFY_SOCKET`, when it is
        /// set) `READY=1` once it serves and `STOPPING=1` when it starts draining.
        public var notifiesSystemd: Bool
        /// Which event loops serve the worker connections and the Redis data
        /// connections: the gateway's own (the default on Linux) or SwiftNIO's.
        public var eventLoops: EventLoops
        /// The signals that begin a graceful shutdown; empty for none (the
        /// gateway then stops on its parent service group's graceful shutdown,
        /// or when its task is cancelled).
        public var gracefulShutdownSignals: [UnixSignal]

        /// Creates a configuration; every argument has a default.
        public init(
            server: GatewayConfiguration = GatewayConfiguration(),
            backend: Backend = .memory(),
            registry: Registry.Configuration = Registry.Configuration(),
            integrityKey: IntegrityStore.Key? = nil,
            nearCache: NearCacheStore.Configuration? = NearCacheStore.Configuration(),
            metricsEndpoint: MetricsEndpoint? = nil,
            notifiesSystemd: Bool = true,
            eventLoops: EventLoops = .default,
            gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint]
        ) {
            self.eventLoops = eventLoops
            self.server = server
            self.backend = backend
            self.registry = registry
            self.integrityKey = integrityKey
            self.nearCache = nearCache
            self.metricsEndpoint = metricsEndpoint
            self.notifiesSystemd = notifiesSystemd
            self.gracefulShutdownSignals = gracefulShutdownSignals
        }

        /// Checks every part's settings; throws `GatewayError(.invalidConfiguration)`.
        public func validate() throws {
            try self.server.validate()
            try self.registry.validate()
            try self.backend.validate()
        }
    }

    /// Which event loops serve the worker connections and the Redis data
    /// connections.
    ///
    /// The gateway's own loops (`IOLoopGroup`, Linux only) serve a request
    /// with plain `epoll`, `read` and `write` calls, and a near-cache miss's
    /// Redis command goes out on a connection of the same loop, so that a
    /// lookup never changes threads; SwiftNIO's channel pipeline costs about a
    /// third more per hit (Benchmarks/README.md). What needs SwiftNIO's
    /// channels runs on SwiftNIO's loops either way: TLS connections to Redis,
    /// the near-cache's invalidation subscription, the Sentinel subscription
    /// and the metrics endpoint. So with TLS to Redis, a lookup on the
    /// gateway's loops would change threads twice on its way to Redis and
    /// back: `automatic` (the default) picks SwiftNIO's loops then.
    public struct EventLoops: Sendable, Hashable, CustomStringConvertible {
        enum Base: Sendable, Hashable {
            case automatic
            case gateway(count: Int?)
            case swiftNIO
        }

        let base: Base

        /// The gateway's own loops on Linux when the Redis backend (if any)
        /// is reached without TLS; SwiftNIO's otherwise.
        public static let automatic = EventLoops(base: .automatic)
        /// The gateway's own loops (Linux only): `count` of them, or one per
        /// CPU the process may run on (its affinity and CPU quota) when nil.
        public static func gateway(count: Int? = nil) -> EventLoops { EventLoops(base: .gateway(count: count)) }
        /// SwiftNIO's loops (the application's `eventLoopGroup`).
        public static let swiftNIO = EventLoops(base: .swiftNIO)
        /// `automatic`.
        public static var `default`: EventLoops { .automatic }

        /// `auto`, `gateway`, `gateway (N)` or `swiftnio`.
        public var description: String {
            switch self.base {
            case .automatic: "auto"
            case .gateway(nil): "gateway"
            case .gateway(let count?): "gateway (\(count))"
            case .swiftNIO: "swiftnio"
            }
        }

        /// How many of the gateway's own loops to run for `backend`: nil
        /// for SwiftNIO's loops, `.some(nil)` for one per CPU.
        func ownLoops(for backend: Backend) -> Int?? {
            switch self.base {
            case .swiftNIO: return nil
            case .gateway(let count):
                #if os(Linux)
                return .some(count)
                #else
                return nil
                #endif
            case .automatic:
                #if os(Linux)
                return backend.usesTLS ? nil : .some(nil)
                #else
                return nil
                #endif
            }
        }
    }

    /// Where the gateway keeps entries. A struct around an internal enum, so
    /// that choices (a near-cache, Redis Cluster, Sentinel) can be added without
    /// breaking code that uses it.
    public struct Backend: Sendable, CustomStringConvertible {
        enum Base: Sendable {
            case memory(limitBytes: Int)
            case redis(url: RedisURL, configuration: RedisStore.Configuration)
            case redisCluster(url: RedisClusterURL, configuration: RedisStore.Configuration)
            case sentinel(RedisSentinelConfiguration, configuration: RedisStore.Configuration)
        }

        let base: Base

        /// Whether Redis is reached over TLS.
        var usesTLS: Bool {
            switch self.base {
            case .memory: false
            case .redis(let url, _): url.tls != nil
            case .redisCluster(let url, _): url.usesTLS
            case .sentinel(let sentinel, _): sentinel.master.tls != nil
            }
        }

        /// The embedded in-memory store (`MemoryStore`), bounded by `limitBytes`
        /// (at least 1 KiB).
        public static func memory(limitBytes: Int = MemoryStore.defaultLimitBytes) -> Backend {
            Backend(base: .memory(limitBytes: limitBytes))
        }

        /// Redis at `url` (`RedisStore`). The pool's largest reply and command
        /// are raised, when needed, to fit the server's largest value.
        public static func redis(url: RedisURL, configuration: RedisStore.Configuration = RedisStore.Configuration()) -> Backend {
            Backend(base: .redis(url: url, configuration: configuration))
        }

        /// A Redis Cluster reached through `url`'s seeds (`RedisStore` with the
        /// cluster layout): each master gets a pool of `configuration.pool`.
        /// The near-cache, if on, tracks keys on every master (see `NearCacheStore`).
        public static func redisCluster(url: RedisClusterURL, configuration: RedisStore.Configuration = RedisStore.Configuration()) -> Backend {
            Backend(base: .redisCluster(url: url, configuration: configuration))
        }

        /// The Redis master that the sentinels of `sentinel` name, found again
        /// on every reconnect and followed through failovers (`SentinelResolver`).
        public static func sentinel(_ sentinel: RedisSentinelConfiguration, configuration: RedisStore.Configuration = RedisStore.Configuration()) -> Backend {
            Backend(base: .sentinel(sentinel, configuration: configuration))
        }

        /// Where a single-server Redis backend's pool connects; nil for the
        /// memory backend and for a cluster (whose router finds its masters).
        func endpointSource(eventLoopGroup: any EventLoopGroup, logger: Logger) -> (any RedisEndpointSource)? {
            switch self.base {
            case .memory, .redisCluster: nil
            case .redis(let url, _): FixedRedisEndpoint(url)
            case .sentinel(let sentinel, _): SentinelResolver(configuration: sentinel, eventLoopGroup: eventLoopGroup, logger: logger)
            }
        }

        /// `memory (N bytes)`, `redis` with the server's address (or the
        /// sentinels and master name), or `redis-cluster` with the seeds;
        /// never a password.
        public var description: String {
            switch self.base {
            case .memory(let limit): "memory (\(limit) bytes)"
            case .redis(let url, _): "redis (\(url.endpoint)\(url.tls.map { ", " + $0.summary } ?? ""))"
            case .redisCluster(let url, _): "redis-cluster (\(url.seeds.map { "\($0.endpoint)" }.joined(separator: ",")))"
            case .sentinel(let sentinel, _): "redis (\(sentinel)\(sentinel.master.tls.map { ", " + $0.summary } ?? ""))"
            }
        }

        /// Throws `GatewayError(.invalidConfiguration)` for a limit the store cannot work with.
        func validate() throws {
            func fail(_ message: String) -> GatewayError { GatewayError(.invalidConfiguration, message) }
            switch self.base {
            case .memory(let limit):
                guard limit >= 1024 else { throw fail("the memory limit must be at least 1 KiB, is \(limit)") }
            case .redis(let url, let configuration):
                try url.tls?.validate()
                try Self.validate(configuration)
            case .redisCluster(let url, let configuration):
                try url.seeds.first?.tls?.validate()
                try Self.validate(configuration)
            case .sentinel(let sentinel, let configuration):
                try sentinel.validate()
                try Self.validate(configuration)
            }
        }

        private static func validate(_ configuration: RedisStore.Configuration) throws {
            func fail(_ message: String) -> GatewayError { GatewayError(.invalidConfiguration, message) }
            guard configuration.lookupTimeout > .zero, configuration.writeTimeout > .zero else {
                throw fail("the Redis timeouts must be positive")
            }
            // A Lua script unpacks the keys of one step.
            guard (1...5_000).contains(configuration.deleteBatchSize) else {
                throw fail("the purge batch size must be 1 to 5000, is \(configuration.deleteBatchSize)")
            }
            guard configuration.deletePipelineDepth >= 1 else {
                throw fail("the purge pipeline depth must be at least 1, is \(configuration.deletePipelineDepth)")
            }
            guard configuration.pool.size >= 1 else {
                throw fail("a Redis pool needs at least one connection, not \(configuration.pool.size)")
            }
        }
    }
}
