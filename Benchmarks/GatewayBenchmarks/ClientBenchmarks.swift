import Foundation
import Gateway
import GatewayClientRuntime
import GatewayProtocol
import NIOCore

/// The client's side (issue 4): a `@Cached` hit through the gateway beside a
/// direct hiredis GET, the client's in-process work on a hit, and the cost of a
/// call while the gateway is absent.
///
/// A `@Cached` function's body is exactly a call to `cache(ttl:function:…)`,
/// so calling that here measures a `@Cached` hit without building the macro
/// (and swift-syntax) in release mode.
enum ClientBenchmarks {
    static func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let redisSocket = environment["CACHE_GATEWAY_TEST_REDIS_SOCKET"], let redisPID = environment["CACHE_GATEWAY_TEST_REDIS_PID"].flatMap(Int32.init) else {
            throw BenchmarkFailure("run through scripts/bench.sh, which starts a private redis-server")
        }
        let cpu = environment["BENCH_CPU"].flatMap(Int.init) ?? 1
        print("== Client: @Cached hits (release build; 1024-byte results; everything pinned to CPU \(cpu)) ==")

        let gateway = try GatewayUnderTest(arguments: [])
        defer { gateway.stop() }
        pinProcess(toCPU: cpu)
        try pin(pid: redisPID, cpus: "\(cpu)")
        try pin(pid: gateway.pid, cpus: "\(cpu)")

        let result = [UInt8]((0..<1_024).map { UInt8(truncatingIfNeeded: $0) })
        let hiredis = try BlockingRedisClient(url: try RedisURL("unix://\(redisSocket)"))
        _ = try hiredis.send(.set(ByteBuffer(string: "bench:client"), ByteBuffer(bytes: result)))
        let get = RedisCommand.get(ByteBuffer(string: "bench:client"))

        CacheClient.configure(CacheClient.Configuration(socketPath: gateway.socketPath, clientName: "bench", lookupTimeout: .seconds(1), connectTimeout: .seconds(1)))
        @Sendable func cachedLookup(_ customer: Int) async -> [UInt8] {
            await cache(ttl: .seconds(3600), function: "Bench.invoiceLines(for:)", version: "v1", arguments: customer) { result }
        }
        // The first call computes and stores; wait until a call is served from the gateway.
        _ = await cachedLookup(42)

        let iterations = 2_000
        var direct: [Double] = []
        var hits: [Double] = []
        let clock = ContinuousClock()
        for batch in 0..<26 {
            let directStart = clock.now
            for _ in 0..<iterations { blackHole(try hiredis.send(get)) }
            let directTime = clock.now - directStart
            let hitStart = clock.now
            for _ in 0..<iterations { blackHole(await cachedLookup(42)) }
            let hitTime = clock.now - hitStart
            if batch > 0 {  // the first batch warms up
                direct.append(Self.nanoseconds(directTime) / Double(iterations))
                hits.append(Self.nanoseconds(hitTime) / Double(iterations))
            }
        }
        let directMeasurement = Measurement(name: "baseline: hiredis GET (direct)", nanosecondsPerOperation: direct.sorted(), bytesPerOperation: 0)
        let hitMeasurement = Measurement(name: "@Cached hit, gateway in-memory store", nanosecondsPerOperation: hits.sorted(), bytesPerOperation: 0)
        Bench.report(directMeasurement)
        Bench.report(hitMeasurement, against: directMeasurement)

        // The client's own work on a hit, without any I/O: deriving the key
        // (canonical MessagePack + SHA-256), framing the lookup, reading the
        // hit reply, decoding the result.
        let decoder = FrameDecoder()
        let lookupFrame = try GatewayMessage(id: 1, .lookup(Lookup(function: FunctionVersion(function: "Bench.invoiceLines(for:)", version: "v1"), key: try CacheKey(hashing: 42)))).encodedFrame()
        let hitFrame = try GatewayMessage(id: 1, .lookupReply(.hit(ByteBuffer(bytes: try MessagePackEncoder().encode(result))))).encodedFrame()
        let overhead = try Bench.measure("client work on a hit (key, frames, decode)", iterations: 10_000) {
            let key = try CacheKey(hashing: ["Swift.Array<Swift.UInt8>", "Swift.Int"] as [String])
            blackHole(key)
            var out = ByteBufferAllocator().buffer(capacity: 256)
            try GatewayMessage(id: 1, .lookup(Lookup(function: FunctionVersion(function: "Bench.invoiceLines(for:)", version: "v1"), key: key))).encodeFrame(into: &out)
            var input = hitFrame
            let payload = try decoder.readPayload(from: &input)!
            guard case .lookupReply(.hit(let bytes)) = try GatewayMessage(payload: payload).body else { throw BenchmarkFailure("not a hit") }
            blackHole(try MessagePackDecoder().decode([UInt8].self, from: bytes))
        }
        Bench.report(overhead, against: hitMeasurement)
        blackHole(lookupFrame)

        // A call while the gateway is absent, beside calling the function uncached.
        CacheClient.configure(CacheClient.Configuration(socketPath: "/nonexistent/cache-gateway.sock", clientName: "bench"))
        @Sendable func absentLookup(_ customer: Int) async -> Int {
            await cache(ttl: .seconds(3600), function: "Bench.absent(for:)", version: "v1", arguments: customer) { customer &* 3 }
        }
        @Sendable @inline(never) func uncached(_ customer: Int) async -> Int { customer &* 3 }
        var absent: [Double] = []
        var plain: [Double] = []
        for _ in 0..<25 {
            let plainStart = clock.now
            for index in 0..<iterations { blackHole(await uncached(index)) }
            plain.append(Self.nanoseconds(clock.now - plainStart) / Double(iterations))
            let absentStart = clock.now
            for index in 0..<iterations { blackHole(await absentLookup(index)) }
            absent.append(Self.nanoseconds(clock.now - absentStart) / Double(iterations))
        }
        let plainMeasurement = Measurement(name: "baseline: the function called uncached", nanosecondsPerOperation: plain.sorted(), bytesPerOperation: 0)
        let absentMeasurement = Measurement(name: "@Cached call, gateway absent", nanosecondsPerOperation: absent.sorted(), bytesPerOperation: 0)
        Bench.report(plainMeasurement)
        Bench.report(absentMeasurement, against: plainMeasurement)
        print(String(format: "gateway absent adds %.2f µs per call (median)", (absentMeasurement.median - plainMeasurement.median) / 1_000))
    }

    static func nanoseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
    }
}
