import Foundation
import Gateway
import GatewayProtocol
import NIOCore
import NIOPosix
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Purging a retired version of 1,000,000 entries while 20 connections keep
/// reading another function through the same gateway (issue 5).
///
/// The purge is the real one: a gateway with `--purge eager` whose registry
/// retires version 1 when version 2 registers. Its time runs from sending that
/// registration until the purge's captured index is gone from Redis (its last
/// step). The baseline, in the same run, is a raw pipelined UNLINK of the same
/// key list in batches of the same size, sent over one connection as fast as
/// Redis takes it. The readers' latencies are compared before and during the purge.
///
/// Redis runs on one CPU, the gateway, the readers and this process on the other.
enum PurgeBenchmarks {
    static let entries = 1_000_000
    static let readers = 20
    static let namespace = "benchpurge"

    static func run() async throws {
        let bench = try BenchEnvironment.current()
        let (redisSocket, redisPID, clientCPU, redisCPU) = (bench.redisSocket, bench.redisPID, bench.clientCPU, bench.otherCPU)
        print("== Purge of \(Self.entries) entries, \(Self.readers) readers of another function (release build) ==")
        let redisURL = try RedisURL("unix://\(redisSocket)")
        let redis = try BlockingRedisClient(url: redisURL, timeout: .seconds(120))
        _ = try redis.send(RedisCommand("FLUSHALL"))

        // BENCH_PURGE_BATCH tries another --purge-batch-size than the default.
        let batchSize = ProcessInfo.processInfo.environment["BENCH_PURGE_BATCH"].map { ["--purge-batch-size", $0] } ?? []
        let gateway = try GatewayUnderTest(arguments: [
            "--redis", "unix://\(redisSocket)", "--namespace", Self.namespace, "--purge", "eager",
            "--lookup-timeout-ms", "1000", "--write-timeout-ms", "30000",
        ] + batchSize)
        defer { gateway.stop() }
        try pin(pid: redisPID, cpus: "\(redisCPU)")
        try pin(pid: gateway.pid, cpus: "\(clientCPU)")
        pinProcess(toCPU: clientCPU)
        print("redis-server on CPU \(redisCPU); gateway, readers and this process on CPU \(clientCPU)")

        // One real entry of the purged function, stored through the gateway,
        // shows the key layout; the other 999,999 are written beside it by a
        // script in the same layout (storing a million through the gateway
        // would take minutes and measure nothing of the purge).
        let purged = FunctionVersion(function: "Bench.purged(x:)", version: "v1")
        let admin = try BlockingGatewayClient(socketPath: gateway.socketPath)
        try admin.roundTrip(try Self.frame(.register(purged)))
        try admin.roundTrip(try Self.frame(.store(Store(function: purged, key: try CacheKey(hashing: 0), ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: ByteBuffer(repeating: 7, count: 64)))))
        let layout = try Self.layout(redis)
        print("entry keys: \(layout.entryPrefix)<64 hex>; index: \(layout.index)")

        // The other function, read throughout.
        let read = FunctionVersion(function: "Bench.read(x:)", version: "v1")
        let readKey = try CacheKey(hashing: 1)
        try admin.roundTrip(try Self.frame(.store(Store(function: read, key: readKey, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: ByteBuffer(repeating: 9, count: 1024)))))
        let lookupFrame = try Self.frame(.lookup(Lookup(function: read, key: readKey)))

        // Baseline first: the same key list, deleted by raw pipelined UNLINK.
        let batch = 500
        try Self.populate(redis, layout: layout)
        let connection = try await RedisConnection.connect(to: redisURL, on: MultiThreadedEventLoopGroup.singleton.next(), logger: .init(label: "bench"))
        let rawStart = ContinuousClock.now
        var rawDeleted = 0
        var chunkStart = 0
        while chunkStart < Self.entries {
            // 20 batches per pipeline write: as fast as one connection goes.
            var commands: [RedisCommand] = []
            for batchStart in stride(from: chunkStart, to: min(chunkStart + 20 * batch, Self.entries), by: batch) {
                let keys = (batchStart..<min(batchStart + batch, Self.entries)).map { ByteBuffer(string: layout.entryPrefix + Self.hex($0)) }
                commands.append(RedisCommand("UNLINK", arguments: keys))
            }
            for reply in try await connection.pipeline(commands, timeout: .seconds(60)) { rawDeleted += Int(reply.integer ?? 0) }
            chunkStart += 20 * batch
        }
        let rawTime = ContinuousClock.now - rawStart
        await connection.close()
        guard rawDeleted == Self.entries else { throw BenchmarkFailure("the raw UNLINK deleted \(rawDeleted) of \(Self.entries)") }

        // Then the purge, with the readers running.
        try Self.populate(redis, layout: layout)
        let shared = ReaderState()
        let socketPath = gateway.socketPath
        let readerThreads = (0..<Self.readers).map { _ in
            let thread = Thread {
                guard let client = try? BlockingGatewayClient(socketPath: socketPath) else { return }
                var own: [[Double]] = [[], [], []]
                let clock = ContinuousClock()
                while true {
                    let current = shared.phase
                    if current >= 3 { break }
                    let start = clock.now
                    guard (try? client.roundTrip(lookupFrame)) != nil else { break }
                    let elapsed = clock.now - start
                    own[current].append(Double(elapsed.components.attoseconds) / 1e9 + Double(elapsed.components.seconds) * 1e9)
                }
                shared.latencies.withLock { all in for index in 0..<3 { all[index] += own[index] } }
            }
            thread.start()
            return thread
        }
        try await Task.sleep(for: .seconds(1))  // warm-up, not recorded as "before"
        shared.enter(1)
        try await Task.sleep(for: .seconds(3))
        shared.enter(2)
        let purgeStart = ContinuousClock.now
        try admin.roundTrip(try Self.frame(.register(FunctionVersion(function: purged.function, version: "v2"))))
        // The purge's last step removes its captured index (epoch 1 of v1).
        let captured = layout.index.replacingOccurrences(of: ":i:v1", with: ":p:v1:1")
        var sawCapture = false
        while true {
            let exists = try redis.send(RedisCommand("EXISTS", captured)).integer == 1
            let indexLeft = try redis.send(RedisCommand("EXISTS", layout.index)).integer == 1
            if exists { sawCapture = true }
            if sawCapture && !exists && !indexLeft { break }
            if ContinuousClock.now - purgeStart > .seconds(300) { throw BenchmarkFailure("the purge did not finish within 5 minutes") }
            usleep(1_000)
        }
        let purgeTime = ContinuousClock.now - purgeStart
        shared.enter(3)
        while readerThreads.contains(where: { !$0.isFinished }) { usleep(1_000) }
        let left = try redis.send(RedisCommand("EXISTS", layout.entryPrefix + Self.hex(Self.entries - 1))).integer ?? -1
        guard left == 0 else { throw BenchmarkFailure("the purge left entries behind") }

        let raw = Self.seconds(rawTime)
        let purge = Self.seconds(purgeTime)
        print(String(format: "%-52@ %8.3f s  (%.0f keys/s)", "baseline: raw pipelined UNLINK, \(batch) keys per command" as NSString, raw, Double(Self.entries) / raw))
        print(String(format: "%-52@ %8.3f s  (%.0f keys/s)  ratio %.2f× baseline", "gateway purge (eager retirement of v1)" as NSString, purge, Double(Self.entries) / purge, purge / raw))
        let rawName = "baseline: raw pipelined UNLINK, \(batch) keys per command"
        Bench.record(rawName, raw, unit: "s")
        Bench.record("gateway purge (eager retirement of v1)", purge, unit: "s", against: (rawName, raw))
        let recorded = shared.latencies.withLock { $0 }
        let before = recorded[1].sorted()
        let during = recorded[2].sorted()
        func percentile(_ values: [Double], _ p: Double) -> Double {
            values.isEmpty ? .nan : values[min(values.count - 1, Int(Double(values.count - 1) * p))]
        }
        print(String(format: "readers before: %d lookups, p50 %.1f µs, p99 %.1f µs", before.count, percentile(before, 0.5) / 1000, percentile(before, 0.99) / 1000))
        print(String(format: "readers during: %d lookups, p50 %.1f µs, p99 %.1f µs  (p99 ratio %.2f× before)", during.count, percentile(during, 0.5) / 1000, percentile(during, 0.99) / 1000, percentile(during, 0.99) / percentile(before, 0.99)))
        Bench.record("baseline: readers before, p50", percentile(before, 0.5) / 1000, unit: "µs")
        Bench.record("baseline: readers before, p99", percentile(before, 0.99) / 1000, unit: "µs")
        Bench.record("readers during, p50", percentile(during, 0.5) / 1000, unit: "µs", against: ("baseline: readers before, p50", percentile(before, 0.5) / 1000))
        Bench.record("readers during, p99", percentile(during, 0.99) / 1000, unit: "µs", against: ("baseline: readers before, p99", percentile(before, 0.99) / 1000))
        withExtendedLifetime(readerThreads) {}
    }

