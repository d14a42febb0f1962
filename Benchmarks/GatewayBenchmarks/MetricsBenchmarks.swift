import Foundation
import Gateway
import GatewayProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// What `--metrics` costs: the same hit through gateways with metrics off
/// (the baseline) and on, side by side in one run.
///
/// Latency: everything on one CPU, the four operations in alternating batches.
/// Throughput: 50 connections, servers and clients on different CPUs, the
/// off and on gateways measured alternately three times each (the median counts).
/// At the end the gateways with metrics on are scraped, to show that they
/// really recorded every lookup.
enum MetricsBenchmarks {
    static func run() throws {
        let bench = try BenchEnvironment.current()
        let (redisSocket, redisPID, latencyCPU, serverCPU) = (bench.redisSocket, bench.redisPID, bench.clientCPU, bench.otherCPU)
        print("== Metrics overhead (release build; \(GatewayLookupBenchmarks.valueSize)-byte hits) ==")

        let directory = NSTemporaryDirectory() + "cg-bench-metrics-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let redis = ["--redis", "unix://\(redisSocket)", "--namespace", "bench-metrics", "--lookup-timeout-ms", "1000"]
        let memoryOff = try GatewayUnderTest(arguments: [])
        defer { memoryOff.stop() }
        let memoryOn = try GatewayUnderTest(arguments: ["--metrics", "unix:\(directory)/memory.sock"])
        defer { memoryOn.stop() }
        let redisOff = try GatewayUnderTest(arguments: redis)
        defer { redisOff.stop() }
        let redisOn = try GatewayUnderTest(arguments: redis + ["--metrics", "unix:\(directory)/redis.sock"])
        defer { redisOn.stop() }

        let value = ByteBuffer(bytes: (0..<GatewayLookupBenchmarks.valueSize).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let function = FunctionVersion(function: "Bench.metered(x:)", version: "v1")
        let key = try CacheKey(hashing: 42)
        let storeFrame = Array(try GatewayMessage(id: 2, .store(Store(function: function, key: key, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: value))).encodedFrame().readableBytesView)
        let lookupFrame = Array(try GatewayMessage(id: 3, .lookup(Lookup(function: function, key: key))).encodedFrame().readableBytesView)
        let gateways = [memoryOff, memoryOn, redisOff, redisOn]
        let clients = try gateways.map { try BlockingGatewayClient(socketPath: $0.socketPath) }
        var hitLength = 0
        for client in clients {
            try client.roundTrip(storeFrame)
            let length = try client.roundTrip(lookupFrame)
            guard length > GatewayLookupBenchmarks.valueSize else { throw BenchmarkFailure("a lookup was not a hit (\(length) bytes)") }
            hitLength = length
        }

        pinProcess(toCPU: latencyCPU)
        try pin(pid: redisPID, cpus: "\(latencyCPU)")
        for gateway in gateways { try pin(pid: gateway.pid, cpus: "\(latencyCPU)") }
        print("latency: redis-server, gateways and client pinned to CPU \(latencyCPU)")
        let latency = try Bench.measureInterleaved([
            ("baseline: hit, in-memory store, metrics off", { blackHole(try clients[0].roundTrip(lookupFrame)) }),
            ("hit, in-memory store, metrics on", { blackHole(try clients[1].roundTrip(lookupFrame)) }),
            ("baseline: hit, Redis store, metrics off", { blackHole(try clients[2].roundTrip(lookupFrame)) }),
            ("hit, Redis store, metrics on", { blackHole(try clients[3].roundTrip(lookupFrame)) }),
        ])
        Bench.report(latency[0])
        Bench.report(latency[1], against: latency[0])
        Bench.report(latency[2])
        Bench.report(latency[3], against: latency[2])

        pinProcess(toCPU: latencyCPU)
        try pin(pid: redisPID, cpus: "\(serverCPU)")
        for gateway in gateways { try pin(pid: gateway.pid, cpus: "\(serverCPU)") }
        print("throughput: servers on CPU \(serverCPU), clients on CPU \(latencyCPU), 50 connections, 1 request outstanding each, in-memory store")
        let offFDs = try (0..<50).map { _ in try BlockingGatewayClient(socketPath: memoryOff.socketPath) }
        let onFDs = try (0..<50).map { _ in try BlockingGatewayClient(socketPath: memoryOn.socketPath) }
        var offRates: [Double] = []
        var onRates: [Double] = []
        for _ in 0..<3 {
            offRates.append(try runClosedLoop(fds: offFDs.map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(2)))
            onRates.append(try runClosedLoop(fds: onFDs.map(\.fd), frame: lookupFrame, replyLength: 4 + hitLength, duration: .seconds(2)))
        }
        let offMedian = offRates.sorted()[1]
        let onMedian = onRates.sorted()[1]
        print(String(format: "%-44@ %10.0f requests/s  (runs %@)", "baseline: metrics off" as NSString, offMedian, offRates.map { String(format: "%.0f", $0) }.joined(separator: ", ") as NSString))
        print(String(format: "%-44@ %10.0f requests/s  (runs %@)  ratio %.3f× baseline", "metrics on" as NSString, onMedian, onRates.map { String(format: "%.0f", $0) }.joined(separator: ", ") as NSString, onMedian / offMedian))
        Bench.record("baseline: metrics off, 50 conns (median of 3 runs)", offMedian, unit: "requests/s")
        Bench.record("metrics on, 50 conns (median of 3 runs)", onMedian, unit: "requests/s", against: ("baseline: metrics off, 50 conns (median of 3 runs)", offMedian))
        withExtendedLifetime((offFDs, onFDs)) {}

        // The gateways with metrics on counted what they served.
        for (name, path) in [("in-memory", "\(directory)/memory.sock"), ("Redis", "\(directory)/redis.sock")] {
            let body = try Self.scrape(path)
            let hits = Self.sample(body, #"cache_gateway_hits_total{function="Bench.metered(x:)"}"#) ?? 0
            let lookups = Self.sample(body, "cache_gateway_lookup_duration_seconds_count") ?? 0
            print(String(format: "scraped the %@ gateway: %.0f hits, %.0f lookups in its latency histogram", name as NSString, hits, lookups))
            guard hits >= Double(2_000 * 25), lookups >= hits else {
                throw BenchmarkFailure("the \(name) gateway with metrics on did not count its hits")
            }
        }
    }

    /// `GET /metrics` over a Unix socket; the body.
    static func scrape(_ path: String) throws -> String {
        let fd = try connectUnixSocket(path)
        defer { close(fd) }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw BenchmarkFailure("send: errno \(errno)")
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            response += buffer[..<count]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n"), text.hasPrefix("HTTP/1.1 200") else {
            throw BenchmarkFailure("the metrics endpoint answered \(text.prefix(80))")
        }
        return String(text[split.upperBound...])
    }

    static func sample(_ body: String, _ series: String) -> Double? {
        for line in body.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }
}
