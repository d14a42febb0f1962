import Foundation
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import NIOPosix
import Testing

@testable import Gateway

extension IntegrationTests {
    /// The registry's Redis backend against the real test redis-server: the
    /// compare-and-set under contention, and purges through captured indexes.
    @Suite(.serialized) struct RedisRegistryTests {
        let namespace = "reg\(UInt32.random(in: 0...UInt32.max))"
        let function = "Tests.slow(x:)"

        /// Runs `body` with a started store of small purge batches (so that
        /// purges go through many script runs and pipelined groups), and shuts
        /// the store down after it, whether `body` returned or threw.
        func withStore(_ body: (RedisStore) async throws -> Void) async throws {
            try await RedisTestSupport.withRedisStore(configuration: RedisStore.Configuration(deleteBatchSize: 7, deletePipelineDepth: 3)) { store in
                let up = await RedisTestSupport.waitUntil { store.isHealthy }
                try #require(up)
                try await body(store)
            }
        }

        func storeEntries(_ store: RedisStore, version: String, count: Int) async throws {
            let loop = RedisTestSupport.eventLoopGroup.next()
            for index in 0..<count {
                let key = StorageKey(namespace: self.namespace, function: FunctionVersion(function: self.function, version: version), key: try CacheKey(hashing: [UInt8](version.utf8) + [UInt8(index & 0xff), UInt8(index >> 8)]))
                let stored = try await store.store(key, entry: StoreEntry(value: ByteBuffer(string: "\(version)-\(index)"), ttl: .seconds(60), computeMicroseconds: 7), on: loop).get()
                try #require(stored)
            }
        }

        func lookup(_ store: RedisStore, version: String, index: Int) async throws -> StoreLookup {
            let key = StorageKey(namespace: self.namespace, function: FunctionVersion(function: self.function, version: version), key: try CacheKey(hashing: [UInt8](version.utf8) + [UInt8(index & 0xff), UInt8(index >> 8)]))
            // Without the expiry, which the tests do not compare.
            switch try await store.lookup(key, on: RedisTestSupport.eventLoopGroup.next()).get() {
            case .hit(let value, let computeMicroseconds, _): return .hit(value, computeMicroseconds: computeMicroseconds)
            case let other: return other
            }
        }

        @Test func concurrentClaimsOfOneRetiredVersionHaveExactlyOneWinner() async throws {
            try await self.withStore { store in
                let backend = try #require(store.makeRegistryBackend())
                let now = Registry.nowMilliseconds()
                // Two versions in use, each with entries; then v1's last user leaves.
                try await backend.modify(namespace: self.namespace, function: self.function) { record in
                    _ = record.acquire(version: "v1", gateway: "a", now: now, duration: 60_000, eager: false)
                    _ = record.acquire(version: "v2", gateway: "b", now: now, duration: 60_000, eager: false)
                    return ((), [])
                }
                try await self.storeEntries(store, version: "v1", count: 300)
                try await self.storeEntries(store, version: "v2", count: 40)
                try await backend.modify(namespace: self.namespace, function: self.function) { record in
                    record.release(version: "v1", gateway: "a", now: now)
                    return ((), [])
                }
                #expect(try await backend.entryCount(namespace: self.namespace, function: self.function, version: "v1") == 300)

                // Sixteen sweeps at the same moment, as sixteen gateways would.
                let later = now + 1
                let claims = try await withThrowingTaskGroup(of: [FunctionRecord.PurgeClaim].self) { group in
                    for _ in 0..<16 {
                        group.addTask {
                            try await backend.modify(namespace: self.namespace, function: self.function) { record in
                                let claims = record.claimIdleVersions(now: later, grace: 0)
                                return (claims, claims)
                            }
                        }
                    }
                    var all: [FunctionRecord.PurgeClaim] = []
                    for try await claims in group { all += claims }
                    return all
                }
                #expect(claims == [.init(version: "v1", epoch: 1)], "one winner, one claim")

                // The claim captured v1's index: v1 now has no listed entries (new ones
                // would start a fresh index), and its entries go when the winner purges.
                #expect(try await backend.entryCount(namespace: self.namespace, function: self.function, version: "v1") == 0)
                let deleted = try await backend.purge(namespace: self.namespace, function: self.function, claim: claims[0])
                #expect(deleted == 300)
                #expect(try await self.lookup(store, version: "v1", index: 5) == .miss)
                // Purging the same claim again deletes nothing: nothing is deleted twice.
                #expect(try await backend.purge(namespace: self.namespace, function: self.function, claim: claims[0]) == 0)
                // The other version is untouched.
                #expect(try await backend.entryCount(namespace: self.namespace, function: self.function, version: "v2") == 40)
                for index in [0, 17, 39] {
                    #expect(try await self.lookup(store, version: "v2", index: index) == .hit(ByteBuffer(string: "v2-\(index)"), computeMicroseconds: 7))
                }
                let record = try #require(try await backend.record(namespace: self.namespace, function: self.function))
                #expect(record.versions["v1"]!.isPurged && !record.versions["v2"]!.isPurged)
                #expect(try await backend.functionNames(namespace: self.namespace) == [self.function])
            }
        }

        @Test func invalidateDeletesOneKeyInEveryVersionOrAWholeFunction() async throws {
            try await self.withStore { store in
                let backend = try #require(store.makeRegistryBackend())
                let now = Registry.nowMilliseconds()
                try await backend.modify(namespace: self.namespace, function: self.function) { record in
                    _ = record.acquire(version: "v1", gateway: "a", now: now, duration: 60_000, eager: false)
                    _ = record.acquire(version: "v2", gateway: "a", now: now, duration: 60_000, eager: false)
                    return ((), [])
                }
                try await self.storeEntries(store, version: "v1", count: 5)
                try await self.storeEntries(store, version: "v2", count: 5)
                let loop = RedisTestSupport.eventLoopGroup.next()
                // One key (the same arguments) in every version: v1's key 3 and v2's key 3 differ
                // here (the version is in the test's arguments), so only v1's goes.
                let key = try CacheKey(hashing: [UInt8]("v1".utf8) + [3, 0])
                #expect(try await store.invalidate(namespace: self.namespace, function: self.function, version: nil, key: key, on: loop).get() == 1)
                #expect(try await self.lookup(store, version: "v1", index: 3) == .miss)
                #expect(try await self.lookup(store, version: "v1", index: 4) != .miss)
                // One version.
                #expect(try await store.invalidate(namespace: self.namespace, function: self.function, version: "v2", key: nil, on: loop).get() == 5)
                #expect(try await self.lookup(store, version: "v2", index: 0) == .miss)
                // Everything left.
                #expect(try await store.invalidate(namespace: self.namespace, function: self.function, version: nil, key: nil, on: loop).get() == 4)
                #expect(try await self.lookup(store, version: "v1", index: 4) == .miss)
            }
        }
    }
}
