import Foundation
import Gateway
import GatewayClientRuntime
import GatewayProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The client's side (issue 4): a `@Cached` hit through the gateway beside a
/// direct hiredis GET, the client's in-process work on a hit, and the cost of a
/// call while the gateway is absent or stopped.
///
/// A `@Cached` function's body is exactly a call to `cache(ttl:function:…)`
/// (or `cacheSync` for a synchronous function), so calling those here
/// measures a `@Cached` hit without building the macro (and swift-syntax) in
/// release mode.
enum ClientBenchmarks {
    static func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let redisSocket = environment["CACHE_GATEWAY_TEST_REDIS_SOCKET"], let redisPID = environment["CACHE_GATEWAY_TEST_REDIS_PID"].flatMap(Int32.init) else {
            throw BenchmarkFailure("run through scripts/bench.sh, which starts a private redis-server")
        }
        let cpu = environment["BENCH_CPU"].flatMap(Int.init) ?? 1
        // BENCH_SERVER_CPU puts redis-server and the gateway on another CPU than
        // the client (as on a host where workers and the gateway have cores of
        // their own): every round trip then crosses CPUs, for both sides alike.
        let serverCPU = environment["BENCH_SERVER_CPU"].flatMap(Int.init) ?? cpu
        if serverCPU == cpu {
            print("== Client: @Cached hits (release build; 1024-byte results; everything pinned to CPU \(cpu)) ==")
        } else {
            print("== Client: @Cached hits (release build; 1024-byte results; servers on CPU \(serverCPU), client on CPU \(cpu)) ==")
        }

        let gateway = try GatewayUnderTest(arguments: [])
        defer { gateway.stop() }
        pinProcess(toCPU: cpu)
        try pin(pid: redisPID, cpus: "\(serverCPU)")
        try pin(pid: gateway.pid, cpus: "\(serverCPU)")

        let result = [UInt8]((0..<1_024).map { UInt8(truncatingIfNeeded: $0) })
        let hiredis = try BlockingRedisClient(url: try RedisURL("unix://\(redisSocket)"))
        _ = try hiredis.send(.set(ByteBuffer(string: "bench:client"), ByteBuffer(bytes: result)))
        let get = RedisCommand.get(ByteBuffer(string: "bench:client"))

        CacheClient.configure(CacheClient.Configuration(socketPath: gateway.socketPath, clientName: "bench", lookupTimeout: .seconds(1), connectTimeout: .seconds(1)))
        @Sendable func cachedLookup(_ customer: Int) async -> [UInt8] {
            await cache(ttl: .seconds(3600), function: "Bench.invoiceLines(for:)", version: "v1", arguments: customer) { result }
        }
        @Sendable func cachedLookupSync(_ customer: Int) -> [UInt8] {
            cacheSync(ttl: .seconds(3600), function: "Bench.invoiceLinesSync(for:)", version: "v1", arguments: customer) { result }
        }
        // A result that is a struct (as most cached results are) takes the
        // decoder's general way: msgpack-c's unpacker and `init(from:)`. The
        // protocol group's invoice, about 1 KiB encoded.
        let invoice = Invoice.sample
        @Sendable func cachedInvoice(_ customer: Int) async -> Invoice {
            await cache(ttl: .seconds(3600), function: "Bench.invoice(for:)", version: "v1", arguments: customer) { invoice }
        }
        // The first calls compute and store; the ones measured are hits.
        _ = await cachedLookup(42)
        _ = cachedLookupSync(42)
        _ = await cachedInvoice(42)
        let invoiceBytes = try MessagePackEncoder().encode(invoice).count

        // The gateway's own floor: a lookup from a blocking client as lean as
        // hiredis's (plain system calls), on the same gateway.
        let function = FunctionVersion(function: "Bench.raw(x:)", version: "v1")
        let key = try CacheKey(hashing: 42)
        let raw = try BlockingGatewayClient(socketPath: gateway.socketPath)
        try raw.roundTrip(Array(try GatewayMessage(id: 2, .store(Store(function: function, key: key, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: ByteBuffer(bytes: try MessagePackEncoder().encode(result))))).encodedFrame().readableBytesView))
        let rawLookup = Array(try GatewayMessage(id: 3, .lookup(Lookup(function: function, key: key))).encodedFrame().readableBytesView)

