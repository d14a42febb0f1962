import Foundation
import GatewayProtocol
import NIOCore
import GatewayTestSupport
import Testing

@testable import Gateway

extension IntegrationTests {
    /// Against the real redis-server of scripts/with-redis.sh. Serialized because
    /// one test pauses the whole server (CLIENT PAUSE) and would skew the
    /// timings of the others; every test uses its own key prefix.
    @Suite("Redis connection against a real server", .serialized)
    struct RedisConnectionTests {
        private typealias Support = RedisTestSupport

        @Test(arguments: TestLoops.allCases) func binaryValuesRoundTrip(loops: TestLoops) async throws {
            let connection = try await Support.connect(on: loops, try Support.sharedURL())
            let prefix = Support.uniquePrefix()
            var generator = SeededRandom(seed: 42)
            let values: [ByteBuffer] = [
                ByteBuffer(),
                ByteBuffer(bytes: (0...255).map { UInt8($0) }),
                ByteBuffer(string: "\r\n$-1\r\n*-1\r\n\0"),
                ByteBuffer(bytes: (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255, using: &generator) }),
            ]
            for (index, value) in values.enumerated() {
                var key = ByteBuffer(string: prefix)
                key.writeBytes([0, 13, 10, 255, UInt8(index)])
                #expect(try await connection.send(.set(key, value, expiration: .seconds(60))) == .simpleString("OK"))
                #expect(try await connection.send(.get(key)) == .bulkString(value))
                #expect(try await connection.send(.del([key])) == .integer(1))
                #expect(try await connection.send(.get(key)) == .bulkString(nil))
            }
            await connection.close()
        }

        @Test(arguments: TestLoops.allCases) func tenThousandPipelinedCommandsAreAnsweredInOrder(loops: TestLoops) async throws {
            let connection = try await Support.connect(on: loops, try Support.sharedURL())
            let counter = ByteBuffer(string: Support.uniquePrefix() + "counter")

            // One pipeline, one flush.
            let replies = try await connection.pipeline(
                Array(repeating: RedisCommand("INCR", arguments: [counter]), count: 10_000),
                timeout: .seconds(30)
            )
            #expect(replies == (1...10_000).map { RESPValue.integer(Int64($0)) })

            // 10,000 independent sends, all in flight before any is awaited.
            let futures = (0..<10_000).map { index in
                connection.sendFuture(RedisCommand("ECHO", "reply-\(index)"), timeout: .seconds(30))
            }
            for (index, future) in futures.enumerated() {
                let reply = try await future.get()
                guard reply == .bulkString(ByteBuffer(string: "reply-\(index)")) else {
                    Issue.record("reply \(index) is \(reply)")
                    break
                }
            }
            _ = try await connection.send(.del([counter]))
            await connection.close()
        }

        @Test(arguments: TestLoops.allCases) func errorRepliesAreValuesAndTheConnectionStaysUsable(loops: TestLoops) async throws {
            let connection = try await Support.connect(on: loops, try Support.sharedURL())
            let key = ByteBuffer(string: Support.uniquePrefix() + "text")
            let replies = try await connection.pipeline([
                .set(key, ByteBuffer(string: "not a number")),
                RedisCommand("INCR", arguments: [key]),
                RedisCommand("NO-SUCH-COMMAND"),
                .ping,
                .del([key]),
            ])
            #expect(replies.count == 5)
            #expect(replies[0] == .simpleString("OK"))
            guard case .error(let message) = replies[1] else {
                Issue.record("INCR on text answered \(replies[1])")
                return
            }
            #expect(message.hasPrefix("ERR"))
            #expect(throws: GatewayError(.backendError, "")) { try replies[1].checked() }
            #expect(replies[2].string == nil && replies[2] != .simpleString("PONG"))
            #expect(replies[3] == .simpleString("PONG"))
            #expect(try replies[3].checked() == .simpleString("PONG"))
            #expect(replies[4] == .integer(1))
            #expect(try await connection.send(.ping) == .simpleString("PONG"))
            await connection.close()
        }

