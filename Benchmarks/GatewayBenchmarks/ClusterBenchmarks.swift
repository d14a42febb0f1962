import Foundation
import Gateway
import GatewayProtocol
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Redis Cluster against one Redis (issue 17), on the cluster that
/// scripts/with-redis.sh starts (3 masters, one replica each):
///
/// - a Redis-backed hit (near-cache off, so every hit is gateway then Redis)
///   through a gateway on the cluster, against the same through a gateway on
///   the single redis-server over TCP loopback (the cluster is on TCP too);
///   alternating batches, everything (both gateways, every redis-server, this
///   client) on one CPU;
/// - a purge of `BENCH_CLUSTER_PURGE_ENTRIES` (default 1,000,000) entries spread
///   over the 3 masters (the gateway's eager retirement, from the registration
///   that retires the version until its last bucket is gone), against a raw
///   pipelined UNLINK of the same keys, master by master, batches of 500,
///   20 batches per write, everything on the same one CPU. No readers run
///   meanwhile (the `purge` group measures readers on one server).
enum ClusterBenchmarks {
    static let namespace = "benchcluster"

    static func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let bench = try BenchEnvironment.current()
        guard let seeds = environment["CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS"], let clusterDirectory = environment["CACHE_GATEWAY_TEST_REDIS_CLUSTER_DIR"] else {
            throw BenchmarkFailure("no test cluster: run through scripts/bench.sh (scripts/with-redis.sh starts it)")
        }
        guard let tcpPort = environment["CACHE_GATEWAY_TEST_REDIS_TCP_PORT"] else {
            throw BenchmarkFailure("the single redis-server has no TCP port: run through scripts/bench.sh")
        }
        let cpu = bench.clientCPU
        let nodePIDs = try FileManager.default.contentsOfDirectory(atPath: clusterDirectory)
            .filter { $0.hasPrefix("node-") && $0.hasSuffix(".pid") }
            .compactMap { Int32(try String(contentsOfFile: "\(clusterDirectory)/\($0)", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)) }
        print("== Redis Cluster (3 masters + 3 replicas) against one Redis (release build) ==")
        try await Self.hits(seeds: seeds, tcpPort: tcpPort, redisPID: bench.redisPID, nodePIDs: nodePIDs, cpu: cpu)
        try await Self.purge(seeds: seeds, nodePIDs: nodePIDs, cpu: cpu, serverCPU: cpu, entries: environment["BENCH_CLUSTER_PURGE_ENTRIES"].flatMap(Int.init) ?? 1_000_000)
    }

    // MARK: Hits

    static func hits(seeds: String, tcpPort: String, redisPID: Int32, nodePIDs: [Int32], cpu: Int) async throws {
        let common = ["--namespace", Self.namespace, "--near-cache-size", "0", "--lookup-timeout-ms", "1000"]
        let single = try GatewayUnderTest(arguments: ["--redis", "redis://127.0.0.1:\(tcpPort)"] + common)
        defer { single.stop() }
        let cluster = try GatewayUnderTest(arguments: ["--redis", "redis+cluster://\(seeds)"] + common)
        defer { cluster.stop() }
        // BENCH_BASELINE_GATEWAY: another build's cache-gateway, measured on
        // the same single Redis, so that a change to the single-server path
        // is compared with the build before it.
        let other = try ProcessInfo.processInfo.environment["BENCH_BASELINE_GATEWAY"].map {
            try GatewayUnderTest(arguments: ["--redis", "redis://127.0.0.1:\(tcpPort)"] + common, binary: URL(fileURLWithPath: $0))
        }
        defer { other?.stop() }
        for pid in [redisPID, single.pid, cluster.pid] + (other.map { [$0.pid] } ?? []) + nodePIDs { try pin(pid: pid, cpus: "\(cpu)") }
        pinProcess(toCPU: cpu)
        print("every redis-server, both gateways and this client on CPU \(cpu)")

        let function = FunctionVersion(function: "Bench.clusterHit(x:)", version: "v1")
        let key = try CacheKey(hashing: 1)
        let value = ByteBuffer(bytes: (0..<1_024).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        let storeFrame = try PurgeBenchmarks.frame(.store(Store(function: function, key: key, ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: value)))
        let lookupFrame = try PurgeBenchmarks.frame(.lookup(Lookup(function: function, key: key)))
        var clients: [BlockingGatewayClient] = []
        for gateway in [single, cluster] + (other.map { [$0] } ?? []) {
            let client = try BlockingGatewayClient(socketPath: gateway.socketPath)
            // The gateway may still be reading the topology: store until a lookup hits.
            let deadline = ContinuousClock.now + .seconds(15)
            var hitLength = 0
            repeat {
                _ = try client.roundTrip(storeFrame)
                hitLength = try client.roundTrip(lookupFrame)
            } while hitLength < 1_024 && ContinuousClock.now < deadline
            guard hitLength >= 1_024 else { throw BenchmarkFailure("the gateway at \(gateway.socketPath) does not serve hits") }
            clients.append(client)
        }
        let (singleClient, clusterClient) = (clients[0], clients[1])
        var operations: [(name: String, operation: () throws -> Void)] = [
            (name: "baseline: Redis-backed hit, one Redis (TCP)", operation: { blackHole(try singleClient.roundTrip(lookupFrame)) }),
            (name: "Redis-backed hit, Redis Cluster", operation: { blackHole(try clusterClient.roundTrip(lookupFrame)) }),
        ]
        if clients.count == 3 {
            let otherClient = clients[2]
            operations.append((name: "Redis-backed hit, one Redis (TCP), BENCH_BASELINE_GATEWAY", operation: { blackHole(try otherClient.roundTrip(lookupFrame)) }))
        }
        let measured = try Bench.measureInterleaved(operations)
        Bench.report(measured[0])
        Bench.report(measured[1], against: measured[0])
        if measured.count == 3 {
            Bench.report(measured[2])
            Bench.report(Measurement(name: "this build: Redis-backed hit, one Redis (TCP)", nanosecondsPerOperation: measured[0].nanosecondsPerOperation, bytesPerOperation: 0), against: measured[2])
        }
    }

    // MARK: Purge

    static func purge(seeds: String, nodePIDs: [Int32], cpu: Int, serverCPU: Int, entries: Int) async throws {
        let gateway = try GatewayUnderTest(arguments: [
            "--redis", "redis+cluster://\(seeds)", "--namespace", Self.namespace, "--purge", "eager",
            "--near-cache-size", "0", "--lookup-timeout-ms", "1000", "--write-timeout-ms", "30000",
        ])
        defer { gateway.stop() }
        for pid in nodePIDs { try pin(pid: pid, cpus: "\(serverCPU)") }
        try pin(pid: gateway.pid, cpus: "\(cpu)")
        pinProcess(toCPU: cpu)
        print("== Purge of \(entries) entries over 3 masters: every redis-server on CPU \(serverCPU); the gateway and this client on CPU \(cpu) ==")

        let clusterURL = try RedisClusterURL("redis+cluster://\(seeds)")
        let group = MultiThreadedEventLoopGroup.singleton
        let map = try await Self.slotMap(clusterURL, group: group)
        var connections: [RedisURL.Endpoint: RedisConnection] = [:]
        for master in map.masters {
            connections[master] = try await RedisConnection.connect(to: clusterURL.nodeURL(master), on: group.next(), logger: .init(label: "bench"))
        }
        defer { for connection in connections.values { connection.close().whenComplete { _ in } } }
        for connection in connections.values { _ = try await connection.send(RedisCommand("FLUSHALL"), timeout: .seconds(60)) }

        // One real entry, stored through the gateway, registers v1.
        let purged = FunctionVersion(function: "Bench.clusterPurged(x:)", version: "v1")
        let admin = try BlockingGatewayClient(socketPath: gateway.socketPath)
        try admin.roundTrip(try PurgeBenchmarks.frame(.register(purged)))
        // The function's hash, read back from the entry's key (the
        // benchmark's own keyspace, so KEYS is harmless here).
        let storeFrame = try PurgeBenchmarks.frame(.store(Store(function: purged, key: try CacheKey(hashing: 0), ttlMilliseconds: 3_600_000, computeMicroseconds: 1, value: ByteBuffer(repeating: 7, count: 64))))
        let deadline = ContinuousClock.now + .seconds(15)
        var stored: [String] = []
        while stored.isEmpty {
            guard ContinuousClock.now < deadline else { throw BenchmarkFailure("the gateway does not store") }
            _ = try admin.roundTrip(storeFrame)
            for connection in connections.values {
                stored += try await connection.send(RedisCommand("KEYS", "cg:\(Self.namespace):e:*"), timeout: .seconds(5)).array?.compactMap(\.string) ?? []
            }
        }
        // cg:<ns>:e:{<F>:v1:<b>}:<key>
        guard let open = stored[0].firstIndex(of: "{"), let colon = stored[0][open...].firstIndex(of: ":") else {
            throw BenchmarkFailure("unexpected key layout: \(stored[0])")
        }
        let functionID = String(stored[0][stored[0].index(after: open)..<colon])
        print("entry keys: \(stored[0])")

        // The layout of each bucket: its index, its entry prefix, its master.
        let buckets = (0..<16).map { bucket -> (index: String, prefix: String, master: RedisURL.Endpoint) in
            let hexDigit = String(bucket, radix: 16)
            let index = "cg:\(Self.namespace):i:{\(functionID):v1:\(hexDigit)}"
            return (index, "cg:\(Self.namespace):e:{\(functionID):v1:\(hexDigit)}:", map.master(for: ClusterSlot(key: index))!)
        }
        let perBucket = entries / 16

        // Baseline: the same keys by raw pipelined UNLINK, master by master.
        try await Self.populate(buckets: buckets, perBucket: perBucket, connections: connections)
        let rawStart = ContinuousClock.now
        var rawDeleted = 0
        for master in map.masters {
            let connection = connections[master]!
            for bucket in buckets where bucket.master == master {
                var start = 0
                while start < perBucket {
                    var commands: [RedisCommand] = []
                    for batchStart in stride(from: start, to: min(start + 20 * 500, perBucket), by: 500) {
                        let keys = (batchStart..<min(batchStart + 500, perBucket)).map { ByteBuffer(string: bucket.prefix + Self.hex(bucket: bucket.index, $0)) }
                        commands.append(RedisCommand("UNLINK", arguments: keys))
                    }
                    for reply in try await connection.pipeline(commands, timeout: .seconds(60)) { rawDeleted += Int(reply.integer ?? 0) }
                    start += 20 * 500
                }
            }
        }
        let rawTime = ContinuousClock.now - rawStart
        guard rawDeleted == perBucket * 16 else { throw BenchmarkFailure("the raw UNLINK deleted \(rawDeleted) of \(perBucket * 16)") }
        for bucket in buckets { _ = try await connections[bucket.master]!.send(RedisCommand("UNLINK", bucket.index), timeout: .seconds(10)) }

        // Then the gateway's purge: v2 registers, v1 retires.
        try await Self.populate(buckets: buckets, perBucket: perBucket, connections: connections)
        let purgeStart = ContinuousClock.now
        try admin.roundTrip(try PurgeBenchmarks.frame(.register(FunctionVersion(function: purged.function, version: "v2"))))
        // Done when no bucket has an index or a captured index left.
        while true {
            var left = 0
            for bucket in buckets {
                let connection = connections[bucket.master]!
                let captured = bucket.index.replacingOccurrences(of: ":i:{", with: ":p:{") + ":1"
                left += Int(try await connection.send(RedisCommand("EXISTS", bucket.index, captured), timeout: .seconds(10)).integer ?? 1)
            }
            if left == 0 { break }
            if ContinuousClock.now - purgeStart > .seconds(600) { throw BenchmarkFailure("the purge did not finish within 10 minutes") }
            try await Task.sleep(for: .milliseconds(1))
        }
        let purgeTime = ContinuousClock.now - purgeStart
        for bucket in buckets {
            let last = bucket.prefix + Self.hex(bucket: bucket.index, perBucket - 1)
            guard try await connections[bucket.master]!.send(RedisCommand("EXISTS", last), timeout: .seconds(10)).integer == 0 else {
                throw BenchmarkFailure("the purge left entries behind")
            }
        }
        let raw = PurgeBenchmarks.seconds(rawTime)
        let purge = PurgeBenchmarks.seconds(purgeTime)
        let rawName = "baseline: raw pipelined UNLINK, master by master, 500 keys per command"
        let purgeName = "gateway purge over 3 masters (eager retirement of v1)"
        print(String(format: "%-72@ %8.3f s  (%.0f keys/s)", rawName as NSString, raw, Double(perBucket * 16) / raw))
        print(String(format: "%-72@ %8.3f s  (%.0f keys/s)  ratio %.2f× baseline", purgeName as NSString, purge, Double(perBucket * 16) / purge, purge / raw))
        Bench.record(rawName, raw, unit: "s")
        Bench.record(purgeName, purge, unit: "s", against: (rawName, raw))
    }

    /// The key of entry `index` of the bucket whose index key is `bucketIndex`:
    /// 64 hex digits starting with the bucket's digit.
    static func hex(bucket bucketIndex: String, _ index: Int) -> String {
        let digit = bucketIndex.dropLast().last!
        let digits = String(index, radix: 16)
        return String(digit) + String(repeating: "0", count: 63 - digits.count) + digits
    }

    /// Writes every bucket's entries and index members, as the gateway would
    /// have, by a script on the bucket's master (the keys share the index's slot).
    static func populate(buckets: [(index: String, prefix: String, master: RedisURL.Endpoint)], perBucket: Int, connections: [RedisURL.Endpoint: RedisConnection]) async throws {
        let script = """
            local expiry = ARGV[3]
            for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do
                local k = ARGV[6] .. string.format('%063x', i)
                redis.call('SET', ARGV[4] .. k, ARGV[5], 'PX', 3600000)
                redis.call('ZADD', KEYS[1], expiry, k)
            end
            return 1
            """
        let expiry = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        let value = String(repeating: "v", count: 81)  // the 17-byte entry header plus a 64-byte value
        for bucket in buckets {
            let digit = String(bucket.index.dropLast().last!)
            // Short scripts: a node busy for longer than the cluster's node
            // timeout would be taken for failed.
            for start in stride(from: 0, to: perBucket, by: 2_000) {
                let reply = try await connections[bucket.master]!.send(
                    RedisCommand("EVAL", script, "1", bucket.index, "\(start)", "\(min(start + 2_000, perBucket) - 1)", "\(expiry)", bucket.prefix, value, digit),
                    timeout: .seconds(120)
                )
                guard reply.integer == 1 else { throw BenchmarkFailure("populating failed: \(reply)") }
            }
        }
    }

    static func slotMap(_ url: RedisClusterURL, group: any EventLoopGroup) async throws -> ClusterSlotMap {
        let connection = try await RedisConnection.connect(to: url.seeds[0], on: group.next(), logger: .init(label: "bench"))
        defer { connection.close().whenComplete { _ in } }
        return try ClusterSlotMap.parseShards(try await connection.send(RedisCommand("CLUSTER", "SHARDS"), timeout: .seconds(5)).checked(), defaultHost: "127.0.0.1")
    }
}
