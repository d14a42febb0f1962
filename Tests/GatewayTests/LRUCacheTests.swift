@testable import Gateway
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import NIOEmbedded
import Testing

/// The in-memory store's LRU map, driven with explicit times (no clock, no waiting).
@Suite struct LRUCacheTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func evictsTheLeastRecentlyUsedEntryWhenFull() {
        var cache = LRUCache<String, Int>(capacityBytes: 30)
        let later = self.start + .seconds(60)
        cache.set("a", 1, cost: 10, expires: later)
        cache.set("b", 2, cost: 10, expires: later)
        cache.set("c", 3, cost: 10, expires: later)
        // Touch "a", so that "b" is now the least recently used.
        #expect(cache.get("a", now: self.start) == 1)
        let evicted = cache.set("d", 4, cost: 10, expires: later)
        #expect(evicted == ["b"])
        #expect(cache.get("b", now: self.start) == nil)
        #expect(cache.get("a", now: self.start) == 1)
        #expect(cache.get("c", now: self.start) == 3)
        #expect(cache.get("d", now: self.start) == 4)
        #expect(cache.costBytes == 30)
    }

    @Test func evictsAsManyEntriesAsALargeInsertNeeds() {
        var cache = LRUCache<Int, Int>(capacityBytes: 100)
        for key in 0..<10 { cache.set(key, key, cost: 10, expires: self.start + .seconds(1)) }
        let evicted = cache.set(99, 99, cost: 35, expires: self.start + .seconds(1))
        #expect(evicted == [0, 1, 2, 3])
        #expect(cache.count == 7)
        #expect(cache.costBytes == 95)
    }

    @Test func anEntryCostlierThanTheCapacityIsNotStored() {
        var cache = LRUCache<Int, Int>(capacityBytes: 100)
        cache.set(1, 1, cost: 50, expires: self.start + .seconds(1))
        #expect(cache.set(2, 2, cost: 101, expires: self.start + .seconds(1)).isEmpty)
        #expect(cache.get(2, now: self.start) == nil)
        #expect(cache.get(1, now: self.start) == 1)
    }

    @Test func expiredEntriesAreMissesAndAreRemoved() {
        var cache = LRUCache<String, Int>(capacityBytes: 100)
        cache.set("short", 1, cost: 10, expires: self.start + .milliseconds(100))
        cache.set("long", 2, cost: 10, expires: self.start + .seconds(100))
        #expect(cache.get("short", now: self.start + .milliseconds(99)) == 1)
        #expect(cache.get("short", now: self.start + .milliseconds(100)) == nil)
        #expect(cache.count == 1)
        #expect(cache.costBytes == 10)
        #expect(cache.get("long", now: self.start + .seconds(99)) == 2)
    }

    @Test func replacingAnEntryUpdatesItsCostAndValue() {
        var cache = LRUCache<String, Int>(capacityBytes: 100)
        cache.set("k", 1, cost: 40, expires: self.start + .seconds(1))
        cache.set("k", 2, cost: 10, expires: self.start + .seconds(1))
        #expect(cache.count == 1)
        #expect(cache.costBytes == 10)
        #expect(cache.get("k", now: self.start) == 2)
    }

    @Test func slotsAreReusedAfterRemoval() {
        var cache = LRUCache<Int, Int>(capacityBytes: 1_000)
        for round in 0..<100 {
            for key in 0..<10 { cache.set(round * 10 + key, key, cost: 10, expires: self.start + .seconds(1)) }
            for key in 0..<10 {
                let removed = cache.remove(round * 10 + key)
                #expect(removed)
            }
        }
        #expect(cache.count == 0)
        #expect(cache.costBytes == 0)
    }

    /// The cache as the plainest list: entries from least to most recently used.
    struct Model {
        var entries: [(key: Int, value: Int, cost: Int, expires: NIODeadline)] = []
        let capacity: Int

        var cost: Int { self.entries.reduce(0) { $0 + $1.cost } }

        mutating func set(_ key: Int, _ value: Int, cost: Int, expires: NIODeadline) -> [Int] {
            self.entries.removeAll { $0.key == key }
            guard cost <= self.capacity else { return [] }
            var evicted: [Int] = []
            while self.cost + cost > self.capacity, !self.entries.isEmpty { evicted.append(self.entries.removeFirst().key) }
            self.entries.append((key, value, cost, expires))
            return evicted
        }

        mutating func get(_ key: Int, now: NIODeadline) -> Int? {
            guard let index = self.entries.firstIndex(where: { $0.key == key }) else { return nil }
            let entry = self.entries.remove(at: index)
            guard entry.expires > now else { return nil }
            self.entries.append(entry)
            return entry.value
        }

        mutating func remove(_ key: Int) -> Bool {
            guard let index = self.entries.firstIndex(where: { $0.key == key }) else { return false }
            self.entries.remove(at: index)
            return true
        }
    }

    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func behavesLikeAPlainRecencyListUnderRandomOperations(seed: UInt64) {
        var random = SeededRandom(seed: seed)
        var cache = LRUCache<Int, Int>(capacityBytes: 200)
        var model = Model(capacity: 200)
        var now = self.start
        for step in 0..<5_000 {
            let key = Int.random(in: 0..<40, using: &random)
            var agrees = true
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4:
                // Costs up to above the capacity; lifetimes from already expired to long.
                let cost = Int.random(in: 1...220, using: &random)
                let expires = now + .milliseconds(Int64.random(in: -5...200, using: &random))
                let value = Int.random(in: 0..<1_000, using: &random)
                let (evicted, expected) = (cache.set(key, value, cost: cost, expires: expires), model.set(key, value, cost: cost, expires: expires))
                agrees = evicted == expected
                #expect(evicted == expected, "step \(step): set \(key)")
            case 4..<8:
                let (value, expected) = (cache.get(key, now: now), model.get(key, now: now))
                agrees = value == expected
                #expect(value == expected, "step \(step): get \(key)")
            case 8:
                let (removed, expected) = (cache.remove(key), model.remove(key))
                agrees = removed == expected
                #expect(removed == expected, "step \(step): remove \(key)")
            default:
                now = now + .milliseconds(Int64.random(in: 0...20, using: &random))
            }
            #expect(cache.count == model.entries.count && cache.costBytes == model.cost, "step \(step)")
            // After the first difference the two part ways for good: one report is enough.
            guard agrees, cache.count == model.entries.count, cache.costBytes == model.cost else { return }
        }
    }
}