        @Test(arguments: TestLoops.allCases) func selectIsolatesDatabases(loops: TestLoops) async throws {
            let key = ByteBuffer(string: Support.uniquePrefix() + "shared-name")
            let db1 = try await Support.connect(on: loops, try Support.sharedURL(database: 1))
            let db2 = try await Support.connect(on: loops, try Support.sharedURL(database: 2))
            let db0 = try await Support.connect(on: loops, try RedisURL("unix://\(try TestRedis.socketPath)"))
            _ = try await db1.send(.set(key, ByteBuffer(string: "one"))).checked()
            _ = try await db2.send(.set(key, ByteBuffer(string: "two"))).checked()
            #expect(try await db1.send(.get(key)) == .bulkString(ByteBuffer(string: "one")))
            #expect(try await db2.send(.get(key)) == .bulkString(ByteBuffer(string: "two")))
            #expect(try await db0.send(.get(key)) == .bulkString(nil))
            _ = try await db1.send(.del([key]))
            #expect(try await db1.send(.get(key)) == .bulkString(nil))
            #expect(try await db2.send(.get(key)) == .bulkString(ByteBuffer(string: "two")), "deleting in db 1 leaves db 2 alone")
            _ = try await db2.send(.del([key]))
            for connection in [db0, db1, db2] { await connection.close() }
        }

        @Test(arguments: TestLoops.allCases) func authenticatesAsAnACLUser(loops: TestLoops) async throws {
            let admin = try await Support.connect(on: loops, try Support.sharedURL())
            let prefix = Support.uniquePrefix()
            let user = "cg-test-\(UUID().uuidString.prefix(8))"
            let password = "p@ss:w/rd %&é"
            _ = try await admin.send(RedisCommand("ACL", "SETUSER", user, "on", ">\(password)", "~\(prefix)*", "+@all")).checked()
            do {
                let encoded = try #require(password.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
                let socket = try TestRedis.socketPath
                let url = try RedisURL("unix://\(user):\(encoded)@\(socket)?db=3")
                #expect(url.username == user && url.password == password && url.database == 3)

                let connection = try await Support.connect(on: loops, url)
                #expect(try await connection.send(RedisCommand("ACL", "WHOAMI")) == .bulkString(ByteBuffer(string: user)))
                let key = ByteBuffer(string: prefix + "allowed")
                #expect(try await connection.send(.set(key, ByteBuffer(string: "v"))) == .simpleString("OK"))
                #expect(try await connection.send(.get(key)) == .bulkString(ByteBuffer(string: "v")))
                let denied = try await connection.send(.get(ByteBuffer(string: "someone-elses-key")))
                guard case .error(let message) = denied else {
                    Issue.record("a key outside the user's pattern answered \(denied)")
                    return
                }
                #expect(message.hasPrefix("NOPERM"))
                _ = try await connection.send(.del([key]))
                await connection.close()

                var wrong = url
                wrong.password = "not-the-password"
                let error = await #expect(throws: GatewayError.self) { try await Support.connect(wrong) }
                #expect(error?.code == .backendError)
                #expect(error?.message.contains("AUTH") == true)
                #expect(error?.message.contains("not-the-password") == false)
            } catch {
                _ = try? await admin.send(RedisCommand("ACL", "DELUSER", user))
                await admin.close()
                throw error
            }
            #expect(try await admin.send(RedisCommand("ACL", "DELUSER", user)) == .integer(1))
            await admin.close()
        }

        @Test(arguments: TestLoops.allCases) func commandsTimeOutWithoutHangingAndTheConnectionRecovers(loops: TestLoops) async throws {
            let connection = try await Support.connect(on: loops, try Support.sharedURL())
            let admin = try await Support.connect(on: loops, try Support.sharedURL())
            _ = try await admin.send(RedisCommand("CLIENT", "PAUSE", "300")).checked()
            let clock = ContinuousClock()
            let start = clock.now
            let code = await Support.errorCode {
                try await connection.send(.get(ByteBuffer(string: Support.uniquePrefix())), timeout: .milliseconds(50))
            }
            let elapsed = clock.now - start
            #expect(code == .timeout)
            #expect(elapsed < .milliseconds(250), "the timeout fired after \(elapsed)")

            // The late reply to the GET is dropped when it arrives; the next
            // command must get its own reply, not the GET's.
            #expect(try await connection.send(RedisCommand("ECHO", "after-pause"), timeout: .seconds(5)) == .bulkString(ByteBuffer(string: "after-pause")))
            #expect(connection.isActive)
            _ = try await admin.send(RedisCommand("CLIENT", "UNPAUSE"), timeout: .seconds(5))
            await connection.close()
            await admin.close()
        }

