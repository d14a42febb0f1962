import Foundation
import Gateway
import GatewayProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Lookups through real gateway processes, beside a direct hiredis GET on the
/// same redis-server (over its Unix socket, and over TCP loopback as the
/// stand-in for a Redis on another machine), and beside twemproxy doing the
/// same two-hop job.
///
/// Three gateways: the embedded store; Redis with the near-cache (a hot hit
/// is answered from the gateway's memory); Redis with the near-cache off
/// (every hit is a cold one: gateway, then Redis).
///
/// Two floors under the gateway's ping: a bare SwiftNIO server with one
/// handler, and a plain `poll` loop (`PingFloorServer`). And the gateway's
/// hit work on a plain `poll` loop (`HitFloorServer`): what a hot hit would
/// cost without SwiftNIO; and its cold-hit work, twemproxy's way, on a plain
/// `poll` loop in front of the same redis-server (`ColdFloorServer`).
///
/// Latency runs with everything (redis-server, the gateways, twemproxy, the
/// floors, this client) on one CPU, so that no round trip crosses CPUs and
/// both servers of a two-hop path share the CPU. Throughput runs with the
/// servers on one CPU and the clients on the other, the same way for the
/// gateway, twemproxy and redis-benchmark, in rounds of every case in turn.
/// `BENCH_PROFILE` runs one case alone instead (see Benchmarks/README.md).
enum GatewayLookupBenchmarks {
    static let valueSize = 1_024

    static func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let bench = try BenchEnvironment.current()
        let (redisSocket, redisPID, latencyCPU, serverCPU) = (bench.redisSocket, bench.redisPID, bench.clientCPU, bench.otherCPU)
        print("== Gateway lookups (release build; \(valueSize)-byte values) ==")

