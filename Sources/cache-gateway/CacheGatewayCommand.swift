import ArgumentParser
import Foundation
import Gateway
import GatewayConnection
import GatewayProtocol
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle

/// `cache-gateway`: the per-host cache daemon and its admin commands.
@main
struct CacheGatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-gateway",
        abstract: "A per-host cache gateway: workers talk MessagePack over a Unix socket, entries live in memory or in Redis.",
        version: GatewayVersion.current,
        subcommands: [Serve.self, Ping.self, StatsCommand.self],
        defaultSubcommand: Serve.self
    )
}

/// The socket option shared by every subcommand.
struct SocketOption: ParsableArguments {
    @Option(name: .long, help: "The gateway's Unix socket (env CACHE_GATEWAY_SOCKET; default \(GatewayConfiguration.defaultSocketPath)).")
    var socket: String?

    /// Flag, then environment, then the default.
    var path: String {
        self.socket ?? ProcessInfo.processInfo.environment["CACHE_GATEWAY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
            ?? GatewayConfiguration.defaultSocketPath
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the gateway (the default subcommand).")

    @OptionGroup var socket: SocketOption

    @Option(help: "The socket file's permission bits, in octal.")
    var socketMode: String = "660"

    @Option(help: "The socket file's group (name or number).")
    var socketGroup: String?

    @Option(help: "Redis: redis://[user:password@]host:port/db or unix:///path/to/redis.sock?db=N (env CACHE_GATEWAY_REDIS). Without it, entries stay in this process's memory.")
    var redis: String?

    @Option(help: "The bound of the embedded in-memory store, in bytes.")
    var memoryLimit: Int = MemoryStore.defaultLimitBytes

    @Option(help: "Separates applications that share one backend (env CACHE_GATEWAY_NAMESPACE; default 'default').")
    var namespace: String?

    @Option(help: "How long a lookup may wait for Redis before the worker is told to compute, in milliseconds.")
    var lookupTimeoutMs: Int64 = 5

    @Option(help: "How long a store or an invalidation may wait for Redis before it is dropped, in milliseconds.")
    var writeTimeoutMs: Int64 = 500

    @Option(help: "How long a frame may take to arrive once it has started, in milliseconds; a stalled peer is disconnected.")
    var frameTimeoutMs: Int64 = 10_000

    @Option(help: "The largest frame payload accepted, in bytes.")
    var maxFrameSize: Int = FrameLimits.defaultMaxFrameSize

    @Option(help: "The largest value stored, in bytes.")
    var maxValueSize: Int = 4 * 1024 * 1024

    @Option(help: "trace, debug, info, notice, warning, error or critical (env CACHE_GATEWAY_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(help: "Serve Prometheus metrics at http://ADDRESS/metrics: 127.0.0.1:PORT, [::1]:PORT, or unix:/path/to/metrics.sock (env CACHE_GATEWAY_METRICS; default off).")
    var metrics: String?

    func run() async throws {
        // Flags win over the environment (a systemd EnvironmentFile is the
        // configuration file), which wins over the defaults.
        let environment = ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty }
        let redisURL = self.redis ?? environment["CACHE_GATEWAY_REDIS"]
        let namespace = self.namespace ?? environment["CACHE_GATEWAY_NAMESPACE"] ?? "default"
        let logLevel = self.logLevel ?? environment["CACHE_GATEWAY_LOG_LEVEL"] ?? "info"
        let metricsEndpoint: MetricsEndpoint?
        do {
            metricsEndpoint = try (self.metrics ?? environment["CACHE_GATEWAY_METRICS"]).map(MetricsEndpoint.init)
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }
        guard let mode = UInt32(self.socketMode, radix: 8) else {
            throw ValidationError("--socket-mode takes octal permission bits such as 660")
        }
        guard self.lookupTimeoutMs > 0, self.writeTimeoutMs > 0, self.frameTimeoutMs > 0 else { throw ValidationError("timeouts must be positive") }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level takes trace, debug, info, notice, warning, error or critical")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cache-gateway")
        let configuration = GatewayConfiguration(
            socketPath: self.socket.path,
            socketMode: mode,
            socketGroup: self.socketGroup,
            backend: redisURL.map { .redis(url: $0) } ?? .memory(limitBytes: self.memoryLimit),
            namespace: namespace,
            maxFrameSize: self.maxFrameSize,
            maxValueSize: self.maxValueSize,
            lookupTimeout: .milliseconds(self.lookupTimeoutMs),
            frameTimeout: .milliseconds(self.frameTimeoutMs)
        )
        do {
            try configuration.validate()
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }

        // Metrics: a registry of this process's own, handed to the library as
        // a factory; nothing is recorded when --metrics is off.
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[GatewayMetrics.Names.lookupDuration] = GatewayMetrics.latencyBuckets
        factory.durationHistogramBuckets[GatewayMetrics.Names.redisCommandDuration] = GatewayMetrics.latencyBuckets
        let metrics = GatewayMetrics(factory: metricsEndpoint == nil ? NOOPMetricsHandler.instance : factory)
        let metricsServer = metricsEndpoint.map { endpoint in
            MetricsServer(endpoint: endpoint, socketMode: mode, socketGroup: self.socketGroup, logger: logger) { registry.emitToBuffer() }
        }
        // Bound before the gateway reports ready, so that READY=1 means both listen.
        do {
            try await metricsServer?.bind()
        } catch let error as GatewayError {
            logger.critical("\(error.message)")
            throw ExitCode(1)
        }

        let store: any CacheStore
        if let redisURL {
            let url: RedisURL
            do {
                url = try RedisURL(redisURL)
            } catch let error as GatewayError {
                throw ValidationError(error.message)
            }
            var redisConfiguration = RedisStore.Configuration(lookupTimeout: configuration.lookupTimeout, writeTimeout: .milliseconds(self.writeTimeoutMs))
            // A reply may be as large as the largest value plus the entry header.
            redisConfiguration.pool.connection.maximumReplySize = max(redisConfiguration.pool.connection.maximumReplySize, configuration.maxValueSize + 1024)
            redisConfiguration.pool.connection.maximumCommandSize = max(redisConfiguration.pool.connection.maximumCommandSize, configuration.maxValueSize + 4096)
            store = try RedisStore(url: url, configuration: redisConfiguration, eventLoopGroup: MultiThreadedEventLoopGroup.singleton, logger: logger, metrics: metrics)
        } else {
            store = MemoryStore(limitBytes: self.memoryLimit)
        }
        let notifier = SystemdNotifier()
        let server = GatewayServer(
            configuration: configuration,
            store: store,
            logger: logger,
            metrics: metrics,
            onReady: { _ in notifier.notify("READY=1\nSTATUS=serving") },
            onDraining: { notifier.notify("STOPPING=1") }
        )
        let group = ServiceGroup(
            configuration: .init(
                // Shut down in reverse order: the gateway drains first, and
                // its metrics stay readable meanwhile.
                services: (metricsServer.map { [ServiceGroupConfiguration.ServiceConfiguration(service: $0)] } ?? []) + [.init(service: server)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await group.run()
        } catch let error as GatewayError {
            logger.critical("\(error.message)")
            throw ExitCode(1)
        }
        await store.shutdown()
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Exit 0 when the gateway answers a ping.")

    @OptionGroup var socket: SocketOption

    @Option(help: "How long to wait, in milliseconds.")
    var timeout: Int64 = 2000

    func run() async throws {
        do {
            let connection = try await GatewayConnection.connect(socketPath: self.socket.path, clientName: "cache-gateway ping", timeout: .milliseconds(self.timeout))
            _ = try await connection.request(.ping, timeout: .milliseconds(self.timeout))
            await connection.close()
            print("pong from \(self.socket.path) (gateway \(connection.hello.gatewayVersion))")
        } catch let error as GatewayError {
            FileHandle.standardError.write(Data("cache-gateway ping: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
    }
}

struct StatsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stats", abstract: "Show the gateway's counters and backend health.")

    @OptionGroup var socket: SocketOption

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let stats: Stats
        do {
            let connection = try await GatewayConnection.connect(socketPath: self.socket.path, clientName: "cache-gateway stats")
            guard case .statsReply(let reply) = try await connection.request(.stats) else {
                throw GatewayError(.malformedMessage, "the gateway did not answer with stats")
            }
            stats = reply
            await connection.close()
        } catch let error as GatewayError {
            FileHandle.standardError.write(Data("cache-gateway stats: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        let sorted = stats.values.sorted { $0.key < $1.key }
        if self.json {
            var object: [String: Any] = [:]
            for (name, value) in sorted {
                switch value {
                case .count(let count): object[name] = count
                case .text(let text): object[name] = text
                }
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
        } else {
            for (name, value) in sorted {
                switch value {
                case .count(let count): print("\(name): \(count)")
                case .text(let text): print("\(name): \(text)")
                }
            }
        }
    }
}
