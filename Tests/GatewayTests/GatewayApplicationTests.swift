import Foundation
import Gateway
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Logging
import Metrics
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

extension IntegrationTests {
    /// The assembled gateway (`GatewayApplication`) in this process: it serves
    /// over its socket, stops gracefully or on cancellation, tidies its socket
    /// files, and a part that fails makes `run()` throw with nothing left running.
    @Suite(.serialized, .timeLimit(.minutes(2))) struct GatewayApplicationTests {
        static let function = FunctionVersion(function: "Tests.application(x:)", version: "v1")

        static var logger: Logger {
            var logger = Logger(label: "cache-gateway.tests.application")
            logger.logLevel = .critical
            return logger
        }

        /// A gateway on `socketPath` that neither traps signals nor notifies systemd.
        static func configuration(socketPath: String, backend: GatewayApplication.Backend = .memory()) -> GatewayApplication.Configuration {
            GatewayApplication.Configuration(
                server: GatewayConfiguration(socketPath: socketPath, namespace: "app\(UInt32.random(in: 0...UInt32.max))"),
                backend: backend,
                notifiesSystemd: false,
                gracefulShutdownSignals: []
            )
        }

        static func store(_ argument: Int, _ value: String) throws -> GatewayMessage.Body {
            .store(Store(function: Self.function, key: try CacheKey(hashing: argument), ttlMilliseconds: 60_000, computeMicroseconds: 1_000, value: ByteBuffer(string: value)))
        }

        static func lookup(_ argument: Int) throws -> GatewayMessage.Body {
            .lookup(Lookup(function: Self.function, key: try CacheKey(hashing: argument)))
        }

        /// A short temporary directory (socket paths allow 107 bytes), removed afterwards.
        static func withTemporaryDirectory(_ body: (String) async throws -> Void) async throws {
            let directory = "/tmp/cg-app-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            try await body(directory)
        }

        /// An application running in a task of its own, once it has reported ready.
        struct Running {
            /// Runs the application; the test triggers its graceful shutdown.
            let group: ServiceGroup?
            /// The task that runs it.
            let task: Task<Void, any Error>

            /// Starts `application` (inside a service group when `inGroup`) and
            /// returns once it reports ready; throws what `run()` threw if it
            /// ended first.
            static func start(
                _ configuration: GatewayApplication.Configuration,
                metricsExposition: (@Sendable () -> [UInt8])? = nil,
                inGroup: Bool = true
            ) async throws -> Running {
                let (ready, readyContinuation) = AsyncStream.makeStream(of: String.self)
                let application = GatewayApplication(
                    configuration: configuration,
                    logger: GatewayApplicationTests.logger,
                    metricsFactory: NOOPMetricsHandler.instance,
                    metricsExposition: metricsExposition,
                    onReady: { readyContinuation.yield($0) }
                )
                let group = inGroup ? ServiceGroup(services: [application], logger: GatewayApplicationTests.logger) : nil
                let task = Task {
                    defer { readyContinuation.finish() }
                    if let group { try await group.run() } else { try await application.run() }
                }
                for await path in ready {
                    #expect(path == configuration.server.socketPath)
                    return Running(group: group, task: task)
                }
                try await task.value
                throw TestFailure("the application stopped without reporting ready")
            }
        }

        @Test func servesOverItsSocketAndStopsGracefullyWithAWorkerConnected() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                let metricsPath = directory + "/metrics.sock"
                var configuration = Self.configuration(socketPath: socketPath)
                configuration.metricsEndpoint = try MetricsEndpoint("unix:\(metricsPath)")
                let running = try await Running.start(configuration, metricsExposition: { Array("# metrics\n".utf8) })
                // Ready: both endpoints listen.
                #expect(FileManager.default.fileExists(atPath: socketPath))
                #expect(FileManager.default.fileExists(atPath: metricsPath))

                let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "GatewayApplicationTests")
                #expect(try await connection.request(.ping) == .pong)
                #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.miss))
                #expect(try await connection.request(try Self.store(1, "one")) == .storeReply(stored: true))
                #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(ByteBuffer(string: "one"))))
                guard case .statsReply(let stats) = try await connection.request(.stats) else {
                    Issue.record("no stats reply")
                    return
                }
                #expect(stats.values["backend"] == .text("memory"))

