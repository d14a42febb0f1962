import Foundation
import GatewayProtocol
import Logging
import NIOCore
import NIOPosix
import GatewayTestSupport
import Testing

@testable import Gateway

/// The event loops a Redis test runs on: a connection on SwiftNIO's loops
/// is a channel, one on the gateway's own loops an `IORedisConnection`.
enum TestLoops: CaseIterable, Sendable, CustomTestStringConvertible {
    case swiftNIO
    case gateway

    /// Two of the gateway's own loops, shared by every test of the process.
    static let ownLoops: any EventLoopGroup = {
        #if os(Linux)
        try! IOLoopGroup.start(count: 2)
        #else
        MultiThreadedEventLoopGroup.singleton
        #endif
    }()

    var group: any EventLoopGroup {
        switch self {
        case .swiftNIO: MultiThreadedEventLoopGroup.singleton
        case .gateway: Self.ownLoops
        }
    }

    var testDescription: String {
        switch self {
        case .swiftNIO: "SwiftNIO's loops"
        case .gateway: "the gateway's loops"
        }
    }
}

/// Helpers for the tests that talk to a real redis-server.
enum RedisTestSupport {
    static var logger: Logger {
        var logger = Logger(label: "cache-gateway.tests.redis")
        logger.logLevel = .critical
        return logger
    }

    static var eventLoopGroup: MultiThreadedEventLoopGroup { .singleton }

    /// A key prefix no other test (or parallel run) uses.
    static func uniquePrefix(_ test: String = #function) -> String {
        "cg-test:\(test.prefix { $0 != "(" }):\(UUID().uuidString):"
    }

    /// The URL of the shared test server (scripts/with-redis.sh).
    static func sharedURL(database: Int = 0, username: String? = nil, password: String? = nil) throws -> RedisURL {
        RedisURL(endpoint: .unixSocket(path: try TestRedis.socketPath), username: username, password: password, database: database)
    }

    static func connect(
        on loops: TestLoops = .swiftNIO,
        _ url: RedisURL,
        configuration: RedisConnection.Configuration = RedisConnection.Configuration()
    ) async throws -> RedisConnection {
        try await RedisConnection.connect(
            to: url,
            configuration: configuration,
            on: loops.group.next(),
            logger: Self.logger
        )
    }

    /// Runs `body` with a started `RedisStore` on the shared test server, then
    /// shuts the store down, whether `body` returned or threw.
    static func withRedisStore<Result>(
        configuration: RedisStore.Configuration = RedisStore.Configuration(),
        _ body: (RedisStore) async throws -> Result
    ) async throws -> Result {
        let store = try RedisStore(url: try Self.sharedURL(), configuration: configuration, eventLoopGroup: Self.eventLoopGroup, logger: Self.logger)
        store.start()
        do {
            let result = try await body(store)
            await store.shutdown()
            return result
        } catch {
            await store.shutdown()
            throw error
        }
    }

    /// Polls `condition` every 10 ms until it holds or `timeout` passes;
    /// returns whether it held. Used to wait for reconnects, which have no
    /// single event a test could await.
    static func waitUntil(
        timeout: Duration = .seconds(10),
        _ condition: () async throws -> Bool
    ) async rethrows -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return try await condition()
    }

    /// The `GatewayError` code thrown by `body`, or nil if it did not throw one.
    static func errorCode(_ body: () async throws -> some Any) async -> GatewayError.Code? {
        do {
            _ = try await body()
            return nil
        } catch let error as GatewayError {
            return error.code
        } catch {
            return nil
        }
    }
}

/// A redis-server of a test's own, on a socket in a fresh temporary
/// directory, for tests that kill and restart the server.
final class PrivateRedisServer {
    let directory: URL
    let socketPath: String
    /// A TCP port on 127.0.0.1 the server also listens on, or nil for none.
    let tcpPort: Int?
    private var process: Process?

    init(tcpPort: Int? = nil) throws {
        self.tcpPort = tcpPort
        // Short: Unix socket paths are limited to about 107 bytes.
        self.directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cg-redis-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory.appendingPathComponent("redis.sock").path
    }

    var url: RedisURL { RedisURL(endpoint: .unixSocket(path: self.socketPath)) }

    /// Starts the server and waits until it answers PING.
    func start() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [
            "redis-server", "--port", "\(self.tcpPort ?? 0)", "--bind", "127.0.0.1",
            "--unixsocket", self.socketPath, "--unixsocketperm", "700",
            "--save", "", "--appendonly", "no", "--dir", self.directory.path,
            "--logfile", self.directory.appendingPathComponent("redis.log").path,
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let ready = await RedisTestSupport.waitUntil {
            guard process.isRunning else { return false }
            guard let connection = try? await RedisTestSupport.connect(self.url) else { return false }
            await connection.close()
            return true
        }
        guard ready else {
            self.stop()
            throw PrivateRedisServerError(description: "redis-server on \(self.socketPath) did not start")
        }
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    func kill() {
        guard let process = self.process else { return }
        self.process = nil
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
        }
        process.waitUntilExit()
    }

    /// Stops the server (if running) and removes its directory.
    func stop() {
        self.kill()
        try? FileManager.default.removeItem(at: self.directory)
    }

    deinit {
        self.stop()
    }
}

extension PrivateRedisServer {
    /// A TCP port that was free a moment ago (the kernel's pick for port 0).
    static func freeTCPPort() async throws -> Int {
        let channel = try await ServerBootstrap(group: RedisTestSupport.eventLoopGroup)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = try #require(channel.localAddress?.port)
        try await channel.close()
        return port
    }
}

struct PrivateRedisServerError: Error, CustomStringConvertible {
    var description: String
}
