import Foundation
import Gateway
import GatewayProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Lookups through a real gateway process, beside a direct hiredis GET on the
/// same redis-server over its Unix socket (issue 3).
///
/// Latency runs with everything (redis-server, the gateway, this client) on
/// one CPU, so that no round trip crosses CPUs. Throughput runs with the
/// servers on one CPU and the clients on the other, the same way for the
/// gateway and for redis-benchmark.
enum GatewayLookupBenchmarks {
    static let valueSize = 1_024

    static func run() throws {
        let environment = ProcessInfo.processInfo.environment
        guard let redisSocket = environment["CACHE_GATEWAY_TEST_REDIS_SOCKET"], let redisPID = environment["CACHE_GATEWAY_TEST_REDIS_PID"].flatMap(Int32.init) else {
            throw BenchmarkFailure("run through scripts/bench.sh, which starts a private redis-server")
        }
        let latencyCPU = environment["BENCH_CPU"].flatMap(Int.init) ?? 1
        let serverCPU = latencyCPU == 0 ? 1 : 0
        print("== Gateway lookups (release build; \(valueSize)-byte values) ==")

        let value = ByteBuffer(bytes: (0..<Self.valueSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let redisURL = try RedisURL("unix://\(redisSocket)")
        let hiredis = try BlockingRedisClient(url: redisURL)
        _ = try hiredis.send(.set(ByteBuffer(string: "bench:direct"), value))

        let memoryGateway = try GatewayUnderTest(arguments: [])
        defer { memoryGateway.stop() }
        let function = FunctionVersion(function: "Bench.lookup(x:)", version: "v1")
        let key = try CacheKey(hashing: 42)
        let storeFrame = Array(try GatewayMessage(id: 2, .store(Store(function: function, key: key, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: value))).encodedFrame().readableBytesView)
        let lookupFrame = Array(try GatewayMessage(id: 3, .lookup(Lookup(function: function, key: key))).encodedFrame().readableBytesView)
        let memoryClient = try BlockingGatewayClient(socketPath: memoryGateway.socketPath)
        try memoryClient.roundTrip(storeFrame)
        let hitLength = try memoryClient.roundTrip(lookupFrame)
        guard hitLength > Self.valueSize else { throw BenchmarkFailure("the lookup was not a hit (\(hitLength) bytes)") }

        // A gateway on the same redis-server; a generous lookup timeout, so that
        // every lookup measured is a real hit and not a fail-open miss.
        let redisGateway = try GatewayUnderTest(arguments: ["--redis", "unix://\(redisSocket)", "--namespace", "bench", "--lookup-timeout-ms", "1000"])
        defer { redisGateway.stop() }
        let redisClient = try BlockingGatewayClient(socketPath: redisGateway.socketPath)
        try redisClient.roundTrip(storeFrame)
        guard try redisClient.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the Redis-backed lookup was not a hit") }

        // MARK: latency, everything on one CPU
        pinProcess(toCPU: latencyCPU)
        try pin(pid: redisPID, cpus: "\(latencyCPU)")
        try pin(pid: memoryGateway.pid, cpus: "\(latencyCPU)")
        try pin(pid: redisGateway.pid, cpus: "\(latencyCPU)")
        print("latency: redis-server, gateway and client pinned to CPU \(latencyCPU)")
        let get = RedisCommand.get(ByteBuffer(string: "bench:direct"))
        // The floor of each transport: a ping needs no store and no value.
        let pingFrame = Array(try GatewayMessage(id: 4, .ping).encodedFrame().readableBytesView)
        let latency = try Bench.measureInterleaved([
            ("baseline: hiredis GET (direct)", { blackHole(try hiredis.send(get)) }),
            ("gateway hit, in-memory store, 1 conn", { blackHole(try memoryClient.roundTrip(lookupFrame)) }),
            ("gateway hit, Redis store, 1 conn", { blackHole(try redisClient.roundTrip(lookupFrame)) }),
            ("redis PING (direct hiredis)", { blackHole(try hiredis.send(.ping)) }),
            ("gateway ping (transport floor), 1 conn", { blackHole(try memoryClient.roundTrip(pingFrame)) }),
        ])
        Bench.report(latency[0])
        Bench.report(latency[1], against: latency[0])
        Bench.report(latency[2], against: latency[0])
        Bench.report(latency[3])
        Bench.report(latency[4], against: latency[3])

        // MARK: throughput with 50 connections, servers and clients on different CPUs
        pinProcess(toCPU: latencyCPU)
        try pin(pid: redisPID, cpus: "\(serverCPU)")
        try pin(pid: memoryGateway.pid, cpus: "\(serverCPU)")
        try pin(pid: redisGateway.pid, cpus: "\(serverCPU)")
        print("throughput: servers on CPU \(serverCPU), clients on CPU \(latencyCPU), 50 connections, 1 request outstanding each")
        let redisRate = try Self.redisBenchmarkGetRate(socket: redisSocket, clientCPU: latencyCPU)
        let fds = try (0..<50).map { _ in try BlockingGatewayClient(socketPath: memoryGateway.socketPath) }
        let memoryRate = try runClosedLoop(fds: fds.map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(3))
        print(String(format: "%-44@ %10.0f requests/s", "baseline: redis-benchmark -c 50 GET" as NSString, redisRate))
        Bench.record("baseline: redis-benchmark -c 50 GET", redisRate, unit: "requests/s")
        print(String(format: "%-44@ %10.0f requests/s  ratio %.2f× baseline", "gateway hits, in-memory store, 50 conns" as NSString, memoryRate, memoryRate / redisRate))
        Bench.record("gateway hits, in-memory store, 50 conns", memoryRate, unit: "requests/s", against: ("baseline: redis-benchmark -c 50 GET", redisRate))
        let redisFDs = try (0..<50).map { _ in try BlockingGatewayClient(socketPath: redisGateway.socketPath) }
        let redisBackedRate = try runClosedLoop(fds: redisFDs.map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(3))
        print(String(format: "%-44@ %10.0f requests/s  ratio %.2f× baseline", "gateway hits, Redis store, 50 conns" as NSString, redisBackedRate, redisBackedRate / redisRate))
        Bench.record("gateway hits, Redis store, 50 conns", redisBackedRate, unit: "requests/s", against: ("baseline: redis-benchmark -c 50 GET", redisRate))
        withExtendedLifetime((fds, redisFDs)) {}
    }

    /// redis-benchmark's GET rate with 50 clients over the Unix socket, on a
    /// key it first SETs with a value of the same size.
    static func redisBenchmarkGetRate(socket: String, clientCPU: Int) throws -> Double {
        func run(_ test: String, requests: Int) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
            process.arguments = ["-c", "\(clientCPU)", "redis-benchmark", "-s", socket, "-c", "50", "-n", "\(requests)", "-d", "\(Self.valueSize)", "-t", test, "--csv"]
            let output = Pipe()
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return String(decoding: data, as: UTF8.self)
        }
        _ = try run("set", requests: 10_000)
        let csv = try run("get", requests: 300_000)
        for line in csv.split(separator: "\n") where line.hasPrefix("\"GET\"") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if fields.count > 1, let rate = Double(fields[1]) { return rate }
        }
        throw BenchmarkFailure("could not read redis-benchmark's output: \(csv)")
    }
}

/// A release-build `cache-gateway serve` started beside this benchmark binary.
final class GatewayUnderTest {
    let process = Process()
    let socketPath: String
    private let directory: String

    init(arguments: [String]) throws {
        self.directory = NSTemporaryDirectory() + "cg-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/gateway.sock"
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cache-gateway")
        self.process.executableURL = binary
        self.process.arguments = ["serve", "--socket", self.socketPath, "--log-level", "warning"] + arguments
        try self.process.run()
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if let fd = try? connectUnixSocket(self.socketPath) {
                close(fd)
                return
            }
            usleep(10_000)
        }
        throw BenchmarkFailure("the gateway did not start listening on \(self.socketPath)")
    }

    var pid: Int32 { self.process.processIdentifier }

    func stop() {
        if self.process.isRunning {
            self.process.terminate()
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
