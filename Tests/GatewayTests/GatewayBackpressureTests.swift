import Foundation
import GatewayConnection
import GatewayProtocol
import NIOCore
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// Outsiders' ways of using a connection: a slow reader of a deep
    /// pipeline gets every reply, and a worker that exits with a reply unread
    /// is a disconnect, not an error.
    @Suite struct GatewayBackpressureTests {
        static let function = FunctionVersion(function: "Tests.backpressure(x:)", version: "v1")

        static func stats(_ gateway: GatewayProcess) async throws -> [String: Stats.Value] {
            let connection = try await gateway.connect(name: "stats")
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            await connection.close()
            return stats.values
        }

        @Test func aPipelineReadSlowerThanTheFrameDeadlineLosesNoReply() async throws {
            // A short frame deadline, far shorter than the reader's pause.
            let gateway = try GatewayProcess(arguments: ["--frame-timeout-ms", "300"])
            let socket = try RawSocket(path: gateway.socketPath)
            try socket.write(GatewayMessage(id: 1, .hello(Hello(clientName: "slow-reader", pid: 1))))
            _ = try socket.readMessage()
            let key = try CacheKey(hashing: "value")
            let value = ByteBuffer(bytes: [UInt8](repeating: 0xAB, count: 4096))
            try socket.write(GatewayMessage(id: 2, .store(Store(function: Self.function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 1, value: value))))
            #expect(try socket.readMessage() == GatewayMessage(id: 2, .storeReply(stored: true)))

            // 20,000 lookups (80 MiB of replies) written as fast as the
            // gateway takes them; nothing is read for a second, so the gateway
            // stops reading with frames half read, for three frame deadlines.
            let count = 20_000
            var bytes: [UInt8] = []
            for id in 0..<count {
                bytes += try GatewayMessage(id: UInt64(100 + id), .lookup(Lookup(function: Self.function, key: key))).encodedFrame().readableBytesView
            }
            let writer = Task.detached { try socket.write(bytes) }
            try await Task.sleep(for: .seconds(1))
            var ids = Set<UInt64>()
            var errors: [String] = []
            for _ in 0..<count {
                let reply = try socket.readMessage(timeout: .seconds(60))
                if case .lookupReply(.hit(let bytes)) = reply.body, bytes == value {
                    ids.insert(reply.id)
                } else {
                    errors.append("\(reply)")
                    break
                }
            }
            try await writer.value
            #expect(errors.isEmpty)
            #expect(ids.count == count)
            #expect(try await Self.stats(gateway)["errors"] == .count(0))
        }

        @Test func workersThatExitWithAReplyUnreadAreDisconnectsNotErrors() async throws {
            let gateway = try GatewayProcess()
            let value = ByteBuffer(bytes: [UInt8](repeating: 1, count: 512 * 1024))
            for index in 0..<20 {
                let socket = try RawSocket(path: gateway.socketPath)
                try socket.write(GatewayMessage(id: 1, .hello(Hello(clientName: "exits", pid: 1))))
                _ = try socket.readMessage()
                // A store whose reply, and a hit of half a megabyte, are never read.
                let key = try CacheKey(hashing: index)
                try socket.write(GatewayMessage(id: 2, .store(Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: value))))
                try socket.write(GatewayMessage(id: 3, .lookup(Lookup(function: Self.function, key: key))))
                // Closing with the reply unread resets the connection.
                _ = socket
            }
            // Every connection is gone once the gateway counts none open but ours.
            let closed = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                try await Self.stats(gateway)["connections"] == .count(1)
            }
            #expect(closed)
            let stats = try await Self.stats(gateway)
            #expect(stats["errors"] == .count(0), "\(stats)")
            #expect(!gateway.log.contains("malformedFrame"))
            #expect(!gateway.log.contains("closing connection"))
        }
    }
}