        @Test(arguments: TestLoops.allCases) func anUnresponsiveServerClosesTheConnection(loops: TestLoops) async throws {
            var configuration = RedisConnection.Configuration()
            configuration.unresponsiveTimeout = .milliseconds(100)
            let connection = try await Support.connect(on: loops, try Support.sharedURL(), configuration: configuration)
            let admin = try await Support.connect(on: loops, try Support.sharedURL())
            _ = try await admin.send(RedisCommand("CLIENT", "PAUSE", "500")).checked()
            let first = connection.sendFuture(.ping, timeout: .milliseconds(50))
            let second = connection.sendFuture(.ping, timeout: .seconds(5))
            #expect(await Support.errorCode { try await first.get() } == .timeout)
            #expect(await Support.errorCode { try await second.get() } == .connectionClosed)
            try await connection.closeFuture.get()
            _ = try await admin.send(RedisCommand("CLIENT", "UNPAUSE"), timeout: .seconds(5))
            await admin.close()
        }

        @Test(arguments: TestLoops.allCases) func killedConnectionsFailPendingCommandsAndThePoolReconnects(loops: TestLoops) async throws {
            let backoff = try RedisBackoff(initialDelay: .milliseconds(10), maximumDelay: .milliseconds(100))
            let pool = try RedisConnectionPool(
                url: try Support.sharedURL(),
                configuration: .init(size: 1, backoff: backoff),
                eventLoopGroup: loops.group,
                logger: Support.logger
            )
            pool.start()
            #expect(await Support.waitUntil { pool.availableConnectionCount == 1 })
            let admin = try await Support.connect(on: loops, try Support.sharedURL())

            let firstID = try #require(try await pool.send(RedisCommand("CLIENT", "ID")).integer)
            let blocked = pool.sendFuture(RedisCommand("BLPOP", Support.uniquePrefix() + "never", "10"), timeout: .seconds(20))
            // Wait until the server is really blocked in BLPOP, so the command is in flight when it is killed.
            #expect(
                await Support.waitUntil {
                    let list = try? await admin.send(RedisCommand("CLIENT", "LIST", "ID", String(firstID)))
                    return list?.string?.contains("cmd=blpop") ?? false
                }
            )
            #expect(try await admin.send(RedisCommand("CLIENT", "KILL", "ID", String(firstID))) == .integer(1))

            let error = await #expect(throws: GatewayError.self) { try await blocked.get() }
            #expect(error?.code == .connectionClosed)

