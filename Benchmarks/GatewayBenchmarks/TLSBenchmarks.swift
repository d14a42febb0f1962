import Foundation
import GatewayProtocol
import NIOCore

/// A Redis-backed hit over TLS against the same hit over plain TCP: two
/// gateways with the near-cache off (every hit goes to Redis), one on the
/// private redis-server's TCP port (`redis://`), one on the TLS-only server
/// of scripts/redis-tls.sh (`rediss://`, verified against the test CA).
/// Everything (both redis-servers, both gateways, this client) runs on one
/// CPU, in alternating batches.
enum TLSBenchmarks {
    static let valueSize = 1_024

    static func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let bench = try BenchEnvironment.current()
        guard let tcpPort = environment["CACHE_GATEWAY_TEST_REDIS_TCP_PORT"].flatMap(Int.init),
            let tlsPort = environment["CACHE_GATEWAY_TEST_REDIS_TLS_PORT"].flatMap(Int.init),
            let tlsPID = environment["CACHE_GATEWAY_TEST_REDIS_TLS_PID"].flatMap(Int32.init),
            let tlsDirectory = environment["CACHE_GATEWAY_TEST_REDIS_TLS_DIR"]
        else {
            throw BenchmarkFailure("the tls group needs Redis on TCP and the TLS server: run it through scripts/bench.sh")
        }
        print("== A Redis-backed hit over TLS against plain TCP (release build; \(valueSize)-byte values, near-cache off) ==")
        let common = ["--namespace", "bench-tls", "--lookup-timeout-ms", "1000", "--near-cache-size", "0"]
        let plain = try GatewayUnderTest(arguments: ["--redis", "redis://127.0.0.1:\(tcpPort)"] + common)
        defer { plain.stop() }
        let tls = try GatewayUnderTest(arguments: ["--redis", "rediss://localhost:\(tlsPort)", "--redis-tls-ca-file", tlsDirectory + "/ca.crt"] + common)
        defer { tls.stop() }

        let value = ByteBuffer(bytes: (0..<Self.valueSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let function = FunctionVersion(function: "Bench.tls(x:)", version: "v1")
        let key = try CacheKey(hashing: 42)
        let storeFrame = Array(try GatewayMessage(id: 2, .store(Store(function: function, key: key, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: value))).encodedFrame().readableBytesView)
        let lookupFrame = Array(try GatewayMessage(id: 3, .lookup(Lookup(function: function, key: key))).encodedFrame().readableBytesView)
        var clients: [BlockingGatewayClient] = []
        for gateway in [plain, tls] {
            let client = try BlockingGatewayClient(socketPath: gateway.socketPath)
            // The gateway may still be connecting to Redis: store until it is taken.
            let deadline = ContinuousClock.now + .seconds(15)
            var length = 0
            while ContinuousClock.now < deadline {
                try client.roundTrip(storeFrame)
                length = try client.roundTrip(lookupFrame)
                if length > Self.valueSize { break }
                usleep(20_000)
            }
            guard length > Self.valueSize else { throw BenchmarkFailure("the lookup through \(gateway.socketPath) was not a hit") }
            clients.append(client)
        }

        pinProcess(toCPU: bench.clientCPU)
        for pid in [bench.redisPID, tlsPID, plain.pid, tls.pid] {
            try pin(pid: pid, cpus: "\(bench.clientCPU)")
        }
        print("latency: both redis-servers, both gateways and the client pinned to CPU \(bench.clientCPU)")
        let (plainClient, tlsClient) = (clients[0], clients[1])
        let latency = try Bench.measureInterleaved([
            ("baseline: gateway hit, Redis over TCP, cold", { blackHole(try plainClient.roundTrip(lookupFrame)) }),
            ("gateway hit, Redis over TLS, cold", { blackHole(try tlsClient.roundTrip(lookupFrame)) }),
        ])
        Bench.report(latency[0])
        Bench.report(latency[1], against: latency[0])
    }
}
