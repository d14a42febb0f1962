import ArgumentParser
import Foundation
import Gateway
import GatewayConnection
import GatewayProtocol
import Logging
import Metrics
import NIOCore
import Prometheus

/// `cache-gateway`: the per-host cache daemon and its admin commands.
@main
struct CacheGatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-gateway",
        abstract: "A per-host cache gateway: workers talk MessagePack over a Unix socket, entries live in memory or in Redis.",
        version: GatewayVersion.current,
        subcommands: [Serve.self, Ping.self, StatsCommand.self, FunctionsCommand.self, PurgeCommand.self],
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
    static let configuration = CommandConfiguration(
        abstract: "Run the gateway (the default subcommand).",
        discussion: "Started by a systemd .socket unit (LISTEN_FDS), it serves the socket systemd passed instead of binding --socket."
    )

    @OptionGroup var socket: SocketOption

    @Option(help: "The socket file's permission bits, in octal.")
    var socketMode: String = "660"

    @Option(help: "The socket file's group (name or number).")
    var socketGroup: String?

    @Option(help: "Redis: redis://[user:password@]host:port/db, rediss://… (TLS), unix:///path/to/redis.sock?db=N, a Redis Cluster as redis+cluster://[user:password@]host1:port1,host2:port2 (rediss+cluster:// for TLS), or redis+sentinel://[user:password@]host:26379,host:26379/master-name?db=N (rediss+sentinel:// for TLS) (env CACHE_GATEWAY_REDIS). Without it, entries stay in this process's memory.")
    var redis: String?

    @OptionGroup var redisConnection: RedisConnectionOptions

    @Option(help: "The bound of the embedded in-memory store, in bytes.")
    var memoryLimit: Int = MemoryStore.defaultLimitBytes

    @Option(help: "The bound of the near-cache in front of Redis, in bytes (env CACHE_GATEWAY_NEAR_CACHE_SIZE; 0 turns it off).")
    var nearCacheSize: Int?

    @Option(help: "Which event loops serve workers and carry their lookups to Redis: gateway (its own epoll loops, one per CPU it may use; Linux only), gateway:N (N of them), swiftnio, or auto (the default: gateway on Linux unless Redis is reached over TLS, swiftnio otherwise) (env CACHE_GATEWAY_EVENT_LOOPS).")
    var eventLoops: String?

    /// `--event-loops`'s text as a choice; nil for none.
    static func eventLoops(_ text: String?) throws -> GatewayApplication.EventLoops? {
        guard let text, !text.isEmpty else { return nil }
        if text == "swiftnio" { return .swiftNIO }
        if text == "auto" { return .automatic }
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts[0] == "gateway", parts.count <= 2 else {
            throw ValidationError("--event-loops takes auto, gateway, gateway:N or swiftnio, not \(text)")
        }
        #if os(Linux)
        guard parts.count == 2 else { return .gateway() }
        guard let count = Int(parts[1]), (1...1024).contains(count) else {
            throw ValidationError("--event-loops gateway:N takes 1 to 1024 loops, not \(parts[1])")
        }
        return .gateway(count: count)
        #else
        throw ValidationError("--event-loops gateway needs Linux (epoll); use swiftnio")
        #endif
    }

    @Option(help: "Separates applications that share one backend (env CACHE_GATEWAY_NAMESPACE; default 'default').")
    var namespace: String?

    @Option(help: "How long a lookup may wait for Redis before the worker is told to compute, in milliseconds.")
    var lookupTimeoutMs: Int64 = 5

    @Option(help: "How long a store or an invalidation may wait for Redis before it is dropped, in milliseconds.")
    var writeTimeoutMs: Int64 = 500

    @Option(help: "How many entries one step of a purge deletes inside Redis (Redis backend). Smaller keeps other clients' latency lower while a version's entries go; larger purges faster.")
    var purgeBatchSize: Int = RedisStore.Configuration().deleteBatchSize

    @Option(help: "Single-flight: 'on' holds a lookup that misses while another worker computes the same entry on this gateway until its value is stored (clients that announce support only); 'off' tells every missing lookup to compute (env CACHE_GATEWAY_SINGLE_FLIGHT; default on).")
    var singleFlight: String?

    @Option(help: "The longest a computation may run before a lookup waiting for it is told to compute instead, in milliseconds (the bound is twice the function's last recorded compute time plus 500 ms, at most this; default 2000).")
    var fillWaitMaxMs: Int64 = 2_000

    @Option(help: "Early refresh (XFetch's beta): a hit of an entry close to its expiry asks its caller to compute it again in the background, earlier the larger this is; 0 turns it off (env CACHE_GATEWAY_EARLY_REFRESH_BETA; default 1; needs single-flight; clients that announce support only).")
    var earlyRefreshBeta: Double?

    @Option(help: "How long a frame may take to arrive once it has started, in milliseconds; a stalled peer is disconnected.")
    var frameTimeoutMs: Int64 = 10_000

    @Option(help: "The largest frame payload accepted, in bytes.")
    var maxFrameSize: Int = FrameLimits.defaultMaxFrameSize

    @Option(help: "The largest value stored, in bytes.")
    var maxValueSize: Int = 4 * 1024 * 1024

    @Option(help: "trace, debug, info, notice, warning, error or critical (env CACHE_GATEWAY_LOG_LEVEL; default info).")
    var logLevel: String?

    @Option(help: "When a version's entries are deleted: 'grace' (once no gateway has used it for the grace period) or 'eager' (as soon as a new version of its function registers) (env CACHE_GATEWAY_PURGE; default grace).")
    var purge: String?

    @Option(help: "How long a version must be unused everywhere before its entries are purged, in milliseconds (default 10 minutes).")
    var purgeGraceMs: Int64 = 600_000

    @Option(help: "How long a version lease lives unrenewed, in milliseconds; a dead gateway's versions count as unused after it (default 30 s).")
    var leaseMs: Int64 = 30_000

    @Option(help: "How often this gateway looks for unused versions to purge, in milliseconds (default 5 s).")
    var sweepIntervalMs: Int64 = 5_000

    @Option(help: "This gateway's id in the registry's leases (env CACHE_GATEWAY_ID; default hostname:pid).")
    var gatewayId: String?

    @Option(help: "Serve only peers with this uid (a number or a user name; repeatable or comma-separated; env CACHE_GATEWAY_ALLOW_UID). Root and the gateway's own user are always served. Without --allow-uid and --allow-gid, everyone who can open the socket is.")
    var allowUid: [String] = []

    @Option(help: "Serve only peers in this group, effective or supplementary (a number or a group name; repeatable or comma-separated; env CACHE_GATEWAY_ALLOW_GID).")
    var allowGid: [String] = []

    @Flag(inversion: .prefixedNo, help: "Give each peer uid a namespace of its own, so that applications running as different users never see each other's entries (env CACHE_GATEWAY_NAMESPACE_PER_UID=1).")
    var namespacePerUid: Bool?

    @Option(help: "Sign every stored value with HMAC-SHA-256 under the key in this file (at least 32 bytes; env CACHE_GATEWAY_HMAC_KEY_FILE); values that do not verify are misses and are deleted.")
    var hmacKeyFile: String?

    @Option(help: "Serve Prometheus metrics at http://ADDRESS/metrics: 127.0.0.1:PORT, [::1]:PORT, or unix:/path/to/metrics.sock (env CACHE_GATEWAY_METRICS; default off).")
    var metrics: String?

    func run() async throws {
        // Flags win over the environment (a systemd EnvironmentFile is the
        // configuration file), which wins over the defaults.
        let environment = ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty }
        let redisURL = self.redis ?? environment["CACHE_GATEWAY_REDIS"]
        let namespace = self.namespace ?? environment["CACHE_GATEWAY_NAMESPACE"] ?? "default"
        let logLevel = self.logLevel ?? environment["CACHE_GATEWAY_LOG_LEVEL"] ?? "info"
        guard let purgePolicy = Registry.PurgePolicy(self.purge ?? environment["CACHE_GATEWAY_PURGE"] ?? "grace") else {
            throw ValidationError("--purge takes 'grace' or 'eager'")
        }
        guard let mode = UInt32(self.socketMode, radix: 8) else {
            throw ValidationError("--socket-mode takes octal permission bits such as 660")
        }
        guard self.lookupTimeoutMs > 0, self.writeTimeoutMs > 0, self.frameTimeoutMs > 0, self.fillWaitMaxMs > 0 else { throw ValidationError("timeouts must be positive") }
        let singleFlight: Bool
        switch (self.singleFlight ?? environment["CACHE_GATEWAY_SINGLE_FLIGHT"] ?? "on").lowercased() {
        case "on", "1", "true", "yes": singleFlight = true
        case "off", "0", "false", "no": singleFlight = false
        case let other: throw ValidationError("--single-flight takes 'on' or 'off', not \(other)")
        }
        let earlyRefreshBeta: Double
        if let beta = self.earlyRefreshBeta {
            earlyRefreshBeta = beta
        } else if let text = environment["CACHE_GATEWAY_EARLY_REFRESH_BETA"], !text.isEmpty {
            guard let beta = Double(text) else { throw ValidationError("CACHE_GATEWAY_EARLY_REFRESH_BETA takes a number, not \(text)") }
            earlyRefreshBeta = beta
        } else {
            earlyRefreshBeta = 1
        }
        guard (1...5_000).contains(self.purgeBatchSize) else { throw ValidationError("--purge-batch-size must be 1 to 5000 (a Lua script unpacks the keys of one step)") }
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level takes trace, debug, info, notice, warning, error or critical")
        }
        var configuration = GatewayApplication.Configuration(
            registry: Registry.Configuration(
                purgePolicy: purgePolicy,
                grace: .milliseconds(self.purgeGraceMs),
                leaseDuration: .milliseconds(self.leaseMs),
                sweepInterval: .milliseconds(self.sweepIntervalMs),
                gatewayID: self.gatewayId ?? environment["CACHE_GATEWAY_ID"] ?? Registry.Configuration.defaultGatewayID
            )
        )
        let accessControl: AccessControl
        do {
            configuration.metricsEndpoint = try (self.metrics ?? environment["CACHE_GATEWAY_METRICS"]).map(MetricsEndpoint.init)
            // A list given as flags replaces the environment's, as a single value would.
            let uids = self.allowUid.isEmpty ? environment["CACHE_GATEWAY_ALLOW_UID"].map { [$0] } ?? [] : self.allowUid
            let gids = self.allowGid.isEmpty ? environment["CACHE_GATEWAY_ALLOW_GID"].map { [$0] } ?? [] : self.allowGid
            var perUID = self.namespacePerUid ?? false
            if self.namespacePerUid == nil, let text = environment["CACHE_GATEWAY_NAMESPACE_PER_UID"] {
                switch text.lowercased() {
                case "1", "true", "yes", "on": perUID = true
                case "0", "false", "no", "off": perUID = false
                default: throw ValidationError("CACHE_GATEWAY_NAMESPACE_PER_UID takes 1 or 0, not \(text)")
                }
            }
            accessControl = AccessControl(
                allowedUIDs: try AccessControl.userIDs(uids),
                allowedGIDs: try AccessControl.groupIDs(gids),
                namespacePerUID: perUID
            )
            configuration.eventLoops = try Self.eventLoops(self.eventLoops ?? environment["CACHE_GATEWAY_EVENT_LOOPS"]) ?? configuration.eventLoops
            // The key is read here, once; it is never logged.
            configuration.integrityKey = try (self.hmacKeyFile ?? environment["CACHE_GATEWAY_HMAC_KEY_FILE"]).map { try IntegrityStore.Key(contentsOfFile: $0) }
            if let redisURL {
                let redisConfiguration = RedisStore.Configuration(
                    lookupTimeout: .milliseconds(self.lookupTimeoutMs),
                    writeTimeout: .milliseconds(self.writeTimeoutMs),
                    deleteBatchSize: self.purgeBatchSize
                )
                configuration.backend = try self.redisConnection.backend(url: redisURL, configuration: redisConfiguration, environment: environment)
                let nearCacheText = environment["CACHE_GATEWAY_NEAR_CACHE_SIZE"].flatMap { $0.isEmpty ? nil : $0 }
                let nearCacheSize = try self.nearCacheSize ?? nearCacheText.map { text in
                    guard let size = Int(text) else { throw GatewayError(.invalidConfiguration, "CACHE_GATEWAY_NEAR_CACHE_SIZE is not a number of bytes: \(text)") }
                    return size
                } ?? NearCacheStore.Configuration.defaultCapacityBytes
                guard nearCacheSize >= 0 else { throw GatewayError(.invalidConfiguration, "--near-cache-size cannot be negative") }
                configuration.nearCache = nearCacheSize == 0 ? nil : NearCacheStore.Configuration(capacityBytes: nearCacheSize)
            } else {
                configuration.backend = .memory(limitBytes: self.memoryLimit)
            }
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "cache-gateway")
        // Started by a .socket unit: serve the socket systemd bound and passed.
        let activation: (descriptor: Int32, path: String)?
        do {
            activation = try SystemdSocketActivation.inheritedListener()
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }
        if let activation, activation.path != self.socket.path {
            logger.warning("socket-activated: serving the socket systemd passed, not --socket", metadata: ["socket": "\(activation.path)", "ignored": "\(self.socket.path)"])
        }
        configuration.server = GatewayConfiguration(
            socketPath: activation?.path ?? self.socket.path,
            socketMode: mode,
            socketGroup: self.socketGroup,
            namespace: namespace,
            maxFrameSize: self.maxFrameSize,
            maxValueSize: self.maxValueSize,
            frameTimeout: .milliseconds(self.frameTimeoutMs),
            accessControl: accessControl,
            listener: activation.map { .inherited(descriptor: $0.descriptor) } ?? .bind,
            singleFlight: singleFlight,
            fillWaitCap: .milliseconds(self.fillWaitMaxMs),
            earlyRefreshBeta: earlyRefreshBeta
        )
        do {
            try configuration.validate()
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }

        // Metrics: a registry of this process's own, handed to the library as
        // a factory; nothing is recorded when --metrics is off.
        let prometheus = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: prometheus)
        factory.durationHistogramBuckets[GatewayMetrics.Names.lookupDuration] = GatewayMetrics.latencyBuckets
        factory.durationHistogramBuckets[GatewayMetrics.Names.redisCommandDuration] = GatewayMetrics.latencyBuckets
        let metricsFactory: any MetricsFactory = configuration.metricsEndpoint == nil ? NOOPMetricsHandler.instance : factory
        let application = GatewayApplication(
            configuration: configuration,
            logger: logger,
            metricsFactory: metricsFactory,
            metricsExposition: { prometheus.emitToBuffer() }
        )
        do {
            try await application.run()
        } catch let error as GatewayError {
            logger.critical("\(error.message)")
            throw ExitCode(1)
        }
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
        // The per-function part comes from the registry, which lives in Redis
        // with the Redis store: during an outage (when an operator most wants
        // this) it is shown as unavailable, and the rest, which the gateway
        // answers itself, is shown as usual.
        let functions: Result<[FunctionInfo], GatewayError>
        do {
            let connection = try await GatewayConnection.connect(socketPath: self.socket.path, clientName: "cache-gateway stats")
            guard case .statsReply(let reply) = try await connection.request(.stats) else {
                throw GatewayError(.malformedMessage, "the gateway did not answer with stats")
            }
            stats = reply
            do {
                guard case .functionsReply(let list) = try await connection.request(.functions) else {
                    throw GatewayError(.malformedMessage, "the gateway did not answer with functions")
                }
                functions = .success(list.filter { $0.hits > 0 || $0.misses > 0 })
            } catch let error as GatewayError {
                functions = .failure(error)
            }
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
            switch functions {
            case .success(let functions):
                var perFunction: [String: Any] = [:]
                for function in functions {
                    perFunction[function.function] = [
                        "hits": function.hits,
                        "misses": function.misses,
                        "computeSavedMicroseconds": function.computeSavedMicroseconds,
                    ]
                }
                object["functions"] = perFunction
            case .failure(let error):
                object["functions"] = NSNull()
                object["functionsUnavailable"] = error.message
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
            switch functions {
            case .success(let functions) where !functions.isEmpty:
                print("\nper function (this gateway): hits, misses, compute time saved")
                for function in functions {
                    print("  \(function.function): \(function.hits) hits, \(function.misses) misses, \(formatMicroseconds(function.computeSavedMicroseconds)) saved")
                }
            case .success:
                break
            case .failure(let error):
                print("\nper function: unavailable (\(error.message))")
            }
        }
    }
}

