import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

@testable import Gateway

extension IntegrationTests {
    /// Real gateway processes on the suite's Redis Cluster (3 masters, one
    /// replica each): everything a single Redis does, and resharding and a
    /// failover under load. The tests that move slots or kill a master leave
    /// the cluster healthy again (3 masters, each with a replica) before they end.
    @Suite(.serialized, .enabled(if: TestCluster.isAvailable, TestCluster.missing))
    struct GatewayRedisClusterTests {
        static let function = FunctionVersion(function: "Tests.clustered(x:)", version: "v1")

        static func arguments(namespace: String, _ extra: [String] = []) throws -> [String] {
            ["--redis", try TestCluster.url, "--namespace", namespace, "--lookup-timeout-ms", "5000", "--write-timeout-ms", "10000"] + extra
        }

        static func stat(_ connection: GatewayConnection, _ name: String) async throws -> UInt64 {
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            return stats[count: name] ?? 0
        }

        static func store(_ connection: GatewayConnection, _ function: FunctionVersion, _ index: Int) async throws {
            let store = Store(function: function, key: try ClusterWorkers.key(index), ttlMilliseconds: 600_000, computeMicroseconds: 1_000, value: ByteBuffer(string: ClusterWorkers.value(index)))
            #expect(try await connection.request(.store(store)) == .storeReply(stored: true))
        }

        static func lookup(_ connection: GatewayConnection, _ function: FunctionVersion, _ index: Int) async throws -> GatewayMessage.Body {
            try await connection.request(.lookup(Lookup(function: function, key: try ClusterWorkers.key(index))))
        }

        /// The entry keys of `namespace` on each master.
        static func entriesPerMaster(namespace: String) async throws -> [Int] {
            var counts: [Int] = []
            for master in try await TestCluster.slotMap().masters {
                counts.append(try await TestCluster.keys(on: master, matching: "cg:\(namespace):e:*").count)
            }
            return counts
        }

        @Test func lookupsStoresAndEveryInvalidationWorkAcrossTheMasters() async throws {
            let namespace = "cl\(UInt32.random(in: 0...UInt32.max))"
            let gateway = try GatewayProcess(arguments: try Self.arguments(namespace: namespace))
            defer { _ = gateway.stop() }
            let connection = try await gateway.connect()
            #expect(try await connection.request(.register(Self.function)) == .registerReply)

            for index in 0..<120 {
                #expect(try await Self.lookup(connection, Self.function, index) == .lookupReply(.miss))
                try await Self.store(connection, Self.function, index)
            }
            for index in 0..<120 {
                #expect(try await Self.lookup(connection, Self.function, index) == .lookupReply(.hit(ByteBuffer(string: ClusterWorkers.value(index)))))
            }
            // One function's entries spread over every master.
            let spread = try await Self.entriesPerMaster(namespace: namespace)
            #expect(spread.count == 3 && spread.allSatisfy { $0 > 0 } && spread.reduce(0, +) == 120, "\(spread)")

            // One entry.
            #expect(try await connection.request(.invalidate(Invalidate(function: Self.function.function, version: Self.function.version, key: try ClusterWorkers.key(7)))) == .invalidateReply(deleted: 1))
            #expect(try await Self.lookup(connection, Self.function, 7) == .lookupReply(.miss))
            #expect(try await Self.lookup(connection, Self.function, 8) == .lookupReply(.hit(ByteBuffer(string: ClusterWorkers.value(8)))))

            // The functions listing counts the version's entries over every bucket.
            guard case .functionsReply(let functions) = try await connection.request(.functions) else { throw TestFailure("no functions reply") }
            let listed = try #require(functions.first { $0.function == Self.function.function })
            #expect(listed.versions.first { $0.version == "v1" }?.entries == 119)

            // One version, with its index buckets on every master.
            #expect(try await connection.request(.invalidate(Invalidate(function: Self.function.function, version: Self.function.version))) == .invalidateReply(deleted: 119))
            #expect(try await Self.entriesPerMaster(namespace: namespace) == [0, 0, 0])
            #expect(try await Self.lookup(connection, Self.function, 8) == .lookupReply(.miss))

            // The whole function: every version.
            let v2 = FunctionVersion(function: Self.function.function, version: "v2")
            for index in 0..<10 {
                try await Self.store(connection, Self.function, index)
                try await Self.store(connection, v2, index)
            }
            #expect(try await connection.request(.invalidate(Invalidate(function: Self.function.function))) == .invalidateReply(deleted: 20))
            #expect(try await Self.entriesPerMaster(namespace: namespace) == [0, 0, 0])
            #expect(try await Self.stat(connection, "errors") == 0)
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            #expect(stats.values["backend"] == .text("redis-cluster"))
            #expect(stats.values["backendHealth"] == .text("up"))
        }