        let value = ByteBuffer(bytes: (0..<Self.valueSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let redisURL = try RedisURL("unix://\(redisSocket)")
        let hiredis = try BlockingRedisClient(url: redisURL)
        _ = try hiredis.send(.set(ByteBuffer(string: "bench:direct"), value))
        // The same server over TCP loopback, when scripts/bench.sh gave it a port.
        let hiredisTCP = try environment["CACHE_GATEWAY_TEST_REDIS_TCP_PORT"].flatMap(Int.init).map { port in
            try BlockingRedisClient(url: try RedisURL("redis://127.0.0.1:\(port)"))
        }
        let twemproxy = try TwemproxyUnderTest(redisSocket: redisSocket)
        defer { twemproxy.stop() }
        let viaTwemproxy = try BlockingRedisClient(url: try RedisURL("unix://\(twemproxy.socketPath)"))

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

        // Gateways on the same redis-server; a generous lookup timeout, so that
        // every lookup measured is a real hit and not a fail-open miss.
        let redisArguments = ["--redis", "unix://\(redisSocket)", "--namespace", "bench", "--lookup-timeout-ms", "1000"]
        let nearGateway = try GatewayUnderTest(arguments: redisArguments)
        defer { nearGateway.stop() }
        let coldGateway = try GatewayUnderTest(arguments: redisArguments + ["--near-cache-size", "0"])
        defer { coldGateway.stop() }
        // The same two on SwiftNIO's event loops, for the comparison in the same run.
        let nearNIOGateway = try GatewayUnderTest(arguments: redisArguments + ["--event-loops", "swiftnio"])
        defer { nearNIOGateway.stop() }
        let coldNIOGateway = try GatewayUnderTest(arguments: redisArguments + ["--near-cache-size", "0", "--event-loops", "swiftnio"])
        defer { coldNIOGateway.stop() }
        let nearClient = try BlockingGatewayClient(socketPath: nearGateway.socketPath)
        let coldClient = try BlockingGatewayClient(socketPath: coldGateway.socketPath)
        let nearNIOClient = try BlockingGatewayClient(socketPath: nearNIOGateway.socketPath)
        let coldNIOClient = try BlockingGatewayClient(socketPath: coldNIOGateway.socketPath)
        try coldClient.roundTrip(storeFrame)
        guard try coldClient.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the Redis-backed lookup was not a hit") }
        guard try coldNIOClient.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the Redis-backed lookup on SwiftNIO was not a hit") }
        // The near-cache fills once its tracking is up: read until a hit comes from it.
        try Self.waitForNearHit(nearClient, lookupFrame: lookupFrame, hitLength: hitLength)
        try Self.waitForNearHit(nearNIOClient, lookupFrame: lookupFrame, hitLength: hitLength)

        // The floors under the gateway's ping: SwiftNIO with one handler, and a plain poll loop.
        let nioFloor = try PingFloorUnderTest(kind: "nio")
        defer { nioFloor.stop() }
        let pollFloor = try PingFloorUnderTest(kind: "poll")
        defer { pollFloor.stop() }
        let nioFloorClient = try BlockingGatewayClient(socketPath: nioFloor.socketPath)
        let pollFloorClient = try BlockingGatewayClient(socketPath: pollFloor.socketPath)
        // The gateway's hit work on a plain poll loop: the hot hit without SwiftNIO.
        let hitFloor = try PingFloorUnderTest(kind: "hit")
        defer { hitFloor.stop() }
        let hitFloorClient = try BlockingGatewayClient(socketPath: hitFloor.socketPath)
        try hitFloorClient.roundTrip(storeFrame)
        guard try hitFloorClient.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the hit floor's lookup was not a hit") }
        // The gateway's cold-hit work on a plain poll loop, in front of the same redis-server.
        let coldFloor = try PingFloorUnderTest(kind: "cold", redisSocket: redisSocket)
        defer { coldFloor.stop() }
        let coldFloorClient = try BlockingGatewayClient(socketPath: coldFloor.socketPath)
        try coldFloorClient.roundTrip(storeFrame)
        guard try coldFloorClient.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the cold floor's lookup was not a hit") }

        // MARK: latency, everything on one CPU
        pinProcess(toCPU: latencyCPU)
        for pid in [redisPID, memoryGateway.pid, nearGateway.pid, coldGateway.pid, nearNIOGateway.pid, coldNIOGateway.pid, twemproxy.pid, nioFloor.pid, pollFloor.pid, hitFloor.pid, coldFloor.pid] {
            try pin(pid: pid, cpus: "\(latencyCPU)")
        }
        print("latency: redis-server, gateways, twemproxy and client pinned to CPU \(latencyCPU)")
        let get = RedisCommand.get(ByteBuffer(string: "bench:direct"))
        // The floor of each transport: a ping needs no store and no value.
        let pingFrame = Array(try GatewayMessage(id: 4, .ping).encodedFrame().readableBytesView)
        var operations: [(name: String, operation: () throws -> Void)] = [
            ("baseline: hiredis GET (direct)", { blackHole(try hiredis.send(get)) }),
            ("gateway hit, in-memory store, 1 conn", { blackHole(try memoryClient.roundTrip(lookupFrame)) }),
            ("gateway hit, Redis store, near-cache, 1 conn", { blackHole(try nearClient.roundTrip(lookupFrame)) }),
            ("gateway hit, Redis store, cold, 1 conn", { blackHole(try coldClient.roundTrip(lookupFrame)) }),
            ("twemproxy GET, 1 conn", { blackHole(try viaTwemproxy.send(get)) }),
            ("redis PING (direct hiredis)", { blackHole(try hiredis.send(.ping)) }),
            ("gateway ping (transport floor), 1 conn", { blackHole(try memoryClient.roundTrip(pingFrame)) }),
            ("ping, bare SwiftNIO server (one handler)", { blackHole(try nioFloorClient.roundTrip(pingFrame)) }),
            ("ping, plain poll server", { blackHole(try pollFloorClient.roundTrip(pingFrame)) }),
            ("hit work on a plain poll loop, 1 conn", { blackHole(try hitFloorClient.roundTrip(lookupFrame)) }),
            ("cold-hit work on a plain poll loop, 1 conn", { blackHole(try coldFloorClient.roundTrip(lookupFrame)) }),
            ("gateway hit, near-cache, SwiftNIO loops, 1 conn", { blackHole(try nearNIOClient.roundTrip(lookupFrame)) }),
            ("gateway hit, cold, SwiftNIO loops, 1 conn", { blackHole(try coldNIOClient.roundTrip(lookupFrame)) }),
        ]
        if let profile = environment["BENCH_PROFILE"], profile.hasSuffix("50") {
            // 50 connections, pinned as in the throughput runs below.
            let gateways: [String: (socketPath: String, pid: Int32)] = [
                "memory50": (memoryGateway.socketPath, memoryGateway.pid),
                "near50": (nearGateway.socketPath, nearGateway.pid),
                "cold50": (coldGateway.socketPath, coldGateway.pid),
                "nearnio50": (nearNIOGateway.socketPath, nearNIOGateway.pid),
                "coldnio50": (coldNIOGateway.socketPath, coldNIOGateway.pid),
                "hitfloor50": (hitFloor.socketPath, hitFloor.pid),
                "coldfloor50": (coldFloor.socketPath, coldFloor.pid),
            ]
            guard let gateway = gateways[profile] else {
                throw BenchmarkFailure("BENCH_PROFILE for 50 connections: one of \(gateways.keys.sorted().joined(separator: ", "))")
            }
            for pid in [redisPID, memoryGateway.pid, nearGateway.pid, coldGateway.pid, nearNIOGateway.pid, coldNIOGateway.pid, twemproxy.pid, hitFloor.pid, coldFloor.pid] {
                try pin(pid: pid, cpus: "\(serverCPU)")
            }
            let seconds = environment["BENCH_PROFILE_SECONDS"].flatMap(Int.init) ?? 10
            print("profiling \(profile) for \(seconds) s; server pid \(gateway.pid), redis-server pid \(redisPID)")
            let clients = try (0..<50).map { _ in try BlockingGatewayClient(socketPath: gateway.socketPath) }
            let before = (ClientBenchmarks.cpuTimes(pid: gateway.pid), ClientBenchmarks.cpuTimes(pid: redisPID), ClientBenchmarks.cpuTimes(pid: nil))
            let rate = try runClosedLoop(fds: clients.map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(seconds))
            let after = (ClientBenchmarks.cpuTimes(pid: gateway.pid), ClientBenchmarks.cpuTimes(pid: redisPID), ClientBenchmarks.cpuTimes(pid: nil))
            let operations = rate * Double(seconds)
            let perOperation = { (ticks: Int) in Double(ticks) * 10_000 / max(1, operations) }
            print(String(
                format: "%@: %.0f requests/s; CPU per operation (user/system µs): client %.2f/%.2f, server %.2f/%.2f, redis-server %.2f/%.2f",
                profile as NSString, rate,
                perOperation(after.2.user - before.2.user), perOperation(after.2.system - before.2.system),
                perOperation(after.0.user - before.0.user), perOperation(after.0.system - before.0.system),
                perOperation(after.1.user - before.1.user), perOperation(after.1.system - before.1.system)
            ))
            withExtendedLifetime(clients) {}
            return
        }
        if let profile = environment["BENCH_PROFILE"] {
            // For perf and strace: one case alone, for BENCH_PROFILE_SECONDS (default 10).
            let servers = [
                "get": redisPID, "ping": memoryGateway.pid, "memory": memoryGateway.pid, "near": nearGateway.pid, "cold": coldGateway.pid,
                "twemproxy": twemproxy.pid, "nioping": nioFloor.pid, "pollping": pollFloor.pid, "hitfloor": hitFloor.pid, "coldfloor": coldFloor.pid,
                "nearnio": nearNIOGateway.pid, "coldnio": coldNIOGateway.pid,
            ]
            let cases = ["get": 0, "memory": 1, "near": 2, "cold": 3, "twemproxy": 4, "ping": 6, "nioping": 7, "pollping": 8, "hitfloor": 9, "coldfloor": 10, "nearnio": 11, "coldnio": 12]
            guard let index = cases[profile], let server = servers[profile] else {
                throw BenchmarkFailure("BENCH_PROFILE for the gateway group: one of \(cases.keys.sorted().joined(separator: ", "))")
            }
            try Self.profile(profile, operation: operations[index].operation, server: server, redisPID: redisPID, seconds: environment["BENCH_PROFILE_SECONDS"].flatMap(Int.init) ?? 10)
            return
        }
        if let hiredisTCP {
            operations.append(("hiredis GET over TCP loopback (direct)", { blackHole(try hiredisTCP.send(get)) }))
        }
        let latency = try Bench.measureInterleaved(operations)
        Bench.report(latency[0])
        Bench.report(latency[1], against: latency[0])
        Bench.report(latency[2], against: latency[0])
        Bench.report(latency[3], against: latency[0])
        Bench.report(latency[4], against: latency[0])
        Bench.report(latency[5])
        Bench.report(latency[6], against: latency[5])
        Bench.report(latency[7], against: latency[5])
        Bench.report(latency[8], against: latency[5])
        Bench.report(latency[9], against: latency[0])
        Bench.report(latency[10], against: latency[0])
        Bench.report(latency[11], against: latency[0])
        Bench.report(latency[12], against: latency[0])
        if hiredisTCP != nil {
            Bench.report(latency[13], against: latency[0])
            Bench.report(Measurement(renaming: latency[2], to: "gateway hit, near-cache, against GET over TCP"), against: latency[13])
            Bench.report(Measurement(renaming: latency[9], to: "hit work on a poll loop, against GET over TCP"), against: latency[13])
        }
        Bench.report(Measurement(renaming: latency[3], to: "gateway hit, cold, against twemproxy GET"), against: latency[4])
        Bench.report(Measurement(renaming: latency[12], to: "gateway hit, cold, SwiftNIO loops, against twemproxy GET"), against: latency[4])
        Bench.report(Measurement(renaming: latency[10], to: "cold-hit work on a poll loop, against twemproxy GET"), against: latency[4])

        // MARK: throughput with 50 connections, servers and clients on different CPUs
        pinProcess(toCPU: latencyCPU)
        for pid in [redisPID, memoryGateway.pid, nearGateway.pid, coldGateway.pid, nearNIOGateway.pid, coldNIOGateway.pid, twemproxy.pid, nioFloor.pid, pollFloor.pid, hitFloor.pid, coldFloor.pid] {
            try pin(pid: pid, cpus: "\(serverCPU)")
        }
        // Rounds of every case in turn, so that the machine's drift hits all
        // alike; each figure is the median of its rounds, with the lowest and
        // highest beside it.
        let rounds = max(1, environment["BENCH_ROUNDS"].flatMap(Int.init) ?? 5)
        print("throughput: servers on CPU \(serverCPU), clients on CPU \(latencyCPU), 50 connections, 1 request outstanding each; \(rounds) rounds of every case")
        try Self.prepareRedisBenchmark(socket: redisSocket, clientCPU: latencyCPU)
        let gatewayCases = [
            ("gateway hits, in-memory store, 50 conns", memoryGateway.socketPath),
            ("gateway hits, Redis store, near-cache, 50 conns", nearGateway.socketPath),
            ("gateway hits, Redis store, cold, 50 conns", coldGateway.socketPath),
            ("gateway hits, near-cache, SwiftNIO loops, 50 conns", nearNIOGateway.socketPath),
            ("gateway hits, cold, SwiftNIO loops, 50 conns", coldNIOGateway.socketPath),
            ("hit work on a plain poll loop, 50 conns", hitFloor.socketPath),
            ("cold-hit work on a plain poll loop, 50 conns", coldFloor.socketPath),
        ]
        let clients = try gatewayCases.map { _, socketPath in try (0..<50).map { _ in try BlockingGatewayClient(socketPath: socketPath) } }
        var redisRates: [Double] = []
        var twemproxyRates: [Double] = []
        var gatewayRates = [[Double]](repeating: [], count: gatewayCases.count)
        for _ in 0..<rounds {
            redisRates.append(try Self.redisBenchmarkGetRate(socket: redisSocket, clientCPU: latencyCPU))
            twemproxyRates.append(try Self.redisBenchmarkGetRate(socket: twemproxy.socketPath, clientCPU: latencyCPU))
            for index in gatewayCases.indices {
                gatewayRates[index].append(
                    try runClosedLoop(fds: clients[index].map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(1))
                )
            }
        }
        withExtendedLifetime(clients) {}
        let baseline = (name: "baseline: redis-benchmark -c 50 GET", value: Self.median(redisRates))
        print(String(format: "%-44@ %10.0f requests/s  (%@)", baseline.name as NSString, baseline.value, Self.spread(redisRates) as NSString))
        Bench.record(baseline.name, baseline.value, unit: "requests/s")
        let twemproxyBaseline = (name: "twemproxy: redis-benchmark -c 50 GET", value: Self.median(twemproxyRates))
        Self.printRate(twemproxyBaseline.name, twemproxyRates, against: baseline)
        for (index, (name, socketPath)) in gatewayCases.enumerated() {
            Self.printRate(name, gatewayRates[index], against: baseline)
            let againstTwemproxy = [
                coldGateway.socketPath: "gateway hits, cold", coldNIOGateway.socketPath: "gateway hits, cold, SwiftNIO loops",
                coldFloor.socketPath: "cold-hit work on a poll loop",
            ]
            if let label = againstTwemproxy[socketPath] {
                Self.printRate("\(label), against twemproxy", gatewayRates[index], against: twemproxyBaseline)
            }
        }
    }

    /// The median of a case's rounds.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }

    /// "lowest–highest" of a case's rounds.
    static func spread(_ values: [Double]) -> String {
        String(format: "%.0f–%.0f", values.min() ?? 0, values.max() ?? 0)
    }

    /// Prints and records the median of a case's rounds against a baseline's.
    static func printRate(_ name: String, _ rates: [Double], against baseline: (name: String, value: Double)) {
        let rate = Self.median(rates)
        print(String(format: "%-44@ %10.0f requests/s  (%@)  ratio %.2f× %@", name as NSString, rate, Self.spread(rates) as NSString, rate / baseline.value, baseline.name as NSString))
        Bench.record(name, rate, unit: "requests/s", against: baseline)
    }

    /// Runs one case alone for `seconds` and prints its time and the CPU time
    /// per operation of this client, the server it measures and redis-server.
    static func profile(_ name: String, operation: () throws -> Void, server: Int32, redisPID: Int32, seconds: Int) throws {
        print("profiling \(name) for \(seconds) s; server pid \(server), redis-server pid \(redisPID)")
        let before = (ClientBenchmarks.cpuTimes(pid: nil), ClientBenchmarks.cpuTimes(pid: server), ClientBenchmarks.cpuTimes(pid: redisPID))
        let start = ContinuousClock.now
        let end = start + .seconds(seconds)
        var operations = 0
        while ContinuousClock.now < end {
            for _ in 0..<1_000 { try operation() }
            operations += 1_000
        }
        let elapsed = ClientBenchmarks.nanoseconds(ContinuousClock.now - start)
        let after = (ClientBenchmarks.cpuTimes(pid: nil), ClientBenchmarks.cpuTimes(pid: server), ClientBenchmarks.cpuTimes(pid: redisPID))
        let perOperation = { (ticks: Int) in Double(ticks) * 10_000 / Double(max(1, operations)) }  // 100 ticks per second, in µs
        var line = String(
            format: "%@: %.2f µs per operation; CPU per operation (user/system µs): client %.2f/%.2f, server %.2f/%.2f",
            name as NSString, elapsed / 1_000 / Double(operations),
            perOperation(after.0.user - before.0.user), perOperation(after.0.system - before.0.system),
            perOperation(after.1.user - before.1.user), perOperation(after.1.system - before.1.system)
        )
        if server != redisPID {
            line += String(format: ", redis-server %.2f/%.2f", perOperation(after.2.user - before.2.user), perOperation(after.2.system - before.2.system))
        }
        print(line)
    }

    /// Reads until the near-cache answers (its tracking takes a moment to
    /// come up after the gateway starts).
    static func waitForNearHit(_ client: BlockingGatewayClient, lookupFrame: [UInt8], hitLength: Int) throws {
        let statsFrame = Array(try GatewayMessage(id: 5, .stats).encodedFrame().readableBytesView)
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            guard try client.roundTrip(lookupFrame) == hitLength else { throw BenchmarkFailure("the near-cache gateway's lookup was not a hit") }
            if try client.nearCacheHits(statsFrame: statsFrame) > 0 { return }
            usleep(10_000)
        }
        throw BenchmarkFailure("the near-cache never answered")
    }

