import Foundation
import GatewayConnection
import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// Replies overtake one another, and the admin subcommands talk to a live gateway.
    @Suite(.serialized) struct GatewayOrderingAndAdminTests {
        @Test func aSlowRequestIsOvertakenByLaterOnesAndEveryReplyCarriesItsID() async throws {
            let gateway = try GatewayProcess(arguments: try TestBackend.redis.arguments())
            let connection = try await gateway.connect()
            let function = FunctionVersion(function: "Tests.big(x:)", version: "v1")
            // 2,000 entries: deleting them takes several rounds of Redis commands.
            var stores: [EventLoopFuture<GatewayMessage>] = []
            for argument in 0..<2_000 {
                let body = GatewayMessage.Body.store(Store(function: function, key: try CacheKey(hashing: argument), ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(string: "\(argument)")))
                stores.append(connection.send(GatewayMessage(id: UInt64(100_000 + argument), body), timeout: .seconds(30)))
            }
            for future in stores { #expect(try await future.get().body == .storeReply(stored: true)) }

            let arrivals = NIOLockedValueBox<[UInt64]>([])
            let slow = connection.send(GatewayMessage(id: 1, .invalidate(Invalidate(function: function.function, version: "v1"))), timeout: .seconds(30))
            slow.whenSuccess { reply in arrivals.withLockedValue { $0.append(reply.id) } }
            var pings: [EventLoopFuture<GatewayMessage>] = []
            for id in 2...51 as ClosedRange<UInt64> {
                let ping = connection.send(GatewayMessage(id: id, .ping))
                ping.whenSuccess { reply in arrivals.withLockedValue { $0.append(reply.id) } }
                pings.append(ping)
            }
            for (index, ping) in pings.enumerated() {
                #expect(try await ping.get() == GatewayMessage(id: UInt64(index + 2), .pong))
            }
            #expect(try await slow.get() == GatewayMessage(id: 1, .invalidateReply(deleted: 2_000)))
            let order = arrivals.withLockedValue { $0 }
            // The invalidation was sent first and answered last.
            #expect(order.last == 1, "arrival order: \(order)")
            #expect(order.count == 51)
            #expect(gateway.stop() == 0)
        }

        @Test func pingAndStatsSubcommandsTalkToARunningGateway() async throws {
            let gateway = try GatewayProcess()
            let ping = try Self.run(["ping", "--socket", gateway.socketPath])
            #expect(ping.status == 0)
            #expect(ping.output.contains("pong"))

            let stats = try Self.run(["stats", "--socket", gateway.socketPath, "--json"])
            #expect(stats.status == 0)
            let object = try JSONSerialization.jsonObject(with: Data(stats.output.utf8)) as? [String: Any]
            #expect(object?["backend"] as? String == "memory")
            #expect(object?["backendHealth"] as? String == "up")
            #expect((object?["connections"] as? Int ?? 0) >= 1)
            for name in ["hits", "misses", "stores", "errors"] {
                #expect(object?[name] is Int, "stats --json has no \(name)")
            }
            #expect(gateway.stop() == 0)

            // With nothing listening, ping fails with a message, quickly.
            let absent = try Self.run(["ping", "--socket", gateway.socketPath])
            #expect(absent.status != 0)
            #expect(absent.output.contains("cannot connect"))
        }

        @Test func statsShowsWhatTheGatewayKnowsWhileRedisIsDown() async throws {
            let redis = try PrivateRedisServer()
            try await redis.start()
            defer { redis.stop() }
            let gateway = try GatewayProcess(arguments: ["--redis", "unix://\(redis.socketPath)", "--namespace", "outage-stats"])
            redis.kill()
            // The gateway notices the outage itself (its health turns "down").
            let down = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                let stats = try Self.run(["stats", "--socket", gateway.socketPath, "--json"])
                let object = try? JSONSerialization.jsonObject(with: Data(stats.output.utf8)) as? [String: Any]
                return object?["backendHealth"] as? String == "down"
            }
            #expect(down, "the gateway never reported Redis down")
            let stats = try Self.run(["stats", "--socket", gateway.socketPath, "--json"])
            #expect(stats.status == 0, "\(stats.output)")
            let object = try JSONSerialization.jsonObject(with: Data(stats.output.utf8)) as? [String: Any]
            #expect(object?["backend"] as? String == "redis")
            #expect(object?["backendHealth"] as? String == "down")
            #expect(object?["hits"] is Int)
            #expect(object?["functions"] is NSNull)
            #expect(object?["functionsUnavailable"] is String)

            let text = try Self.run(["stats", "--socket", gateway.socketPath])
            #expect(text.status == 0, "\(text.output)")
            #expect(text.output.contains("backendHealth: down"))
            #expect(text.output.contains("per function: unavailable"))
            #expect(gateway.stop() == 0)
        }

        static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = try GatewayProcess.executable
            process.arguments = arguments
            return try process.runToEnd()
        }
    }
}