        @Test func signedValuesAndPerUIDNamespacesWorkOnTheCluster() async throws {
            let namespace = "cls\(UInt32.random(in: 0...UInt32.max))"
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cg-key-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keyPath = directory.appendingPathComponent("hmac.key").path
            let key = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() + "\n"
            #expect(FileManager.default.createFile(atPath: keyPath, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]))
            let gateway = try GatewayProcess(arguments: try Self.arguments(namespace: namespace, ["--hmac-key-file", keyPath, "--namespace-per-uid"]))
            defer { _ = gateway.stop() }
            let connection = try await gateway.connect()
            for index in 0..<20 { try await Self.store(connection, Self.function, index) }
            for index in 0..<20 {
                #expect(try await Self.lookup(connection, Self.function, index) == .lookupReply(.hit(ByteBuffer(string: ClusterWorkers.value(index)))))
            }
            // The entries live in this uid's signed namespace, spread over the masters.
            var found = 0
            for master in try await TestCluster.slotMap().masters {
                let keys = try await TestCluster.keys(on: master, matching: "cg:\(namespace)+uid\(geteuid())+hmac:e:*")
                found += keys.count
            }
            #expect(found == 20)
            // A value tampered with on its master is not served.
            let map = try await TestCluster.slotMap()
            var tampered = false
            for master in map.masters where !tampered {
                let keys = try await TestCluster.keys(on: master, matching: "cg:\(namespace)+uid\(geteuid())+hmac:e:*")
                if let first = keys.first {
                    try await TestCluster.withConnection(master) { connection in
                        _ = try await connection.send(RedisCommand("SETRANGE", first, "40", "X"), timeout: .seconds(2)).checked()
                    }
                    tampered = true
                }
            }
            #expect(tampered)
            var misses = 0
            for index in 0..<20 {
                if case .lookupReply(.hit) = try await Self.lookup(connection, Self.function, index) { continue }
                misses += 1
            }
            #expect(misses == 1)
        }