    /// What the reader threads share: the phase they record into, and their latencies.
    final class ReaderState: Sendable {
        let phaseValue = Atomic<Int>(0)
        let latencies = Mutex<[[Double]]>([[], [], []])
        /// 0 warm-up, 1 before the purge, 2 during it, 3 stop.
        var phase: Int { self.phaseValue.load(ordering: .relaxed) }
        func enter(_ phase: Int) { self.phaseValue.store(phase, ordering: .relaxed) }
    }

    struct Layout {
        var entryPrefix: String
        var index: String
    }

    /// The purged function's entry prefix and index, read back from Redis
    /// (the benchmark's own keyspace, so KEYS is harmless here; the gateway never uses it).
    static func layout(_ redis: BlockingRedisClient) throws -> Layout {
        let entries = try redis.send(RedisCommand("KEYS", "cg:\(Self.namespace):e:*")).array?.compactMap(\.string) ?? []
        let indexes = try redis.send(RedisCommand("KEYS", "cg:{\(Self.namespace):*}:i:v1")).array?.compactMap(\.string) ?? []
        guard entries.count == 1, indexes.count == 1, let entry = entries.first, let last = entry.lastIndex(of: ":") else {
            throw BenchmarkFailure("unexpected key layout: \(entries) \(indexes)")
        }
        return Layout(entryPrefix: String(entry[...last]), index: indexes[0])
    }