    /// Stores the value redis-benchmark's GETs read (its key, with a value of
    /// the same size as the gateway's).
    static func prepareRedisBenchmark(socket: String, clientCPU: Int) throws {
        _ = try Self.runRedisBenchmark(socket: socket, clientCPU: clientCPU, test: "set", requests: 10_000)
    }

    /// redis-benchmark's GET rate with 50 clients over the Unix socket, for
    /// about a second at this machine's rates (`prepareRedisBenchmark` first).
    static func redisBenchmarkGetRate(socket: String, clientCPU: Int) throws -> Double {
        let csv = try Self.runRedisBenchmark(socket: socket, clientCPU: clientCPU, test: "get", requests: 120_000)
        for line in csv.split(separator: "\n") where line.hasPrefix("\"GET\"") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if fields.count > 1, let rate = Double(fields[1]) { return rate }
        }
        throw BenchmarkFailure("could not read redis-benchmark's output: \(csv)")
    }

    /// Runs redis-benchmark with 50 clients on `clientCPU` and returns its CSV output.
    static func runRedisBenchmark(socket: String, clientCPU: Int, test: String, requests: Int) throws -> String {
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
}

/// A release-build `cache-gateway serve` started beside this benchmark binary.
final class GatewayUnderTest {
    let process = Process()
    let socketPath: String
    private let directory: String

