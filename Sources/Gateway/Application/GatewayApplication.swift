import GatewayProtocol
import Logging
import Metrics
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The whole gateway, assembled: the store, the registry, the server and the
/// metrics endpoint, run together as the services of one `ServiceGroup`.
///
/// Nothing is built or started in the initializer. `run()` builds every part
/// from `configuration`, then runs them until graceful shutdown (one of
/// `configuration.gracefulShutdownSignals`, the graceful shutdown of a service
/// group it runs in, or the cancellation of its task):
///
/// ```swift
/// let application = GatewayApplication(
///     configuration: .init(server: .init(socketPath: "/run/app/gateway.sock")),
///     logger: Logger(label: "cache-gateway"),
///     metricsFactory: MetricsSystem.factory
/// )
/// try await application.run()
/// ```
///
/// The services start together, the store's users once the store has started
/// (with Redis, once each connection has made its first attempt, so that a
/// gateway reports ready with Redis connected when Redis is up), and stop in
/// reverse order: the server drains first (its connections release
/// their versions), then the registry releases its leases, then the metrics
/// endpoint closes, and the store shuts down last. A part that fails stops the
/// others the same way, and `run()` throws the part's error.
public struct GatewayApplication: Service {
    /// What to build and how.
    public let configuration: Configuration
    /// Where every part logs; the application never makes its own.
    public let logger: Logger
    private let metricsFactory: any MetricsFactory
    private let metricsExposition: (@Sendable () -> [UInt8])?
    private let eventLoopGroup: any EventLoopGroup
    private let onReady: @Sendable (String) -> Void

    /// Creates an application; it builds and starts nothing until `run()`.
    ///
    /// - Parameters:
    ///   - configuration: every part's settings.
    ///   - logger: where every part logs.
    ///   - metricsFactory: where requests, hits, latencies, connections and
    ///     Redis round trips are recorded (`NOOPMetricsHandler.instance` records nothing).
    ///   - metricsExposition: the document served at `configuration.metricsEndpoint`
    ///     (for Prometheus, the text exposition of the registry behind
    ///     `metricsFactory`); required when the endpoint is set.
    ///   - eventLoopGroup: SwiftNIO's loops: they serve connections and talk
    ///     to Redis with `configuration.eventLoops` set to `.swiftNIO`, and
    ///     otherwise run only what needs SwiftNIO (see `EventLoops`).
    ///   - onReady: called with the socket path once the gateway accepts
    ///     connections (and the metrics endpoint, if any, is listening).
    public init(
        configuration: Configuration = Configuration(),
        logger: Logger,
        metricsFactory: any MetricsFactory,
        metricsExposition: (@Sendable () -> [UInt8])? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        onReady: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.metricsExposition = metricsExposition
        self.eventLoopGroup = eventLoopGroup
        self.onReady = onReady
    }