    static func hex(_ index: Int) -> String {
        let digits = String(index, radix: 16)
        return String(repeating: "0", count: 64 - digits.count) + digits
    }

    /// Writes the entries and their index members, as the gateway would have,
    /// in chunks of 100,000 per script run.
    static func populate(_ redis: BlockingRedisClient, layout: Layout) throws {
        let script = """
            local expiry = ARGV[3]
            for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
                local k = string.format('%064x', i)
                redis.call('SET', ARGV[4] .. k, ARGV[5], 'PX', 3600000)
                redis.call('ZADD', KEYS[1], expiry, k)
            end
            return 1
            """
        let expiry = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        let value = String(repeating: "v", count: 73)  // the 9-byte entry header plus a 64-byte value
        for start in stride(from: 0, to: Self.entries, by: 100_000) {
            let reply = try redis.send(RedisCommand("EVAL", script, "1", layout.index, "\(start)", "\(min(start + 100_000, Self.entries) - 1)", "\(expiry)", layout.entryPrefix, value))
            guard reply.integer == 1 else { throw BenchmarkFailure("populating failed: \(reply)") }
        }
    }

    static func frame(_ body: GatewayMessage.Body) throws -> [UInt8] {
        Array(try GatewayMessage(id: 7, body).encodedFrame().readableBytesView)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