    /// A gateway from the `cache-gateway` beside this benchmark, or from `binary`.
    init(arguments: [String], binary: URL? = nil) throws {
        self.directory = NSTemporaryDirectory() + "cg-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/gateway.sock"
        let binary = binary ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("cache-gateway")
        self.process.executableURL = binary
        self.process.arguments = ["serve", "--socket", self.socketPath, "--log-level", "warning"] + arguments
        try self.process.run()
        try waitUntilListening(self.socketPath, what: "the gateway")
    }

    var pid: Int32 { self.process.processIdentifier }

    func stop() {
        stopProcess(self.process, removing: self.directory)
    }
}

/// Waits until a server accepts connections on the Unix socket `path`.
func waitUntilListening(_ path: String, what: String) throws {
    let deadline = ContinuousClock.now + .seconds(15)
    while ContinuousClock.now < deadline {
        if let fd = try? connectUnixSocket(path) {
            close(fd)
            return
        }
        usleep(10_000)
    }
    throw BenchmarkFailure("\(what) did not start listening on \(path)")
}

/// Stops a server started by a benchmark (SIGTERM, then waits) and removes its folder.
func stopProcess(_ process: Process, removing directory: String) {
    if process.isRunning {
        process.terminate()
        process.waitUntilExit()
    }
    try? FileManager.default.removeItem(atPath: directory)
}