/// `1.234 s`, `12.3 ms` or `456 µs`.
func formatMicroseconds(_ microseconds: UInt64) -> String {
    if microseconds >= 1_000_000 { return String(format: "%.3f s", Double(microseconds) / 1_000_000) }
    if microseconds >= 1_000 { return String(format: "%.1f ms", Double(microseconds) / 1_000) }
    return "\(microseconds) µs"
}

/// A connection for an admin command, or exit 1 with the reason.
func adminConnection(_ socket: SocketOption, command: String) async throws -> GatewayConnection {
    do {
        return try await GatewayConnection.connect(socketPath: socket.path, clientName: "cache-gateway \(command)")
    } catch let error as GatewayError {
        FileHandle.standardError.write(Data("cache-gateway \(command): \(error.message)\n".utf8))
        throw ExitCode(1)
    }
}

struct FunctionsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "functions",
        abstract: "List the registry's functions: versions, entries, leases and last use."
    )

    @OptionGroup var socket: SocketOption

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let connection = try await adminConnection(self.socket, command: "functions")
        let reply: GatewayMessage.Body
        do {
            reply = try await connection.request(.functions, timeout: .seconds(30))
        } catch let error as GatewayError {
            FileHandle.standardError.write(Data("cache-gateway functions: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        await connection.close()
        guard case .functionsReply(let functions) = reply else {
            FileHandle.standardError.write(Data("cache-gateway functions: the gateway did not answer with functions\n".utf8))
            throw ExitCode(1)
        }
        if self.json {
            let list: [[String: Any]] = functions.map { function in
                [
                    "function": function.function,
                    "hits": function.hits,
                    "misses": function.misses,
                    "computeSavedMicroseconds": function.computeSavedMicroseconds,
                    "versions": function.versions.map { version -> [String: Any] in
                        [
                            "version": version.version,
                            "firstSeen": version.firstSeenMilliseconds,
                            "lastSeen": version.lastSeenMilliseconds,
                            "entries": version.entries,
                            "state": version.state,
                            "leases": version.leases.map { ["gateway": $0.gateway, "expires": $0.expiresMilliseconds] as [String: Any] },
                        ]
                    },
                ]
            }
            let data = try JSONSerialization.data(withJSONObject: list, options: [.sortedKeys, .prettyPrinted])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let formatter = ISO8601DateFormatter()
        func time(_ milliseconds: UInt64) -> String { formatter.string(from: Date(timeIntervalSince1970: Double(milliseconds) / 1000)) }
        if functions.isEmpty { print("no functions registered") }
        for function in functions {
            print("\(function.function)  (\(function.hits) hits, \(function.misses) misses, \(formatMicroseconds(function.computeSavedMicroseconds)) saved here)")
            for version in function.versions {
                let leases = version.leases.isEmpty ? "no lease" : "leased by " + version.leases.map(\.gateway).joined(separator: ", ")
                print("  \(version.version.prefix(16))  \(version.state)  \(version.entries) entries  \(leases)  first \(time(version.firstSeenMilliseconds))  last \(time(version.lastSeenMilliseconds))")
            }
        }
    }
}

struct PurgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "purge",
        abstract: "Delete a function's entries: every version, or one with --version."
    )

    @Argument(help: "The function's name, as `functions` lists it.")
    var function: String

    @Option(help: "Only this version (the full string `functions --json` shows).")
    var version: String?

    @OptionGroup var socket: SocketOption

    func run() async throws {
        let connection = try await adminConnection(self.socket, command: "purge")
        let reply: GatewayMessage.Body
        do {
            reply = try await connection.request(.invalidate(Invalidate(function: self.function, version: self.version)), timeout: .seconds(600))
        } catch let error as GatewayError {
            FileHandle.standardError.write(Data("cache-gateway purge: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        await connection.close()
        guard case .invalidateReply(let deleted) = reply else {
            FileHandle.standardError.write(Data("cache-gateway purge: unexpected reply\n".utf8))
            throw ExitCode(1)
        }
        print("deleted \(deleted) entries of \(self.function)\(self.version.map { " version \($0)" } ?? "")")
    }
}