                // The worker stays connected: the server drains it and closes it.
                await running.group?.triggerGracefulShutdown()
                try await running.task.value
                try await connection.closeFuture.get()
                #expect(!FileManager.default.fileExists(atPath: socketPath))
                #expect(!FileManager.default.fileExists(atPath: metricsPath))
                await #expect(throws: GatewayError.self) {
                    try await GatewayConnection.connect(socketPath: socketPath, clientName: "after", timeout: .seconds(1))
                }
            }
        }

        @Test func cancellingItsTaskStopsItAndRemovesTheSocket() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                let running = try await Running.start(Self.configuration(socketPath: socketPath), inGroup: false)
                let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "GatewayApplicationTests")
                #expect(try await connection.request(.ping) == .pong)

                running.task.cancel()
                // Cancellation may end `run()` with CancellationError; either way it ends.
                _ = await running.task.result
                try await connection.closeFuture.get()
                #expect(!FileManager.default.fileExists(atPath: socketPath))
            }
        }

        @Test func anInvalidConfigurationThrowsBeforeAnythingStarts() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                let readyCalls = Atomic<Int>(0)
                var configuration = Self.configuration(socketPath: socketPath)
                configuration.server.namespace = "not a namespace!"
                let application = GatewayApplication(
                    configuration: configuration,
                    logger: Self.logger,
                    metricsFactory: NOOPMetricsHandler.instance,
                    onReady: { _ in readyCalls.add(1, ordering: .relaxed) }
                )
                let error = await #expect(throws: GatewayError.self) { try await application.run() }
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains("namespace") == true)

                // Metrics to serve, and nothing to serve them with.
                var withoutExposition = Self.configuration(socketPath: socketPath)
                withoutExposition.metricsEndpoint = try MetricsEndpoint("unix:\(directory)/metrics.sock")
                let noExposition = GatewayApplication(configuration: withoutExposition, logger: Self.logger, metricsFactory: NOOPMetricsHandler.instance)
                let metricsError = await #expect(throws: GatewayError.self) { try await noExposition.run() }
                #expect(metricsError?.code == .invalidConfiguration)

                #expect(readyCalls.load(ordering: .relaxed) == 0)
                #expect(!FileManager.default.fileExists(atPath: socketPath))
                #expect(!FileManager.default.fileExists(atPath: "\(directory)/metrics.sock"))
            }
        }

        @Test func aSocketThatCannotBeBoundMakesRunThrowAndStopsWhatStarted() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                let first = try await Running.start(Self.configuration(socketPath: socketPath))

                // A second gateway on the same socket: its metrics endpoint binds
                // (before the server), then the server cannot listen.
                let metricsPath = "\(directory)/metrics.sock"
                var configuration = Self.configuration(socketPath: socketPath)
                configuration.metricsEndpoint = try MetricsEndpoint("unix:\(metricsPath)")
                let second = GatewayApplication(
                    configuration: configuration,
                    logger: Self.logger,
                    metricsFactory: NOOPMetricsHandler.instance,
                    metricsExposition: { Array("# nothing\n".utf8) }
                )
                let error = await #expect(throws: GatewayError.self) { try await second.run() }
                #expect(error?.code == .invalidConfiguration)
                #expect(error?.message.contains("already serving") == true, "\(String(describing: error))")
                // run() returned: every part it started has stopped, and the metrics socket is gone.
                #expect(!FileManager.default.fileExists(atPath: metricsPath))

                // The first gateway is untouched.
                let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "GatewayApplicationTests")
                #expect(try await connection.request(.ping) == .pong)
                await connection.close()
                await first.group?.triggerGracefulShutdown()
                try await first.task.value
                #expect(!FileManager.default.fileExists(atPath: socketPath))

                // A path that is not a socket is refused the same way.
                #expect(FileManager.default.createFile(atPath: socketPath, contents: Data("not a socket".utf8)))
                let third = GatewayApplication(configuration: Self.configuration(socketPath: socketPath), logger: Self.logger, metricsFactory: NOOPMetricsHandler.instance)
                let notASocket = await #expect(throws: GatewayError.self) { try await third.run() }
                #expect(notASocket?.code == .invalidConfiguration)
                #expect(FileManager.default.fileExists(atPath: socketPath), "a file that is not a socket is left alone")
            }
        }

        @Test func servesWithTheRedisBackend() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                let url = RedisURL(endpoint: .unixSocket(path: try TestRedis.socketPath))
                // Generous timeouts: this checks answers, not speed, on a busy machine.
                let backend = GatewayApplication.Backend.redis(url: url, configuration: RedisStore.Configuration(lookupTimeout: .seconds(5), writeTimeout: .seconds(10)))
                let running = try await Running.start(Self.configuration(socketPath: socketPath, backend: backend))
                let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "GatewayApplicationTests")

                // Ready means connected, when Redis is up: the first store is kept.
                #expect(try await connection.request(try Self.store(2, "two")) == .storeReply(stored: true))
                #expect(try await connection.request(try Self.lookup(2)) == .lookupReply(.hit(ByteBuffer(string: "two"))))
                guard case .statsReply(let stats) = try await connection.request(.stats) else {
                    Issue.record("no stats reply")
                    return
                }
                #expect(stats.values["backend"] == .text("redis"))
                #expect(stats.values["backendConnections"] != .count(0))
                // The registry reads the function list from Redis.
                guard case .functionsReply(let functions) = try await connection.request(.functions, timeout: .seconds(30)) else {
                    Issue.record("no functions reply")
                    return
                }
                #expect(functions.map(\.function).contains(Self.function.function))

                await running.group?.triggerGracefulShutdown()
                try await running.task.value
                try await connection.closeFuture.get()
                #expect(!FileManager.default.fileExists(atPath: socketPath))
            }
        }

        @Test func aRedisThatIsDownDoesNotKeepItFromBecomingReady() async throws {
            try await Self.withTemporaryDirectory { directory in
                let socketPath = directory + "/gateway.sock"
                // Nothing listens there: every first attempt to connect is refused.
                let backend = GatewayApplication.Backend.redis(url: RedisURL(endpoint: .unixSocket(path: directory + "/no-redis.sock")))
                let running = try await Running.start(Self.configuration(socketPath: socketPath, backend: backend))
                let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "GatewayApplicationTests")
                // Fail-open: the worker is told to compute, and the store is dropped.
                #expect(try await connection.request(try Self.lookup(3)) == .lookupReply(.missDoNotStore))
                #expect(try await connection.request(try Self.store(3, "three")) == .storeReply(stored: false))
                await running.group?.triggerGracefulShutdown()
                try await running.task.value
                #expect(!FileManager.default.fileExists(atPath: socketPath))
            }
        }
    }
}