@Suite struct MemoryStoreTests {
    let loop = EmbeddedEventLoop()

    func key(_ function: String, _ version: String, _ argument: Int, namespace: String = "ns") throws -> StorageKey {
        StorageKey(namespace: namespace, function: FunctionVersion(function: function, version: version), key: try CacheKey(hashing: argument))
    }

    func entry(_ text: String, ttl: TimeAmount = .seconds(60)) -> StoreEntry {
        StoreEntry(value: ByteBuffer(string: text), ttl: ttl, computeMicroseconds: 5)
    }

    @Test func aStoredValueIsReturnedByteForByte() throws {
        let store = MemoryStore(limitBytes: 1 << 20)
        let key = try self.key("f", "v1", 1)
        #expect(try store.lookup(key, on: self.loop).wait() == .miss)
        #expect(try store.store(key, entry: self.entry("hello"), on: self.loop).wait())
        #expect(try store.lookup(key, on: self.loop).wait().withoutExpiry == .hit(ByteBuffer(string: "hello"), computeMicroseconds: 5))
    }

    @Test func versionsAndNamespacesDoNotShareEntries() throws {
        let store = MemoryStore(limitBytes: 1 << 20)
        _ = try store.store(try self.key("f", "v1", 1), entry: self.entry("old"), on: self.loop).wait()
        #expect(try store.lookup(try self.key("f", "v2", 1), on: self.loop).wait() == .miss)
        #expect(try store.lookup(try self.key("f", "v1", 1, namespace: "other"), on: self.loop).wait() == .miss)
    }

