import Foundation
import GatewayProtocol
import NIOCore
import Testing

@testable import Gateway

extension IntegrationTests {
    /// Starts, kills (SIGKILL) and restarts a redis-server of its own, so it can
    /// run beside the tests that use the shared server.
    @Suite("Redis pool across a server restart")
    struct RedisPoolRestartTests {
        private typealias Support = RedisTestSupport

        @Test func thePoolFailsFastWhileRedisIsDownAndReconnectsAfterARestart() async throws {
            let server = try PrivateRedisServer()
            defer { server.stop() }
            try await server.start()

            let backoff = try RedisBackoff(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(200))
            let pool = try RedisConnectionPool(
                url: server.url,
                configuration: .init(size: 3, backoff: backoff),
                eventLoopGroup: Support.eventLoopGroup,
                logger: Support.logger
            )
            pool.start()
            do {
                #expect(await Support.waitUntil { pool.availableConnectionCount == 3 })
                let key = ByteBuffer(string: "restart-test")
                #expect(try await pool.send(.set(key, ByteBuffer(string: "before"))) == .simpleString("OK"))
                // Round robin: every connection serves requests.
                let ids = Set(try await (0..<6).asyncMap { _ in try await pool.send(RedisCommand("CLIENT", "ID")).integer })
                #expect(ids.count == 3)

                server.kill()
                #expect(await Support.waitUntil { pool.availableConnectionCount == 0 })
                let clock = ContinuousClock()
                let start = clock.now
                #expect(await Support.errorCode { try await pool.send(.get(key)) } == .unavailable)
                #expect(clock.now - start < .milliseconds(200), "a down pool must fail at once")

                try await server.start()
                #expect(await Support.waitUntil { pool.availableConnectionCount == 3 })
                // A fresh server without persistence: the old value is gone.
                #expect(try await pool.send(.get(key)) == .bulkString(nil))
                #expect(try await pool.send(.set(key, ByteBuffer(string: "after"))) == .simpleString("OK"))
                #expect(try await pool.send(.get(key)) == .bulkString(ByteBuffer(string: "after")))
            } catch {
                await pool.shutdown()
                throw error
            }
            await pool.shutdown()
            #expect(pool.availableConnectionCount == 0)
        }

        @Test func connectsOverTCP() async throws {
            let port = try await PrivateRedisServer.freeTCPPort()
            let server = try PrivateRedisServer(tcpPort: port)
            defer { server.stop() }
            try await server.start()

            let url = try RedisURL("redis://127.0.0.1:\(port)/5")
            let connection = try await Support.connect(url)
            let key = ByteBuffer(string: "tcp-test")
            #expect(try await connection.send(.set(key, ByteBuffer(bytes: [0, 13, 10]))) == .simpleString("OK"))
            #expect(try await connection.send(.get(key)) == .bulkString(ByteBuffer(bytes: [0, 13, 10])))
            // The value went to database 5, not 0.
            let db0 = try await Support.connect(try RedisURL("redis://127.0.0.1:\(port)"))
            #expect(try await db0.send(.get(key)) == .bulkString(nil))
            await db0.close()
            await connection.close()

            let client = try BlockingRedisClient(url: url)
            #expect(try client.send(.get(key)) == .bulkString(ByteBuffer(bytes: [0, 13, 10])))

            server.kill()
            #expect(await Support.errorCode { try await Support.connect(url) } == .unavailable)
        }

        @Test func runStopsOnCancellation() async throws {
            let server = try PrivateRedisServer()
            defer { server.stop() }
            try await server.start()
            let pool = try RedisConnectionPool(
                url: server.url,
                configuration: .init(size: 2),
                eventLoopGroup: Support.eventLoopGroup,
                logger: Support.logger
            )
            let task = Task { try await pool.run() }
            #expect(await Support.waitUntil { pool.availableConnectionCount == 2 })
            #expect(try await pool.send(.ping) == .simpleString("PONG"))
            task.cancel()
            try await task.value
            #expect(pool.availableConnectionCount == 0)
            #expect(await Support.errorCode { try await pool.send(.ping) } == .shuttingDown)
        }
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