    /// Builds every part and runs them until graceful shutdown or cancellation.
    ///
    /// Throws `GatewayError(.invalidConfiguration)` when the configuration is
    /// invalid or a socket cannot be listened on, and the error of a part that
    /// fails while running; whatever had started is stopped first.
    public func run() async throws {
        let configuration = self.configuration
        try configuration.validate()
        let logger = self.logger
        let metrics = GatewayMetrics(factory: self.metricsFactory)
        // The loops that serve workers and carry their lookups to Redis.
        let loops: any EventLoopGroup
        #if os(Linux)
        var ownLoops: IOLoopGroup?
        if let count = configuration.eventLoops.ownLoops(for: configuration.backend) {
            let group = try IOLoopGroup.start(count: count ?? IOLoopGroup.defaultCount)
            ownLoops = group
            loops = group
        } else {
            loops = self.eventLoopGroup
        }
        defer { if let ownLoops { ownLoops.shutdownGracefully { _ in } } }
        #else
        loops = self.eventLoopGroup
        #endif

        // The store.
        var redis: RedisStore?
        var store: any CacheStore
        switch configuration.backend.base {
        case .memory(let limitBytes):
            store = MemoryStore(limitBytes: limitBytes)
        case .redis(_, var redisConfiguration), .sentinel(_, var redisConfiguration):
            // The near-cache holds what it stores only if each store leaves its key tracked.
            if let nearCache = configuration.nearCache, nearCache.capacityBytes > 0 { redisConfiguration.tracksStoredKeys = true }
            // Fill leases are on with single-flight: a store deletes its entry's lease.
            redisConfiguration.deletesFillLeases = configuration.server.singleFlight
            // A reply may be as large as the largest value plus the entry header.
            let connection = redisConfiguration.pool.connection
            redisConfiguration.pool.connection.maximumReplySize = max(connection.maximumReplySize, configuration.server.maxValueSize + 1024)
            redisConfiguration.pool.connection.maximumCommandSize = max(connection.maximumCommandSize, configuration.server.maxValueSize + 4096)
            guard let source = configuration.backend.endpointSource(eventLoopGroup: self.eventLoopGroup, logger: logger) else {
                throw GatewayError(.invalidConfiguration, "the Redis backend has no endpoint")
            }
            let redisStore = try RedisStore(source: source, configuration: redisConfiguration, eventLoopGroup: loops, logger: logger, metrics: metrics)
            redis = redisStore
            store = redisStore
        case .redisCluster(let url, var redisConfiguration):
            let connection = redisConfiguration.pool.connection
            redisConfiguration.pool.connection.maximumReplySize = max(connection.maximumReplySize, configuration.server.maxValueSize + 1024)
            redisConfiguration.pool.connection.maximumCommandSize = max(connection.maximumCommandSize, configuration.server.maxValueSize + 4096)
            redisConfiguration.tracksStoredKeys = false
            redisConfiguration.deletesFillLeases = configuration.server.singleFlight
            let redisStore = try RedisStore(cluster: url, configuration: redisConfiguration, eventLoopGroup: loops, logger: logger, metrics: metrics)
            redis = redisStore
            store = redisStore
        }
        if let key = configuration.integrityKey {
            store = IntegrityStore(wrapping: store, key: key, logger: logger)
            logger.info("values are signed with HMAC-SHA-256", metadata: ["namespace": "\(IntegrityStore.signedNamespace(configuration.server.namespace))"])
        }
        // In front of the signatures, so that only verified values enter it.
        var nearCache: NearCacheStore?
        if let redis, let nearCacheConfiguration = configuration.nearCache, nearCacheConfiguration.capacityBytes > 0 {
            let near = NearCacheStore(wrapping: store, redis: redis, configuration: nearCacheConfiguration, logger: logger, metrics: metrics)
            nearCache = near
            store = near
            logger.info("near-cache on", metadata: ["near_cache_bytes": "\(nearCacheConfiguration.capacityBytes)"])
        }
        // Fill leases: with single-flight on a Redis backend, fills are shared
        // by every gateway on it (RedisFillLeases); a waiting gateway learns
        // of the other's value from the near-cache's invalidations, or polls.
        var fillSharing: (leases: any FillLeases, remote: FillRemoteReads)?
        if let redis, configuration.server.singleFlight {
            let changes = nearCache.map { near in FillBackendChanges(live: { [weak near] in near?.tracksChanges ?? false }) }
            if let changes, let nearCache { nearCache.observeChanges { names in changes.changed(names) } }
            let readStore = store
            fillSharing = (
                RedisFillLeases(store: redis),
                FillRemoteReads(read: { key, loop in readStore.lookup(key, on: loop) }, changes: changes)
            )
        }
        let storeStarted = StartGate()
        let storeService = StoreService(store: store, started: storeStarted) { [redis, nearCache] in
            guard let redis else { return }
            nearCache?.start()
            redis.start()
            await redis.waitForFirstConnectAttempts()
        }

        // The registry and the server.
        let statistics = GatewayStatistics()
        let registry = Registry(
            configuration: configuration.registry,
            store: store,
            namespace: configuration.server.namespace,
            logger: logger,
            statistics: statistics,
            metrics: metrics
        )
        let notifier = configuration.notifiesSystemd ? SystemdNotifier() : nil
        let onReady = self.onReady
        let server = GatewayServer(
            configuration: configuration.server,
            store: store,
            eventLoopGroup: loops,
            logger: logger,
            statistics: statistics,
            registry: registry,
            metrics: metrics,
            fillSharing: fillSharing,
            onReady: { path in
                notifier?.notify("READY=1\nSTATUS=serving")
                onReady(path)
            },
            onDraining: { notifier?.notify("STOPPING=1") }
        )

        // The metrics endpoint, bound before the server reports ready so that
        // being ready means both listen. Nothing else has started yet.
        var metricsServer: MetricsServer?
        if let endpoint = configuration.metricsEndpoint {
            guard let exposition = self.metricsExposition else {
                throw GatewayError(.invalidConfiguration, "metrics are to be served on \(endpoint), but the application has no metrics exposition")
            }
            let endpointServer = MetricsServer(
                endpoint: endpoint,
                socketMode: configuration.server.socketMode,
                socketGroup: configuration.server.socketGroup,
                eventLoopGroup: self.eventLoopGroup,
                logger: logger,
                exposition: exposition
            )
            try await endpointServer.bind()
            metricsServer = endpointServer
        }

        // Listed in starting order; they stop in reverse. A bound metrics
        // server is in the group, which runs (and so stops) every service.
        var services: [any Service] = [storeService]
        if let metricsServer { services.append(metricsServer) }
        services.append(GatedService(service: registry, gate: storeStarted))
        services.append(GatedService(service: server, gate: storeStarted))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { service in
                    // A part that fails stops the others in order, as a graceful shutdown does.
                    ServiceGroupConfiguration.ServiceConfiguration(service: service, failureTerminationBehavior: .gracefullyShutdownGroup)
                },
                gracefulShutdownSignals: configuration.gracefulShutdownSignals,
                logger: logger
            )
        )
        try await group.run()
    }
}