    @Test func invalidateRemovesOneEntryOneVersionOrAllVersions() throws {
        let store = MemoryStore(limitBytes: 1 << 20)
        for version in ["v1", "v2"] {
            for argument in 0..<3 {
                _ = try store.store(try self.key("f", version, argument), entry: self.entry("x"), on: self.loop).wait()
            }
        }
        _ = try store.store(try self.key("g", "v1", 0), entry: self.entry("y"), on: self.loop).wait()

        let one = try store.invalidate(namespace: "ns", function: "f", version: "v1", key: try CacheKey(hashing: 0), on: self.loop).wait()
        #expect(one == 1)
        #expect(try store.lookup(try self.key("f", "v1", 0), on: self.loop).wait() == .miss)
        #expect(try store.lookup(try self.key("f", "v1", 1), on: self.loop).wait() != .miss)

        let version = try store.invalidate(namespace: "ns", function: "f", version: "v1", key: nil, on: self.loop).wait()
        #expect(version == 2)
        let all = try store.invalidate(namespace: "ns", function: "f", version: nil, key: nil, on: self.loop).wait()
        #expect(all == 3)
        #expect(try store.lookup(try self.key("g", "v1", 0), on: self.loop).wait().withoutExpiry == .hit(ByteBuffer(string: "y"), computeMicroseconds: 5))
        #expect(store.count == 1)
    }

    @Test func theStoreStaysWithinItsMemoryLimit() throws {
        let store = MemoryStore(limitBytes: 64 * 1024)
        let value = String(repeating: "v", count: 1_000)
        for argument in 0..<1_000 {
            _ = try store.store(try self.key("f", "v1", argument), entry: self.entry(value), on: self.loop).wait()
        }
        #expect(store.usedBytes <= 64 * 1024)
        #expect(store.count < 1_000)
        // The newest entry survived; the oldest was evicted.
        #expect(try store.lookup(try self.key("f", "v1", 999), on: self.loop).wait() != .miss)
        #expect(try store.lookup(try self.key("f", "v1", 0), on: self.loop).wait() == .miss)
    }

    @Test func aValueLargerThanTheLimitIsDropped() throws {
        let store = MemoryStore(limitBytes: 4 * 1024)
        let stored = try store.store(try self.key("f", "v1", 1), entry: self.entry(String(repeating: "x", count: 8 * 1024)), on: self.loop).wait()
        #expect(stored == false)
        #expect(store.count == 0)
    }
}

extension StoreLookup {
    /// The lookup without the expiry a hit reports (what tests that check a
    /// value compare).
    var withoutExpiry: StoreLookup {
        guard case .hit(let value, let computeMicroseconds, _) = self else { return self }
        return .hit(value, computeMicroseconds: computeMicroseconds)
    }
}

@Suite("LRU cache: extending an entry's life")
struct LRUCacheExtendTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func anEntryLivesUntilTheLaterOfItsExpiryAndTheExtension() {
        var cache = LRUCache<String, Int>(capacityBytes: 1_000)
        cache.set("a", 1, cost: 10, expires: self.start + .milliseconds(100))
        #expect(cache.extend("a", until: self.start + .milliseconds(300), now: self.start + .milliseconds(50)) == true)
        #expect(cache.get("a", now: self.start + .milliseconds(250)) == 1)
        // An earlier time changes nothing.
        #expect(cache.extend("a", until: self.start + .milliseconds(10), now: self.start + .milliseconds(250)) == true)
        #expect(cache.get("a", now: self.start + .milliseconds(299)) == 1)
        #expect(cache.get("a", now: self.start + .milliseconds(300)) == nil)
        // A missing or expired entry is not brought back.
        #expect(cache.extend("a", until: self.start + .milliseconds(900), now: self.start + .milliseconds(301)) == false)
        cache.set("b", 2, cost: 10, expires: self.start + .milliseconds(100))
        #expect(cache.extend("b", until: self.start + .milliseconds(900), now: self.start + .milliseconds(100)) == false)
        #expect(cache.get("b", now: self.start + .milliseconds(101)) == nil)
    }
}
