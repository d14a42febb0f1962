import NIOCore

/// A byte-bounded least-recently-used map with per-entry expiry, as a value
/// type with no locking and no clock of its own: callers pass `now`, so it is
/// tested without I/O or waiting.
///
/// Entries live in an array of nodes linked into a recency list by index (no
/// per-node allocation); a dictionary maps keys to node indices. Inserting
/// beyond `capacityBytes` evicts from the least recently used end.
struct LRUCache<Key: Hashable, Value> {
    fileprivate struct Node {
        var key: Key
        var value: Value
        var cost: Int
        var expires: NIODeadline
        var newer: Int  // towards the most recently used end, or -1
        var older: Int  // towards the least recently used end, or -1
    }

    private var nodes: [Node?] = []
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

    /// The value for `key` if it has not expired at `now`; marks it most recently used.
    /// An expired entry is removed.
    ///
    /// The node is read and relinked in place, never copied out whole: a copy
    /// retains and releases every reference its key and value hold, which on
    /// the gateway's hit path was about 2.5% of its time.
    mutating func get(_ key: Key, now: NIODeadline) -> Value? {
        guard let slot = self.index[key], self.nodes[slot] != nil else { return nil }
        guard self.nodes[slot]!.expires > now else {
            self.remove(slot: slot)
            return nil
        }
        self.moveToNewest(slot)
        return self.nodes[slot]!.value
    }

    /// Inserts or replaces `key`. Returns the keys evicted to make room (not
    /// including a replaced entry). An entry costlier than the whole capacity is not stored.
    @discardableResult
    mutating func set(_ key: Key, _ value: Value, cost: Int, expires: NIODeadline) -> [Key] {
        if let slot = self.index[key] { self.remove(slot: slot) }
        guard cost <= self.capacityBytes else { return [] }
        var evicted: [Key] = []
        while self.costBytes + cost > self.capacityBytes, self.oldest >= 0 {
            let slot = self.oldest
            evicted.append(self.nodes[slot]!.key)
            self.remove(slot: slot)
        }
        let node = Node(key: key, value: value, cost: cost, expires: expires, newer: -1, older: self.newest)
        let slot: Int
        if let free = self.freeSlots.popLast() {
            slot = free
            self.nodes[slot] = node
        } else {
            slot = self.nodes.count
            self.nodes.append(node)
        }
        if self.newest >= 0 { self.nodes[self.newest]!.newer = slot }
        self.newest = slot
        if self.oldest < 0 { self.oldest = slot }
        self.index[key] = slot
        self.costBytes += cost
        return evicted
    }

    /// Removes `key`; returns whether it was there (expired or not).
    @discardableResult
    mutating func remove(_ key: Key) -> Bool {
        guard let slot = self.index[key] else { return false }
        self.remove(slot: slot)
        return true
    }

    private mutating func remove(slot: Int) {
        guard let node = self.nodes[slot] else { return }
        self.unlink(newer: node.newer, older: node.older)
        self.index[node.key] = nil
        self.costBytes -= node.cost
        self.nodes[slot] = nil
        self.freeSlots.append(slot)
    }

    /// Joins a node's neighbours (`newer` and `older`, or -1) to each other.
    private mutating func unlink(newer: Int, older: Int) {
        if newer >= 0 { self.nodes[newer]!.older = older } else { self.newest = older }
        if older >= 0 { self.nodes[older]!.newer = newer } else { self.oldest = newer }
    }

    private mutating func moveToNewest(_ slot: Int) {
        guard slot != self.newest, self.nodes[slot] != nil else { return }
        self.unlink(newer: self.nodes[slot]!.newer, older: self.nodes[slot]!.older)
        self.nodes[slot]!.newer = -1
        self.nodes[slot]!.older = self.newest
        if self.newest >= 0 { self.nodes[self.newest]!.newer = slot }
        self.newest = slot
        if self.oldest < 0 { self.oldest = slot }
    }
}

extension LRUCache: Sendable where Key: Sendable, Value: Sendable {}
extension LRUCache.Node: Sendable where Key: Sendable, Value: Sendable {}