        let parts = HitParts(function: "Bench.invoiceLinesSync(for:)", version: "v1", result: [UInt8].self, argument: 42)
        if let profile = environment["BENCH_PROFILE"] {
            // For perf: one operation in a loop for a few seconds.
            let hitFrame = try GatewayMessage(id: 1, .lookupReply(.hit(ByteBuffer(bytes: try MessagePackEncoder().encode(result))))).encodedFrame()
            var work = try HitWork()
            let end = ContinuousClock.now + .seconds(5)
            var operations = 0
            // The server whose CPU time is reported: redis-server for the hiredis baseline.
            let server = profile == "hiredis" ? redisPID : gateway.pid
            let before = (Self.cpuTimes(pid: nil), Self.cpuTimes(pid: server))
            defer {
                let after = (Self.cpuTimes(pid: nil), Self.cpuTimes(pid: server))
                let perOperation = { (ticks: Int) in Double(ticks) * 10_000 / Double(max(1, operations)) }  // 100 ticks per second, in µs
                print(String(
                    format: "%@: %.1f µs per operation; CPU per operation: client user %.1f µs, system %.1f µs; server user %.1f µs, system %.1f µs",
                    profile as NSString, 5_000_000 / Double(max(1, operations)),
                    perOperation(after.0.user - before.0.user), perOperation(after.0.system - before.0.system),
                    perOperation(after.1.user - before.1.user), perOperation(after.1.system - before.1.system)
                ))
            }
            while ContinuousClock.now < end {
                operations += 1_000
                for _ in 0..<1_000 {
                    switch profile {
                    case "hitwork": blackHole(try work.run([UInt8].self, function: "Bench.invoiceLines(for:)", version: "v1", replyFrame: hitFrame, arguments: 42))
                    case "sync": blackHole(cachedLookupSync(42))
                    case "invoice": blackHole(await cachedInvoice(42))
                    case "lookup": blackHole(parts.lookup())
                    case "raw": blackHole(try raw.roundTrip(rawLookup))
                    case "hiredis": blackHole(try hiredis.send(get))
                    // The raw round trip plus the client's in-process work on a hit:
                    // what that work costs when it runs between the gateway's turns.
                    case "rawwork":
                        blackHole(try raw.roundTrip(rawLookup))
                        blackHole(try work.run([UInt8].self, function: "Bench.invoiceLines(for:)", version: "v1", replyFrame: hitFrame, arguments: 42))
                    default: blackHole(await cachedLookup(42))
                    }
                }
            }
            return
        }
        // The sync hit taken apart (BENCH_PARTS=1): the lookup through the
        // client's connection with a key derived beforehand, then with the key
        // derived each time; the full hit adds decoding the value.
        var operations: [(name: String, operation: () async throws -> Void)] = [
            ("baseline: hiredis GET (direct)", { blackHole(try hiredis.send(get)) }),
            ("@Cached hit, async (cache), in-memory", { blackHole(await cachedLookup(42)) }),
            ("@Cached hit, sync (cacheSync), in-memory", { blackHole(cachedLookupSync(42)) }),
            ("raw blocking lookup (gateway floor)", { blackHole(try raw.roundTrip(rawLookup)) }),
            ("struct result: @Cached hit, async, \(invoiceBytes)-byte invoice", { blackHole(await cachedInvoice(42)) }),
        ]
        if environment["BENCH_PARTS"] == "1" {
            guard parts.lookup(), parts.lookupDerivingKey(42) else { throw BenchmarkFailure("the parts' lookups are not hits") }
            operations.append(("sync hit's lookup alone (key derived once)", { blackHole(parts.lookup()) }))
            operations.append(("sync hit's lookup, deriving the key", { blackHole(parts.lookupDerivingKey(42)) }))
        }
        let latency = try await Self.measureInterleaved(operations)
        Bench.report(latency[0])
        for measurement in latency.dropFirst() { Bench.report(measurement, against: latency[0]) }