        /// Two gateways sweep at the same time for a version nobody uses any
        /// longer; its entries sit on all three masters. Exactly one purges,
        /// and every entry goes exactly once.
        @Test(arguments: ["grace", "eager"])
        func aRetiredVersionOnEveryMasterIsPurgedOnceByTwoRacingGateways(policy: String) async throws {
            let namespace = "clp\(UInt32.random(in: 0...UInt32.max))"
            let extra = ["--purge", policy, "--purge-grace-ms", "0", "--sweep-interval-ms", "50", "--lease-ms", "60000"]
            let a = try GatewayProcess(arguments: try Self.arguments(namespace: namespace, extra))
            defer { _ = a.stop() }
            let b = try GatewayProcess(arguments: try Self.arguments(namespace: namespace, extra))
            defer { _ = b.stop() }
            let connectionA = try await a.connect(name: "A")
            let connectionB = try await b.connect(name: "B")
            let v2 = FunctionVersion(function: Self.function.function, version: "v2")

            // A worker uses v1 and stores 300 entries through A.
            let worker = try await a.connect(name: "worker")
            #expect(try await worker.request(.register(Self.function)) == .registerReply)
            let count = 300
            for index in 0..<count { try await Self.store(worker, Self.function, index) }
            let spread = try await Self.entriesPerMaster(namespace: namespace)
            #expect(spread.allSatisfy { $0 > 0 } && spread.reduce(0, +) == count, "\(spread)")

            // v1 retires: under eager, v2's first registrations on both
            // gateways at once; under grace, its last worker leaves and both
            // gateways' sweeps race for it.
            if policy == "eager" {
                async let registeredA = connectionA.request(.register(v2))
                async let registeredB = connectionB.request(.register(v2))
                #expect(try await registeredA == .registerReply)
                #expect(try await registeredB == .registerReply)
            } else {
                #expect(try await connectionA.request(.register(v2)) == .registerReply)
                #expect(try await connectionB.request(.register(v2)) == .registerReply)
            }
            await worker.close()

            let purged = try await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
                try await Self.stat(connectionA, "purgedEntries") + Self.stat(connectionB, "purgedEntries") >= UInt64(count)
            }
            #expect(purged)
            // Let any second purge show itself before counting.
            try await Task.sleep(for: .milliseconds(500))
            #expect(try await Self.stat(connectionA, "purges") + Self.stat(connectionB, "purges") == 1)
            #expect(try await Self.stat(connectionA, "purgedEntries") + Self.stat(connectionB, "purgedEntries") == UInt64(count))
            #expect(try await Self.entriesPerMaster(namespace: namespace) == [0, 0, 0])
            // No index or captured index is left behind on any master.
            for master in try await TestCluster.slotMap().masters {
                #expect(try await TestCluster.keys(on: master, matching: "cg:\(namespace):[ip]:*v1*").isEmpty)
            }
        }

