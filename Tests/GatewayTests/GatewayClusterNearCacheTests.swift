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
    /// The near-cache on the suite's Redis Cluster, with two real gateway
    /// processes (A and B): B serves what it read from its near-cache, every
    /// change to an entry on any of the three masters reaches it, and the loss
    /// of its invalidation listener on one master flushes it.
    ///
    /// As in `GatewayNearCacheTests`, each change is followed by waiting for B
    /// to hear of it (a counter grows), then by B's next lookup, which must not
    /// return the old value; the waiting is bounded only by a generous timeout.
    @Suite(.serialized, .enabled(if: TestCluster.isAvailable, TestCluster.missing))
    struct GatewayClusterNearCacheTests {
        static let probe = NearCacheProbe(function: Self.function, keyPrefix: "cluster-near")
        static let function = FunctionVersion(function: "Tests.clusterNear(x:)", version: "v1")

        /// Two gateways on the cluster, with the near-cache on (the default).
        final class Pair: GatewayPairConnections {
            let namespace = "cln\(UInt32.random(in: 0...UInt32.max))"
            let a: GatewayProcess
            let b: GatewayProcess
            let connectionA: GatewayConnection
            let connectionB: GatewayConnection

            init() async throws {
                try await TestCluster.waitUntilHealthy()
                let arguments = ["--redis", try TestCluster.url, "--namespace", self.namespace, "--lookup-timeout-ms", "5000", "--write-timeout-ms", "10000"]
                self.a = try GatewayProcess(arguments: arguments)
                self.b = try GatewayProcess(arguments: arguments)
                self.connectionA = try await self.a.connect(name: "A")
                self.connectionB = try await self.b.connect(name: "B")
                try await NearCacheProbe.waitUntilFilling(self.connectionA, timeout: .seconds(60))
                try await NearCacheProbe.waitUntilFilling(self.connectionB, timeout: .seconds(60))
            }

            func stop() {
                _ = self.a.stop()
                _ = self.b.stop()
            }

            /// The Redis key of entry `index`, and the master that holds it.
            func entry(_ index: Int, in map: ClusterSlotMap) throws -> (key: String, master: RedisURL.Endpoint) {
                let key = RedisKeyLayout.cluster.entryKey(
                    namespace: self.namespace,
                    functionID: RedisStore.functionID(GatewayClusterNearCacheTests.function.function),
                    version: GatewayClusterNearCacheTests.function.version,
                    hex: try GatewayClusterNearCacheTests.probe.key(index).digest.hexString
                )
                guard let master = map.master(for: ClusterSlot(key: key)) else { throw TestFailure("no master for \(key)") }
                return (key, master)
            }

            /// For each master, `count` entry indexes whose keys it holds.
            func indexesPerMaster(_ map: ClusterSlotMap, count: Int) throws -> [RedisURL.Endpoint: [Int]] {
                var found: [RedisURL.Endpoint: [Int]] = [:]
                var index = 0
                while found.count < map.masters.count || found.values.contains(where: { $0.count < count }) {
                    let master = try self.entry(index, in: map).master
                    if found[master, default: []].count < count { found[master, default: []].append(index) }
                    index += 1
                    guard index < 10_000 else { throw TestFailure("no entries on every master: \(found)") }
                }
                return found
            }
        }

        /// B's listener client id on each master (`nearCacheTrackingClientIDs`).
        static func listenerIDs(_ connection: GatewayConnection) async throws -> [String: Int64] {
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            guard case .text(let text)? = stats.values["nearCacheTrackingClientIDs"] else { return [:] }
            var ids: [String: Int64] = [:]
            for pair in text.split(separator: ",") {
                let parts = pair.split(separator: "=")
                if parts.count == 2, let id = Int64(parts[1]) { ids[String(parts[0])] = id }
            }
            return ids
        }

        @Test func bServesFromItsNearCacheAndHearsOfEveryChangeOnEachMaster() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            let map = try await TestCluster.slotMap()
            let indexes = try pair.indexesPerMaster(map, count: 3)
            #expect(indexes.count == 3)
            // B has a listener on every master.
            #expect(try await Self.listenerIDs(pair.connectionB).count == 3)

            for (master, onMaster) in indexes.sorted(by: { $0.key.description < $1.key.description }) {
                // invalidate through A.
                try await Self.probe.holdInB(pair, onMaster[0], "one")
                try await Self.probe.change(pair) {
                    let reply = try await pair.connectionA.request(.invalidate(Invalidate(function: Self.function.function, version: Self.function.version, key: try Self.probe.key(onMaster[0]))))
                    #expect(reply == .invalidateReply(deleted: 1))
                }
                #expect(try await Self.probe.lookup(pair.connectionB, onMaster[0]) == .miss, "on \(master)")

                // A new value stored through A under the same key: B returns the new bytes.
                try await Self.probe.holdInB(pair, onMaster[1], "old")
                try await Self.probe.change(pair) { try await Self.probe.store(pair.connectionA, onMaster[1], "new") }
                #expect(try await Self.probe.lookup(pair.connectionB, onMaster[1]) == .hit(ByteBuffer(string: "new")), "on \(master)")

                // DEL on the owning master, as typed into redis-cli.
                try await Self.probe.holdInB(pair, onMaster[2], "three")
                let (entryKey, owner) = try pair.entry(onMaster[2], in: map)
                #expect(owner == master)
                try await Self.probe.change(pair) {
                    let deleted = try await TestCluster.withConnection(owner) { try await $0.send(RedisCommand("DEL", entryKey), timeout: .seconds(5)).checked().integer }
                    #expect(deleted == 1)
                }
                #expect(try await Self.probe.lookup(pair.connectionB, onMaster[2]) == .miss, "on \(master)")
            }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "errors") == 0)
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheFilling") == 1)
        }

        @Test func killingBsListenerOnOneMasterFlushesBsNearCache() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            let map = try await TestCluster.slotMap()
            let indexes = try pair.indexesPerMaster(map, count: 2)
            let masters = map.masters.sorted { $0.description < $1.description }
            let victim = masters[0]
            // B holds an entry of each master.
            for master in masters { try await Self.probe.holdInB(pair, indexes[master]![0], "held \(master)") }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") == 3)

            let before = try await Self.listenerIDs(pair.connectionB)
            let listener = try #require(before[victim.description], "B's listener on \(victim) in \(before)")
            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                let killed = try await TestCluster.withConnection(victim) {
                    try await $0.send(RedisCommand("CLIENT", "KILL", "ID", "\(listener)"), timeout: .seconds(5)).checked().integer
                }
                #expect(killed == 1)
            }
            // Everything went, the entries of the other masters too: none is
            // served from the near-cache.
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") == 0)
            let nearHits = try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits")
            for master in masters {
                #expect(try await Self.probe.lookup(pair.connectionB, indexes[master]![0]) == .hit(ByteBuffer(string: "held \(master)")))
            }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") == nearHits)

            // B's listener comes back on that master (a new client), and the
            // near-cache fills again.
            try await NearCacheProbe.waitUntilFilling(pair.connectionB, timeout: .seconds(60))
            let after = try await Self.listenerIDs(pair.connectionB)
            #expect(after.count == 3)
            #expect(after[victim.description] != nil && after[victim.description] != listener)
            // (A key B has not read: an overwrite's invalidation could still be on its way.)
            try await Self.probe.holdInB(pair, indexes[victim]![1], "again")
        }

        /// A master is killed with SIGKILL while B holds entries of every
        /// master: B flushes at once (its listener there is lost) and fills
        /// again only once the promoted replica tracks; values A stores
        /// after the failover, and an overwrite after B read them from the
        /// new master, reach B. The killed node is started again and rejoins
        /// as a replica, leaving the cluster as the other tests expect it.
        @Test func aFailoverLeavesNothingStaleInBsNearCache() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            let map = try await TestCluster.slotMap()
            let indexes = try pair.indexesPerMaster(map, count: 2)
            let masters = map.masters.sorted { $0.description < $1.description }
            let victim = masters[0]
            for master in masters { try await Self.probe.holdInB(pair, indexes[master]![0], "before") }
            let replicated = try await TestCluster.withConnection(victim) { try await $0.send(RedisCommand("WAIT", "1", "5000"), timeout: .seconds(10)).checked().integer }
            #expect(replicated == 1)
            let replica = try await Self.replica(of: victim)

            let directory = try TestCluster.directory
            let victimPort = TestCluster.port(victim)
            let pidText = try String(contentsOfFile: "\(directory)/node-\(victimPort).pid", encoding: .utf8)
            let pid = try #require(Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)))
            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                #expect(kill(pid, SIGKILL) == 0)
            }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") == 0)

            let promoted = await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
                let role = try? await TestCluster.withConnection(replica) { try await $0.send(RedisCommand("ROLE"), timeout: .seconds(1)).array?.first?.string }
                return role == "master"
            }
            try #require(promoted, "the replica was not promoted")
            // A stores new values for every master's key once its store is taken.
            for master in masters {
                let index = indexes[master]![0]
                let stored = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                    let store = Store(function: Self.function, key: try Self.probe.key(index), ttlMilliseconds: 600_000, computeMicroseconds: 1_000, value: ByteBuffer(string: "after"))
                    return try await pair.connectionA.request(.store(store)) == .storeReply(stored: true)
                }
                #expect(stored, "A's store on \(master)'s slot")
            }
            // B fills again once every master, the promoted one included, tracks to it.
            try await NearCacheProbe.waitUntilFilling(pair.connectionB, timeout: .seconds(60))
            let ids = try await Self.listenerIDs(pair.connectionB)
            #expect(ids[replica.description] != nil, "B listens on the promoted master: \(ids)")
            #expect(ids[victim.description] == nil, "and no longer on the killed one: \(ids)")
            for master in masters {
                let index = indexes[master]![0]
                let served = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                    try await Self.probe.lookup(pair.connectionB, index) != .miss
                }
                #expect(served)
                #expect(try await Self.probe.lookup(pair.connectionB, index) == .hit(ByteBuffer(string: "after")), "nothing stale on \(master)")
            }
            // The promoted master's invalidations reach B.
            let onNewMaster = indexes[victim]![1]
            try await Self.probe.holdInB(pair, onNewMaster, "old")
            try await Self.probe.change(pair) { try await Self.probe.store(pair.connectionA, onNewMaster, "new") }
            #expect(try await Self.probe.lookup(pair.connectionB, onNewMaster) == .hit(ByteBuffer(string: "new")))

            // Bring the node back: it rejoins as the new master's replica.
            #expect(try TestCluster.run("\(directory)/start-\(victimPort).sh") == 0)
            try await TestCluster.waitUntilHealthy()
        }

        /// A manual failover (`CLUSTER FAILOVER` on a replica; the old master
        /// stays up): the slots change master and the old master's pool is
        /// retired, either of which flushes B; after it, A's new values and
        /// the new master's invalidations reach B. A second manual failover
        /// gives the slots back.
        @Test func aManualFailoverFlushesBAndLeavesNothingStale() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            let map = try await TestCluster.slotMap()
            let indexes = try pair.indexesPerMaster(map, count: 3)
            let master = map.masters.sorted { $0.description < $1.description }[1]
            let onMaster = indexes[master]!
            try await Self.probe.waitUntilHeldInB(pair, onMaster[0], "before")
            let replica = try await Self.replica(of: master)

            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                try await Self.failover(to: replica)
                // B learns of the new map from its next read there (a MOVED) or its periodic read of the map.
                _ = try await Self.probe.lookup(pair.connectionB, onMaster[1])
            }
            try await Self.probe.storeEventually(pair.connectionA, onMaster[0], "after")
            try await NearCacheProbe.waitUntilFilling(pair.connectionB, timeout: .seconds(60))
            #expect(try await Self.listenerIDs(pair.connectionB)[replica.description] != nil)
            let served = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                try await Self.probe.lookup(pair.connectionB, onMaster[0]) == .hit(ByteBuffer(string: "after"))
            }
            #expect(served, "nothing stale after the failover")
            try await Self.probe.waitUntilHeldInB(pair, onMaster[2], "old")
            try await Self.probe.change(pair) { try await Self.probe.storeEventually(pair.connectionA, onMaster[2], "new") }
            #expect(try await Self.probe.lookup(pair.connectionB, onMaster[2]) == .hit(ByteBuffer(string: "new")))

            // Give the slots back.
            try await Self.failover(to: master)
            try await TestCluster.waitUntilHealthy()
        }

        /// Runs `CLUSTER FAILOVER` on `replica` and waits until it is a master.
        ///
        /// Redis gives a manual failover 5 s to complete (the master pauses
        /// writes, the replica catches up, the masters vote) and abandons it
        /// otherwise, for instance while the cluster still settles after the
        /// previous test's failover. So the command is sent again after each
        /// abandoned attempt: what the test checks is the gateway's reaction
        /// to the failover, not how reliably Redis completes one.
        static func failover(to replica: RedisURL.Endpoint) async throws {
            var promoted = false
            for _ in 0..<6 where !promoted {
                let reply = try await TestCluster.withConnection(replica) { try await $0.send(RedisCommand("CLUSTER", "FAILOVER"), timeout: .seconds(5)).checked().string }
                #expect(reply == "OK")
                promoted = await RedisTestSupport.waitUntil(timeout: .seconds(10)) {
                    let role = try? await TestCluster.withConnection(replica) { try await $0.send(RedisCommand("ROLE"), timeout: .seconds(1)).array?.first?.string }
                    return role == "master"
                }
            }
            try #require(promoted, "\(replica) did not take over")
        }

        /// The replica attached to `master` (its `INFO replication`).
        static func replica(of master: RedisURL.Endpoint) async throws -> RedisURL.Endpoint {
            try await TestCluster.withConnection(master) { connection -> RedisURL.Endpoint in
                let info = try await connection.send(RedisCommand("INFO", "replication"), timeout: .seconds(2)).string ?? ""
                guard let line = info.split(separator: "\r\n").first(where: { $0.hasPrefix("slave0:") }),
                    let portField = line.split(separator: ",").first(where: { $0.hasPrefix("port=") }),
                    let port = Int(portField.dropFirst(5))
                else { throw TestFailure("no replica in \(info)") }
                return .tcp(host: "127.0.0.1", port: port)
            }
        }
    }
}