        // The client's own work on a hit, without any I/O: deriving the key
        // (canonical MessagePack + SHA-256), framing the lookup, reading the
        // hit reply, decoding the result; exactly the runtime's code for these.
        let hitFrame = try GatewayMessage(id: 1, .lookupReply(.hit(ByteBuffer(bytes: try MessagePackEncoder().encode(result))))).encodedFrame()
        var work = try HitWork()
        let overhead = try Bench.measure("client work on a hit (key, frames, decode)", iterations: 10_000) {
            guard let value = try work.run([UInt8].self, function: "Bench.invoiceLines(for:)", version: "v1", replyFrame: hitFrame, arguments: 42) else {
                throw BenchmarkFailure("not a hit")
            }
            blackHole(value)
        }
        Bench.report(overhead, against: latency[1])

        // A call while the gateway is absent, beside calling the function uncached.
        CacheClient.configure(CacheClient.Configuration(socketPath: "/nonexistent/cache-gateway.sock", clientName: "bench"))
        @Sendable func absentLookup(_ customer: Int) async -> Int {
            await cache(ttl: .seconds(3600), function: "Bench.absent(for:)", version: "v1", arguments: customer) { customer &* 3 }
        }
        @Sendable func absentLookupSync(_ customer: Int) -> Int {
            cacheSync(ttl: .seconds(3600), function: "Bench.absentSync(for:)", version: "v1", arguments: customer) { customer &* 3 }
        }
        @Sendable @inline(never) func uncached(_ customer: Int) async -> Int { customer &* 3 }
        var index = 0
        let absent = try await Self.measureInterleaved([
            ("baseline: the function called uncached", { index &+= 1; blackHole(await uncached(index)) }),
            ("@Cached call, async, gateway absent", { index &+= 1; blackHole(await absentLookup(index)) }),
            ("@Cached call, sync, gateway absent", { index &+= 1; blackHole(absentLookupSync(index)) }),
        ])
        Bench.report(absent[0])
        Bench.report(absent[1], against: absent[0])
        Bench.report(absent[2], against: absent[0])
        print(String(format: "gateway absent adds %.2f µs (async) and %.2f µs (sync) per call (medians)", (absent[1].median - absent[0].median) / 1_000, (absent[2].median - absent[0].median) / 1_000))

