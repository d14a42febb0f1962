import Foundation
import GatewayConnection
import GatewayProtocol
import NIOCore
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// The Redis path under a burst and at the largest value: lookups that
    /// wait behind others, or for a large value's bytes, are served, not
    /// turned into "compute it yourself" by the 5 ms lookup timeout.
    @Suite struct GatewayRedisBurstTests {
        static let function = FunctionVersion(function: "Tests.burst(x:)", version: "v1")

        func gateway(namespace: String, lookupTimeoutMilliseconds: Int = 5) throws -> GatewayProcess {
            // The default value limit (4 MiB); the default lookup timeout is 5 ms.
            try GatewayProcess(arguments: [
                "--redis", "unix://\(try TestRedis.socketPath)", "--namespace", namespace,
                "--lookup-timeout-ms", "\(lookupTimeoutMilliseconds)",
            ])
        }

        @Test func twentyThousandPipelinedLookupsOfAStoredKeyAreAllHits() async throws {
            // A lookup timeout of a second, because on a loaded machine Redis
            // may not run for tens of milliseconds. The burst still tells
            // whether the connection holds what it cannot serve at once
            // rather than refusing it (`tooManyRequests`); how the timeout
            // counts Redis's silence is RedisCommandTimeoutTests' to show.
            let gateway = try self.gateway(namespace: "burst-\(UUID().uuidString.prefix(8))", lookupTimeoutMilliseconds: 1000)
            let connection = try await gateway.connect()
            let key = try CacheKey(hashing: "hot")
            let value = ByteBuffer(string: "computed once")
            let store = Store(function: Self.function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 10, value: value)
            #expect(try await connection.request(.store(store)) == .storeReply(stored: true))

            // All written at once, as one burst of bytes, by a client that
            // reads every reply as it comes.
            let socket = try RawSocket(path: gateway.socketPath)
            try socket.write(GatewayMessage(id: 1, .hello(Hello(clientName: "burst", pid: 1))))
            _ = try socket.readMessage()
            var bytes: [UInt8] = []
            for id in 0..<20_000 {
                bytes += try GatewayMessage(id: UInt64(100 + id), .lookup(Lookup(function: Self.function, key: key))).encodedFrame().readableBytesView
            }
            let writer = Task.detached { try socket.write(bytes) }
            var hits = 0
            var other: [String: Int] = [:]
            for _ in 0..<20_000 {
                let message = try socket.readMessage(timeout: .seconds(60))
                if case .lookupReply(.hit(let bytes)) = message.body, bytes == value {
                    hits += 1
                } else {
                    other["\(message.body)".prefix(60).description, default: 0] += 1
                }
            }
            try await writer.value
            #expect(hits == 20_000, "other replies: \(other)")
            await connection.close()
        }

        @Test func theLargestValueTheGatewayAcceptsIsServedFromRedis() async throws {
            // A lookup timeout shorter than the transfer of a 4 MiB value takes
            // (a few milliseconds): it bounds Redis's silence, not the transfer.
            let gateway = try self.gateway(namespace: "large-\(UUID().uuidString.prefix(8))", lookupTimeoutMilliseconds: 3)
            let connection = try await gateway.connect()
            let maxValueSize = Int(connection.hello.maxValueSize)
            #expect(maxValueSize == 4 * 1024 * 1024)
            let key = try CacheKey(hashing: "large")
            let value = ByteBuffer(bytes: (0..<maxValueSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
            let store = Store(function: Self.function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 10, value: value)
            #expect(try await connection.request(.store(store), timeout: .seconds(30)) == .storeReply(stored: true))
            var hits = 0
            for _ in 0..<20 {
                let reply = try await connection.request(.lookup(Lookup(function: Self.function, key: key)), timeout: .seconds(30))
                if case .lookupReply(.hit(let bytes)) = reply, bytes == value { hits += 1 }
            }
            // Each lookup waits on Redis's bytes, not on a clock that runs out
            // mid-transfer (a deadline on the whole lookup would fail nearly
            // all twenty); a lookup may still fail open if Redis itself goes
            // silent for 3 ms on a loaded machine, hence not all twenty.
            #expect(hits >= 10, "\(hits) of 20 lookups of a \(maxValueSize)-byte value were hits")
            await connection.close()
        }
    }
}
