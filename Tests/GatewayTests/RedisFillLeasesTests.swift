import Foundation
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

@testable import Gateway

/// The lease key's place on a cluster: in its entry's slot.
@Suite("Fill lease keys")
struct FillLeaseKeyTests {
    @Test func aClusterLeaseKeyHashesToItsEntrysSlot() {
        for hex in ["00ff", "3a7c", "b001", "ffee", "9"] {
            let entry = RedisKeyLayout.cluster.entryKey(namespace: "ns", functionID: "f00d", version: "v1", hex: hex)
            let lease = RedisKeyLayout.cluster.leaseKey(namespace: "ns", functionID: "f00d", version: "v1", hex: hex)
            #expect(ClusterSlot(key: lease) == ClusterSlot(key: entry), "\(entry)")
            #expect(!lease.hasPrefix(RedisKeyLayout.cluster.entryKeyPrefix(namespace: "ns", functionID: "f00d", version: "v1")))
        }
        // On one server: the entry's name with l: for e:.
        #expect(RedisKeyLayout.single.leaseKey(namespace: "ns", functionID: "f00d", version: "v1", hex: "ab") == "cg:ns:l:f00d:v1:ab")
    }
}

extension IntegrationTests {
    /// `RedisFillLeases` against the real test redis-server: two gateways'
    /// leases (two ids) on one Redis.
    @Suite(.serialized) struct RedisFillLeasesTests {
        static let function = FunctionVersion(function: "Tests.lease(of:)", version: "v1")

        @Test func claimsTakeOneLeaseAtATimeAndAStoreDeletesIt() async throws {
            var configuration = RedisStore.Configuration(lookupTimeout: .seconds(5), writeTimeout: .seconds(10))
            configuration.deletesFillLeases = true
            try await RedisTestSupport.withRedisStore(configuration: configuration) { store in
                let loop = RedisTestSupport.eventLoopGroup.next()
                let first = RedisFillLeases(store: store, gatewayID: "gateway-a")
                let second = RedisFillLeases(store: store, gatewayID: "gateway-b")
                let namespace = "lease\(UInt32.random(in: 0...UInt32.max))"
                let key = StorageKey(namespace: namespace, function: Self.function, key: try CacheKey(hashing: 1))
                let connected = await RedisTestSupport.waitUntil { store.isHealthy }
                #expect(connected)

                #expect(try await first.claimFill(key, for: .seconds(5), on: loop).get() == .taken)
                // Another gateway finds it held, with about its time left.
                guard case .heldElsewhere(let remaining) = try await second.claimFill(key, for: .seconds(5), on: loop).get() else {
                    Issue.record("the second claim was not held elsewhere")
                    return
                }
                #expect(remaining > .seconds(3) && remaining <= .seconds(5))
                #expect(try await second.acquire(key, for: .seconds(5), on: loop).get() != .taken)
                // The holder renews its own lease.
                #expect(try await first.claimFill(key, for: .seconds(5), on: loop).get() == .taken)
                // Only the holder's release deletes it.
                second.release(key, on: loop)
                #expect(try await second.claimFill(key, for: .seconds(5), on: loop).get() != .taken)
                first.release(key, on: loop)
                #expect(await RedisTestSupport.waitUntil { (try? await second.claimFill(key, for: .seconds(5), on: loop).get()) == .taken })

                // A store deletes the lease in its transaction, and the next claim reads the entry.
                let stored = try await store.store(key, entry: StoreEntry(value: ByteBuffer(string: "v"), ttl: .seconds(60), computeMicroseconds: 1), on: loop).get()
                #expect(stored)
                let lease = ByteBuffer(string: first.leaseKey(key))
                #expect(try await store.target.send(RedisCommand("EXISTS", arguments: [lease]), routedBy: lease, timeout: .seconds(5)).integer == 0)
                #expect(try await first.claimFill(key, for: .seconds(5), on: loop).get() == .stored)
                // acquire (early refresh) does not look at the entry.
                #expect(try await first.acquire(key, for: .seconds(5), on: loop).get() == .taken)
            }
        }

        @Test func aLeaseLapsesAtItsBound() async throws {
            try await RedisTestSupport.withRedisStore(configuration: RedisStore.Configuration(lookupTimeout: .seconds(5), writeTimeout: .seconds(10))) { store in
                let loop = RedisTestSupport.eventLoopGroup.next()
                let holder = RedisFillLeases(store: store)
                let other = RedisFillLeases(store: store)
                #expect(holder.gatewayID != other.gatewayID)
                let key = StorageKey(namespace: "lapse\(UInt32.random(in: 0...UInt32.max))", function: Self.function, key: try CacheKey(hashing: 2))
                #expect(await RedisTestSupport.waitUntil { store.isHealthy })
                #expect(try await holder.claimFill(key, for: .milliseconds(100), on: loop).get() == .taken)
                // The holder never gives it back (it died): it lapses.
                #expect(await RedisTestSupport.waitUntil { (try? await other.claimFill(key, for: .seconds(5), on: loop).get()) == .taken })
            }
        }
    }
}