        try await Self.stalledGateway(gateway)
    }

    /// Calls while the gateway is connected but stopped (SIGSTOP) for 3 s,
    /// with the default configuration (10 ms lookup timeout, the circuit
    /// breaker opening after 3 timeouts), beside calling the function uncached
    /// for as long: the mean added cost per call over the stall, which the
    /// lookups that wait for their timeout (the 3 that open the breaker, then
    /// its probes) dominate. Goal: at most 50 µs per call on average. Each
    /// call is timed, to count those that waited; the baseline is timed alike.
    static func stalledGateway(_ gateway: GatewayUnderTest) async throws {
        print("== Client: a stalled gateway (SIGSTOP for 3 s; default timeouts and circuit breaker) ==")
        let configuration = CacheClient.Configuration(socketPath: gateway.socketPath, clientName: "bench")
        let lookupTimeout = configuration.lookupTimeout
        let stall = Duration.seconds(3)
        @Sendable func stalledLookup(_ customer: Int) async -> Int {
            await cache(ttl: .seconds(3600), function: "Bench.stalled(for:)", version: "v1", arguments: customer) { customer &* 3 }
        }
        @Sendable func stalledLookupSync(_ customer: Int) -> Int {
            cacheSync(ttl: .seconds(3600), function: "Bench.stalledSync(for:)", version: "v1", arguments: customer) { customer &* 3 }
        }
        @Sendable @inline(never) func uncached(_ customer: Int) async -> Int { customer &* 3 }

        /// Calls `operation` for `stall`; the calls made, and how many took at least the lookup timeout.
        func run(_ operation: (Int) async -> Int) async -> (calls: Int, waited: Int, elapsed: Duration) {
            let clock = ContinuousClock()
            let start = clock.now
            var calls = 0
            var waited = 0
            while clock.now - start < stall {
                for _ in 0..<100 {
                    let before = clock.now
                    calls &+= 1
                    blackHole(await operation(calls))
                    if clock.now - before >= lookupTimeout { waited += 1 }
                }
            }
            return (calls, waited, clock.now - start)
        }
        func mean(_ run: (calls: Int, waited: Int, elapsed: Duration)) -> Double {
            Self.nanoseconds(run.elapsed) / Double(run.calls)
        }

        let baseline = await run { await uncached($0) }
        print(String(format: "%-44@ mean %9.1f ns/call  (%d calls)", "baseline: the function called uncached" as NSString, mean(baseline), baseline.calls))
        let baselineName = "baseline: the function called uncached for 3 s"
        Bench.record(baselineName, mean(baseline), unit: "ns/call")
        for (name, operation) in [
            ("@Cached call, async, gateway stopped", { (customer: Int) async -> Int in await stalledLookup(customer) }),
            ("@Cached call, sync, gateway stopped", { (customer: Int) async -> Int in stalledLookupSync(customer) }),
        ] {
            CacheClient.configure(configuration)
            // Connected, and the connection's first lookups done.
            for customer in 0..<10 { blackHole(await operation(-1 - customer)) }
            guard kill(gateway.pid, SIGSTOP) == 0 else { throw BenchmarkFailure("SIGSTOP: errno \(errno)") }
            let stalled = await run(operation)
            kill(gateway.pid, SIGCONT)
            print(String(
                format: "%-44@ mean %9.1f ns/call  (%d calls, %d waited for the lookup timeout)  adds %.2f µs per call",
                name as NSString, mean(stalled), stalled.calls, stalled.waited, (mean(stalled) - mean(baseline)) / 1_000
            ))
            Bench.record(name, mean(stalled), unit: "ns/call", against: (baselineName, mean(baseline)))
            // The goal: at most 50 µs added per call.
            Bench.record("\(name): added per call", (mean(stalled) - mean(baseline)) / 1_000, unit: "µs/call")
            Bench.record("\(name): calls that waited the lookup timeout", Double(stalled.waited), unit: "calls")
        }
    }

    /// `Bench.measureInterleaved` for async operations: alternating batches
    /// after a warm-up batch of each.
    static func measureInterleaved(
        _ operations: [(name: String, operation: () async throws -> Void)],
        batches: Int = 25,
        iterations: Int = 2_000
    ) async throws -> [Measurement] {
        let clock = ContinuousClock()
        for entry in operations {
            for _ in 0..<iterations { try await entry.operation() }
        }
        var perOperation = [[Double]](repeating: [], count: operations.count)
        for _ in 0..<batches {
            for (index, entry) in operations.enumerated() {
                let start = clock.now
                for _ in 0..<iterations { try await entry.operation() }
                perOperation[index].append(Self.nanoseconds(clock.now - start) / Double(iterations))
            }
        }
        return operations.indices.map { index in
            Measurement(name: operations[index].name, nanosecondsPerOperation: perOperation[index].sorted(), bytesPerOperation: 0)
        }
    }

    /// A process's user and system CPU time so far, in clock ticks (1/100 s), from /proc.
    static func cpuTimes(pid: Int32?) -> (user: Int, system: Int) {
        let path = pid.map { "/proc/\($0)/stat" } ?? "/proc/self/stat"
        guard let stat = try? String(contentsOfFile: path, encoding: .utf8), let end = stat.lastIndex(of: ")") else { return (0, 0) }
        // Fields after "pid (name)": state is field 3, utime 14, stime 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return (0, 0) }
        return (user, system)
    }

    static func nanoseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1e9 + Double(duration.components.attoseconds) / 1e9
    }
}