            #expect(
                await Support.waitUntil {
                    guard pool.availableConnectionCount == 1 else { return false }
                    return (try? await pool.send(.ping)) == .simpleString("PONG")
                }
            )
            let secondID = try #require(try await pool.send(RedisCommand("CLIENT", "ID")).integer)
            #expect(secondID != firstID)
            await pool.shutdown()
            #expect(await Support.errorCode { try await pool.send(.ping) } == .shuttingDown)
            #expect(pool.availableConnectionCount == 0)
            await admin.close()
        }

        @Test(arguments: TestLoops.allCases) func oversizedCommandsAndRepliesFailCleanly(loops: TestLoops) async throws {
            var configuration = RedisConnection.Configuration()
            configuration.maximumCommandSize = 1024
            configuration.maximumReplySize = 1024
            let connection = try await Support.connect(on: loops, try Support.sharedURL(), configuration: configuration)
            let key = ByteBuffer(string: Support.uniquePrefix() + "big")
            let big = ByteBuffer(repeating: UInt8(ascii: "x"), count: 2048)

            // Too big to send: refused before it is written, the connection lives on.
            #expect(await Support.errorCode { try await connection.send(.set(key, big)) } == .valueTooLarge)
            #expect(try await connection.send(.ping) == .simpleString("PONG"))

            // Too big to receive: the stream cannot continue, so the connection closes.
            let writer = try await Support.connect(on: loops, try Support.sharedURL())
            _ = try await writer.send(.set(key, big)).checked()
            let error = await #expect(throws: GatewayError.self) { try await connection.send(.get(key)) }
            #expect(error?.code == .connectionClosed)
            #expect(error?.message.contains("larger than") == true)
            #expect(await Support.errorCode { try await connection.send(.ping) } == .connectionClosed)
            _ = try await writer.send(.del([key]))
            await writer.close()
        }

        @Test(arguments: TestLoops.allCases) func closedConnectionsFailFast(loops: TestLoops) async throws {
            let connection = try await Support.connect(on: loops, try Support.sharedURL())
            let pending = (0..<100).map { _ in connection.sendFuture(RedisCommand("ECHO", "x")) }
            await connection.close()
            for future in pending {
                // Each either was answered before the close or failed with .connectionClosed.
                do {
                    #expect(try await future.get() == .bulkString(ByteBuffer(string: "x")))
                } catch let error as GatewayError {
                    #expect(error.code == .connectionClosed)
                }
            }
            #expect(await Support.errorCode { try await connection.send(.ping) } == .connectionClosed)
            #expect(await Support.errorCode { try await connection.pipeline([.ping, .ping]) } == .connectionClosed)
            #expect(try await connection.pipeline([]) == [])
        }

        @Test(arguments: TestLoops.allCases) func nonexistentSocketsAreUnavailableFast(loops: TestLoops) async throws {
            let url = try RedisURL("unix:///tmp/cg-no-such-dir-\(UUID().uuidString.prefix(8))/redis.sock")
            let clock = ContinuousClock()
            let start = clock.now
            #expect(await Support.errorCode { try await Support.connect(on: loops, url) } == .unavailable)
            #expect(clock.now - start < .milliseconds(500))

            let pool = try RedisConnectionPool(url: url, configuration: .init(size: 2), eventLoopGroup: loops.group, logger: Support.logger)
            #expect(await Support.errorCode { try await pool.send(.ping) } == .unavailable, "not started yet")
            pool.start()
            let sendStart = clock.now
            for _ in 0..<10 {
                #expect(await Support.errorCode { try await pool.send(.ping) } == .unavailable)
                #expect(await Support.errorCode { try await pool.pipeline([.ping]) } == .unavailable)
            }
            #expect(clock.now - sendStart < .milliseconds(500), "requests must not wait for a reconnect")
            await pool.shutdown()
        }

        @Test(arguments: TestLoops.allCases) func tcpConnectionsResolveTheirHostAndRefusalsAreUnavailable(loops: TestLoops) async throws {
            // Nobody listens on a port that was free a moment ago: refused at once.
            let closed = try await PrivateRedisServer.freeTCPPort()
            let clock = ContinuousClock()
            let start = clock.now
            #expect(await Support.errorCode { try await Support.connect(on: loops, try RedisURL("redis://127.0.0.1:\(closed)")) } == .unavailable)
            #expect(await Support.errorCode { try await Support.connect(on: loops, try RedisURL("redis://no-such-host.invalid:\(closed)")) } == .unavailable)
            #expect(clock.now - start < .seconds(5))
            // A cluster node of scripts/with-redis.sh (on TCP), reached by name.
            let seeds = ProcessInfo.processInfo.environment["CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS"] ?? ""
            guard let port = seeds.split(separator: ",").first?.split(separator: ":").last.flatMap({ Int($0) }) else { return }
            let connection = try await Support.connect(on: loops, try RedisURL("redis://localhost:\(port)"))
            let echoes = try await connection.pipeline((0..<1000).map { RedisCommand("ECHO", "tcp-\($0)") })
            #expect(echoes == (0..<1000).map { .bulkString(ByteBuffer(string: "tcp-\($0)")) })
            let big = ByteBuffer(repeating: 7, count: 4 << 20)
            #expect(try await connection.send(RedisCommand("ECHO", arguments: [big])) == .bulkString(big))
            await connection.close()
            #expect(!connection.isActive)
        }

        @Test func blockingClientBaseline() throws {
            let client = try BlockingRedisClient(url: try Support.sharedURL(database: 4))
            let key = ByteBuffer(string: Support.uniquePrefix() + "blocking")
            let value = ByteBuffer(bytes: [0, 1, 2, 13, 10, 255])
            #expect(try client.send(.set(key, value)) == .simpleString("OK"))
            #expect(try client.send(.get(key)) == .bulkString(value))
            #expect(try client.send(.del([key])) == .integer(1))
            #expect(try client.send(.get(key)) == .bulkString(nil))
            guard case .error = try client.send(RedisCommand("NO-SUCH-COMMAND")) else {
                Issue.record("an unknown command must answer with an error reply")
                return
            }
            #expect(throws: GatewayError(.unavailable, "")) {
                _ = try BlockingRedisClient(url: try RedisURL("unix:///tmp/cg-no-such-\(UUID().uuidString.prefix(8)).sock"))
            }
        }
    }
}