        /// Workers keep calling while the slots of their keys move from one
        /// master to another (CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE key
        /// by key, SETSLOT NODE): no error, no wrong value.
        @Test func slotsMovingUnderLoadCauseNoErrorAndNoWrongValue() async throws {
            try await TestCluster.waitUntilHealthy()
            let namespace = "clr\(UInt32.random(in: 0...UInt32.max))"
            let gateway = try GatewayProcess(arguments: try Self.arguments(namespace: namespace, ["--lookup-timeout-ms", "50"]))
            defer { _ = gateway.stop() }
            let keyCount = 200
            let workers = ClusterWorkers(function: Self.function, keyCount: keyCount)
            let setup = try await gateway.connect()
            for index in 0..<keyCount { try await Self.store(setup, Self.function, index) }

            // The slots of the workers' keys, and who serves them.
            let map = try await TestCluster.slotMap()
            let layout = RedisKeyLayout.cluster
            let functionID = RedisStore.functionID(Self.function.function)
            var slotsByMaster: [RedisURL.Endpoint: Set<ClusterSlot>] = [:]
            for index in 0..<keyCount {
                let hex = try ClusterWorkers.key(index).digest.hexString
                let slot = ClusterSlot(key: layout.entryKey(namespace: namespace, functionID: functionID, version: Self.function.version, hex: hex))
                slotsByMaster[map.master(for: slot)!, default: []].insert(slot)
            }
            let source = try #require(slotsByMaster.max { $0.value.count < $1.value.count }?.key)
            let destination = try #require(map.masters.first { $0 != source })
            let slots = slotsByMaster[source]!.sorted()
            let sourceID = try await TestCluster.nodeID(source)
            let destinationID = try await TestCluster.nodeID(destination)

            let connections = try await (0..<4).asyncMap { try await gateway.connect(name: "worker-\($0)") }
            let running = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (offset, connection) in connections.enumerated() {
                        group.addTask { await workers.run(connection, offset: offset * 50) }
                    }
                }
            }
            // Load before, during and after the move.
            _ = await RedisTestSupport.waitUntil(timeout: .seconds(30)) { workers.snapshot.hits >= 200 }
            let before = workers.snapshot
            let sourceConnection = try await TestCluster.connect(source)
            let destinationConnection = try await TestCluster.connect(destination)
            guard case .tcp(let destinationHost, let destinationPort) = destination else { throw TestFailure("not TCP") }
            for slot in slots {
                _ = try await destinationConnection.send(RedisCommand("CLUSTER", "SETSLOT", "\(slot.value)", "IMPORTING", sourceID), timeout: .seconds(5)).checked()
                _ = try await sourceConnection.send(RedisCommand("CLUSTER", "SETSLOT", "\(slot.value)", "MIGRATING", destinationID), timeout: .seconds(5)).checked()
                // Key by key, so that workers meet the slot half moved (ASK).
                while true {
                    let keys = try await sourceConnection.send(RedisCommand("CLUSTER", "GETKEYSINSLOT", "\(slot.value)", "1"), timeout: .seconds(5)).checked().array?.compactMap(\.string) ?? []
                    guard let key = keys.first else { break }
                    _ = try await sourceConnection.send(RedisCommand("MIGRATE", destinationHost, "\(destinationPort)", key, "0", "5000"), timeout: .seconds(10)).checked()
                    try await Task.sleep(for: .milliseconds(2))
                }
                _ = try await destinationConnection.send(RedisCommand("CLUSTER", "SETSLOT", "\(slot.value)", "NODE", destinationID), timeout: .seconds(5)).checked()
                _ = try await sourceConnection.send(RedisCommand("CLUSTER", "SETSLOT", "\(slot.value)", "NODE", destinationID), timeout: .seconds(5)).checked()
            }
            await sourceConnection.close()
            await destinationConnection.close()
            let during = workers.snapshot
            // After the move every key is served again from its new master.
            let settled = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                let check = try await gateway.connect(name: "check")
                defer { Task { await check.close() } }
                for index in 0..<keyCount {
                    guard case .lookupReply(.hit) = try await Self.lookup(check, Self.function, index) else { return false }
                }
                return true
            }
            workers.stop()
            await running.value
            let after = workers.snapshot
            print("cluster resharding: \(slots.count) slots moved under load; lookups during the move: \(during.hits + during.misses + during.missesDoNotStore - before.hits - before.misses - before.missesDoNotStore), answered \"miss, do not store\": \(during.missesDoNotStore - before.missesDoNotStore); in all \(after.hits) hits, \(after.misses) misses, \(after.missesDoNotStore) miss-do-not-store")
            #expect(settled, "every key is a hit again after the move")
            #expect(after.errors.isEmpty, "\(after.errors.prefix(5))")
            #expect(after.wrongValues.isEmpty, "\(after.wrongValues.prefix(5))")
            #expect(try await Self.stat(setup, "errors") == 0)
            // The slots are where they were moved; the cluster stays healthy.
            let moved = try await TestCluster.slotMap()
            #expect(slots.allSatisfy { moved.master(for: $0) == destination })
            try await TestCluster.waitUntilHealthy()
        }

        /// A master is killed with SIGKILL while workers call: once its replica
        /// is promoted, the gateway serves its keys' hits again within the
        /// cluster's node timeout (1 s) plus 1 s. No error, no wrong value.
        /// The killed node is started again and rejoins as a replica.
        @Test func aMasterKilledUnderLoadIsFollowedToItsPromotedReplica() async throws {
            try await TestCluster.waitUntilHealthy()
            let namespace = "clf\(UInt32.random(in: 0...UInt32.max))"
            let gateway = try GatewayProcess(arguments: try Self.arguments(namespace: namespace, ["--lookup-timeout-ms", "50"]))
            defer { _ = gateway.stop() }
            let keyCount = 120
            let workers = ClusterWorkers(function: Self.function, keyCount: keyCount)
            let setup = try await gateway.connect()
            for index in 0..<keyCount { try await Self.store(setup, Self.function, index) }

            let map = try await TestCluster.slotMap()
            let layout = RedisKeyLayout.cluster
            let functionID = RedisStore.functionID(Self.function.function)
            // The victim is the master with the most of the keys.
            var keysByMaster: [RedisURL.Endpoint: [Int]] = [:]
            for index in 0..<keyCount {
                let hex = try ClusterWorkers.key(index).digest.hexString
                let slot = ClusterSlot(key: layout.entryKey(namespace: namespace, functionID: functionID, version: Self.function.version, hex: hex))
                keysByMaster[map.master(for: slot)!, default: []].append(index)
            }
            let (victim, victimKeys) = try #require(keysByMaster.max { $0.value.count < $1.value.count })
            // Its replica has every entry before the kill.
            let replicated = try await TestCluster.withConnection(victim) { try await $0.send(RedisCommand("WAIT", "1", "5000"), timeout: .seconds(10)).checked().integer }
            #expect(replicated == 1)
            let replica = try await TestCluster.withConnection(victim) { connection -> RedisURL.Endpoint in
                let info = try await connection.send(RedisCommand("INFO", "replication"), timeout: .seconds(2)).string ?? ""
                guard let line = info.split(separator: "\r\n").first(where: { $0.hasPrefix("slave0:") }),
                    let portField = line.split(separator: ",").first(where: { $0.hasPrefix("port=") }),
                    let port = Int(portField.dropFirst(5))
                else { throw TestFailure("no replica in \(info)") }
                return .tcp(host: "127.0.0.1", port: port)
            }

            let connections = try await (0..<4).asyncMap { try await gateway.connect(name: "worker-\($0)") }
            let running = Task {
                await withTaskGroup(of: Void.self) { group in
                    for (offset, connection) in connections.enumerated() {
                        group.addTask { await workers.run(connection, offset: offset * 30) }
                    }
                }
            }
            _ = await RedisTestSupport.waitUntil(timeout: .seconds(30)) { workers.snapshot.hits >= 200 }

            let directory = try TestCluster.directory
            let victimPort = TestCluster.port(victim)
            let pidText = try String(contentsOfFile: "\(directory)/node-\(victimPort).pid", encoding: .utf8)
            let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
            #expect(kill(pid, SIGKILL) == 0)
            let killedAt = ContinuousClock.now

            // The promotion, as the replica itself reports it.
            let promoted = await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
                let role = try? await TestCluster.withConnection(replica) { try await $0.send(RedisCommand("ROLE"), timeout: .seconds(1)).array?.first?.string }
                return role == "master"
            }
            let promotedAt = ContinuousClock.now
            try #require(promoted, "the replica was not promoted")
            // The gateway serves the victim's keys again.
            let checker = try await gateway.connect(name: "checker")
            var servedAt: ContinuousClock.Instant? = nil
            let served = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                for index in victimKeys {
                    guard case .lookupReply(.hit(let bytes)) = try await Self.lookup(checker, Self.function, index) else { return false }
                    #expect(String(buffer: bytes) == ClusterWorkers.value(index))
                }
                servedAt = ContinuousClock.now
                return true
            }
            workers.stop()
            await running.value
            let counts = workers.snapshot
            let delay = servedAt.map { $0 - promotedAt }
            print("cluster failover: promoted \(promotedAt - killedAt) after the kill; hits on the failed master's keys again \(delay.map { "\($0)" } ?? "never") after the promotion; \(counts.missesDoNotStore) lookups answered \"miss, do not store\"")
            #expect(served)
            #expect(delay.map { $0 <= .seconds(2) } ?? false, "hits again within the node timeout (1 s) plus 1 s of the promotion")
            #expect(counts.errors.isEmpty, "\(counts.errors.prefix(5))")
            #expect(counts.wrongValues.isEmpty, "\(counts.wrongValues.prefix(5))")
            #expect(try await Self.stat(setup, "errors") == 0)

            // Bring the node back: it rejoins as the new master's replica.
            #expect(try TestCluster.run("\(directory)/start-\(victimPort).sh") == 0)
            try await TestCluster.waitUntilHealthy()
        }
    }
}

extension Sequence {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
