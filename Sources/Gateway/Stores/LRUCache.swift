import NIOCore

/// A byte-bounded least-recently-used map with per-entry expiry, as a value
/// type with no locking and no clock of its own: callers pass `now`, so it is
/// tested without I/O or waiting.
///
/// Entries live in slots linked into a recency list by index (no per-entry
/// allocation); a dictionary maps keys to slots. Inserting beyond
/// `capacityBytes` evicts from the least recently used end.
///
/// A slot's parts are kept in three arrays rather than one array of nodes:
/// its links, cost and expiry (plain values), its key and its value. A hit
/// then reads and relinks plain values in place and copies only the value it
/// returns. Read through `nodes[slot]!`, an optional node was copied whole,
/// retaining and releasing every reference in its key and value: about 3% of
/// the gateway's time on the hit path.
struct LRUCache<Key: Hashable, Value> {
    /// A slot's place in the recency list, and what it costs.
    fileprivate struct Links {
        var cost: Int
        var expires: NIODeadline
        var newer: Int  // towards the most recently used end, or -1
        var older: Int  // towards the least recently used end, or -1
    }

    // Slot `i` is free when `keys[i]` and `values[i]` are nil (then `links[i]` means nothing).
    private var links: [Links] = []
    private var keys: [Key?] = []
    private var values: [Value?] = []
    private var freeSlots: [Int] = []
    private var index: [Key: Int] = [:]
    private var newest = -1
    private var oldest = -1

    /// The most bytes the entries may cost together.
    let capacityBytes: Int
    /// What the entries cost now.
    private(set) var costBytes = 0

    init(capacityBytes: Int) {
        precondition(capacityBytes > 0)
        self.capacityBytes = capacityBytes
    }

    /// The number of entries, expired ones included until they are touched or evicted.
    var count: Int { self.index.count }

    /// Whether an entry is held under `key` (expired or not); changes nothing.
    func contains(_ key: Key) -> Bool { self.index[key] != nil }

    /// The value for `key` if it has not expired at `now`; marks it most recently used.
    /// An expired entry is removed.
    mutating func get(_ key: Key, now: NIODeadline) -> Value? {
        self.get(key, now: now, removingExpired: { _ in })
    }

    /// `get(_:now:)`, handing an expired entry's value to `removingExpired`
    /// as it is removed (so that a caller can drop what it keeps beside it).
    mutating func get(_ key: Key, now: NIODeadline, removingExpired: (Value) -> Void) -> Value? {
        guard let slot = self.index[key] else { return nil }
        guard self.links[slot].expires > now else {
            if let value = self.values[slot] { removingExpired(value) }
            self.remove(slot: slot)
            return nil
        }
        self.moveToNewest(slot)
        return self.values[slot]
    }

    /// Inserts or replaces `key`. Returns the keys evicted to make room (not
    /// including a replaced entry). An entry costlier than the whole capacity is not stored.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value, cost: Int, expires: NIODeadline) -> [Key] {
        self.insert(key, value, cost: cost, expires: expires).map(\.key)
    }

    /// `set`, returning the evicted entries with their values. A replaced
    /// entry is not among them; an entry costlier than the whole capacity is
    /// not stored (and a replaced one is gone).
    @discardableResult
    mutating func insert(_ key: Key, _ value: Value, cost: Int, expires: NIODeadline) -> [(key: Key, value: Value)] {
        if let slot = self.index[key] { self.remove(slot: slot) }
        guard cost <= self.capacityBytes else { return [] }
        var evicted: [(key: Key, value: Value)] = []
        while self.costBytes + cost > self.capacityBytes, self.oldest >= 0 {
            let slot = self.oldest
            evicted.append((self.keys[slot]!, self.values[slot]!))
            self.remove(slot: slot)
        }
        let links = Links(cost: cost, expires: expires, newer: -1, older: self.newest)
        let slot: Int
        if let free = self.freeSlots.popLast() {
            slot = free
            self.links[slot] = links
            self.keys[slot] = key
            self.values[slot] = value
        } else {
            slot = self.links.count
            self.links.append(links)
            self.keys.append(key)
            self.values.append(value)
        }
        if self.newest >= 0 { self.links[self.newest].newer = slot }
        self.newest = slot
        if self.oldest < 0 { self.oldest = slot }
        self.index[key] = slot
        self.costBytes += cost
        return evicted
    }

    /// Keeps `key`'s entry until at least `expires`, if it is there and has
    /// not expired at `now` (a later expiry stays); changes no recency.
    /// Returns whether the entry is there.
    @discardableResult
    mutating func extend(_ key: Key, until expires: NIODeadline, now: NIODeadline) -> Bool {
        guard let slot = self.index[key], self.links[slot].expires > now else { return false }
        self.links[slot].expires = max(self.links[slot].expires, expires)
        return true
    }

    /// Removes `key`; returns whether it was there (expired or not).
    @discardableResult
    mutating func remove(_ key: Key) -> Bool {
        guard let slot = self.index[key] else { return false }
        self.remove(slot: slot)
        return true
    }

    /// Removes every entry, keeping the storage for reuse.
    mutating func removeAll() {
        self.links.removeAll(keepingCapacity: true)
        self.keys.removeAll(keepingCapacity: true)
        self.values.removeAll(keepingCapacity: true)
        self.freeSlots.removeAll(keepingCapacity: true)
        self.index.removeAll(keepingCapacity: true)
        self.newest = -1
        self.oldest = -1
        self.costBytes = 0
    }

    private mutating func remove(slot: Int) {
        guard let key = self.keys[slot] else { return }
        self.unlink(slot)
        self.index[key] = nil
        self.costBytes -= self.links[slot].cost
        self.keys[slot] = nil
        self.values[slot] = nil
        self.freeSlots.append(slot)
    }

    /// Joins `slot`'s neighbours to each other.
    private mutating func unlink(_ slot: Int) {
        let (newer, older) = (self.links[slot].newer, self.links[slot].older)
        if newer >= 0 { self.links[newer].older = older } else { self.newest = older }
        if older >= 0 { self.links[older].newer = newer } else { self.oldest = newer }
    }

    private mutating func moveToNewest(_ slot: Int) {
        guard slot != self.newest else { return }
        self.unlink(slot)
        self.links[slot].newer = -1
        self.links[slot].older = self.newest
        if self.newest >= 0 { self.links[self.newest].newer = slot }
        self.newest = slot
        if self.oldest < 0 { self.oldest = slot }
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
