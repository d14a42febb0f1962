import Foundation
import GatewayProtocol
import NIOCore

/// How long a gateway's near-cache may serve a value after another gateway
/// changed it: gateway A overwrites or deletes an entry that gateway B holds
/// in its near-cache, and B is asked for it back to back from the moment A
/// answered until B no longer returns the old value.
///
/// Both gateways and redis-server run on one CPU and this client on the
/// other. Half the changes are overwrites (B must then return the new value
/// or a miss), half are deletes (`invalidate`).
enum StalenessBenchmarks {
    static let samples = 1_000

    static func run() throws {
        let bench = try BenchEnvironment.current()
        let (redisSocket, redisPID, clientCPU, serverCPU) = (bench.redisSocket, bench.redisPID, bench.clientCPU, bench.otherCPU)
        print("== Near-cache staleness (release build; A changes, B reads; \(Self.samples) changes) ==")
        let arguments = ["--redis", "unix://\(redisSocket)", "--namespace", "staleness", "--lookup-timeout-ms", "1000"]
        let gatewayA = try GatewayUnderTest(arguments: arguments)
        defer { gatewayA.stop() }
        let gatewayB = try GatewayUnderTest(arguments: arguments)
        defer { gatewayB.stop() }
        pinProcess(toCPU: clientCPU)
        for pid in [redisPID, gatewayA.pid, gatewayB.pid] { try pin(pid: pid, cpus: "\(serverCPU)") }
        let a = try BlockingGatewayClient(socketPath: gatewayA.socketPath)
        let b = try BlockingGatewayClient(socketPath: gatewayB.socketPath)
        let statsFrame = Array(try GatewayMessage(id: 9, .stats).encodedFrame().readableBytesView)
        let function = FunctionVersion(function: "Bench.staleness(x:)", version: "v1")
        let old = ByteBuffer(repeating: 1, count: 1_024)
        let new = ByteBuffer(repeating: 2, count: 1_025)
        func frame(_ body: GatewayMessage.Body) throws -> [UInt8] {
            Array(try GatewayMessage(id: 3, body).encodedFrame().readableBytesView)
        }

        var staleness: [Double] = []
        var pollsWhileStale: [Int] = []
        var notHeld = 0
        let clock = ContinuousClock()
        for sample in 0..<(Self.samples + 50) {
            let key = try CacheKey(hashing: "staleness-\(sample)")
            let lookup = try frame(.lookup(Lookup(function: function, key: key)))
            try a.roundTrip(try frame(.store(Store(function: function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 1, value: old))))
            // B reads it from Redis, then holds it: the next read is a near hit.
            let oldLength = try b.roundTrip(lookup)
            let nearHits = try b.nearCacheHits(statsFrame: statsFrame)
            guard try b.roundTrip(lookup) == oldLength, try b.nearCacheHits(statsFrame: statsFrame) == nearHits + 1 else {
                notHeld += 1
                continue
            }
            let change = sample % 2 == 0
                ? try frame(.store(Store(function: function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 1, value: new)))
                : try frame(.invalidate(Invalidate(function: function.function, version: function.version, key: key)))
            try a.roundTrip(change)
            let answered = clock.now
            var polls = 0
            while try b.roundTrip(lookup) == oldLength { polls += 1 }
            let elapsed = clock.now - answered
            // The first 50 warm up.
            guard sample >= 50 else { continue }
            staleness.append(Double(elapsed.components.attoseconds) / 1e12 + Double(elapsed.components.seconds) * 1e6)
            pollsWhileStale.append(polls)
        }
        staleness.sort()
        func percentile(_ p: Double) -> Double { staleness[min(staleness.count - 1, Int(Double(staleness.count - 1) * p))] }
        let stale = pollsWhileStale.filter { $0 > 0 }.count
        print(String(format: "staleness after A's reply: p50 %.1f µs, p99 %.1f µs, max %.1f µs (goal: p99 ≤ 5,000 µs)", percentile(0.5), percentile(0.99), staleness.last ?? 0))
        print("  \(stale) of \(staleness.count) changes were still seen as the old value by at least one read of B; \(notHeld) samples skipped (B did not hold the value)")
        Bench.record("staleness p50 (µs)", percentile(0.5), unit: "µs")
        Bench.record("staleness p99 (µs)", percentile(0.99), unit: "µs")
        Bench.record("staleness max (µs)", staleness.last ?? 0, unit: "µs")
    }
}
