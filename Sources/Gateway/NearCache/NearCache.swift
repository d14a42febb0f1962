import NIOCore

/// The near-cache's entries and the rules that keep them coherent with Redis,
/// as a value type with no locking, no I/O and no clock of its own (callers
/// pass `now`), so that every rule is tested without a server.
///
/// **Entries.** A byte-bounded LRU (`LRUCache`) of values keyed by
/// `StorageKey`, each with the Redis key it was read from or written to, and
/// its expiry: an entry is never served past the expiry it has in Redis.
///
/// **Fills.** A value enters only through a fill: `beginFill` before the
/// read (or the store) is sent, `completeFill` with its reply. `beginFill`
/// leaves a placeholder under the key; anything that removes the key meanwhile
/// (an invalidation, a flush) removes the placeholder too, and `completeFill`
/// then finds it gone and discards the value. That is how an invalidation
/// that overtakes the reply to the read it concerns (they arrive on different
/// connections) keeps the old value out.
///
/// **Filling on and off.** Fills are allowed only while Redis is known to
/// track every key this gateway reads (`startFilling`); `stopFilling` drops
/// every placeholder, so that no read sent before it can fill after it.
/// `flush` removes every entry as well.
struct NearCache {
    /// What the near-cache keeps for one entry.
    struct Entry: Sendable {
        var value: ByteBuffer
        var computeMicroseconds: UInt64
        /// The entry's expiry in Unix milliseconds, as Redis's copy records
        /// it (lookups report it, for early refresh); nil when not known.
        var expiresAtUnixMilliseconds: Int64? = nil
        /// The Redis key, as invalidation messages name it.
        var backendKey: String
    }

    /// A fill in progress, redeemed by `completeFill` or `abandonFill`.
    struct Ticket: Sendable, Hashable {
        let key: StorageKey
        let id: UInt64
    }

    /// Roughly what an entry costs besides its value and key strings.
    static let overheadBytes = 200

    private var entries: LRUCache<StorageKey, Entry>
    /// Placeholders: the fill id and the Redis key of each fill in progress.
    private var pending: [StorageKey: (id: UInt64, backendKey: String)] = [:]
    /// From Redis key to storage key, for every entry and placeholder.
    private var byBackendKey: [String: StorageKey] = [:]
    private var nextTicket: UInt64 = 1
    /// Whether fills are allowed (see the type's documentation).
    private(set) var isFilling = false

    /// Entries removed because Redis or this gateway said their key changed.
    private(set) var invalidatedEntries: UInt64 = 0
    /// Times every entry was dropped (tracking lost, a Redis connection
    /// lost, or `FLUSHDB`/`FLUSHALL`).
    private(set) var flushes: UInt64 = 0
    /// Fills whose value was discarded: the key changed while the read was out.
    private(set) var discardedFills: UInt64 = 0

    /// The most bytes the entries may cost together.
    var capacityBytes: Int { self.entries.capacityBytes }
    /// What the entries cost now.
    var costBytes: Int { self.entries.costBytes }
    /// The number of entries (expired ones included until touched or evicted).
    var count: Int { self.entries.count }
    /// The number of fills in progress.
    var pendingCount: Int { self.pending.count }

    init(capacityBytes: Int) {
        self.entries = LRUCache(capacityBytes: max(1, capacityBytes))
    }

    /// The entry for `key`, if held and not expired at `now`.
    mutating func get(_ key: StorageKey, now: NIODeadline) -> Entry? {
        var expired: String?
        let entry = self.entries.get(key, now: now) { expired = $0.backendKey }
        if let expired, self.pending[key] == nil { self.byBackendKey[expired] = nil }
        return entry
    }

    /// Starts a fill of `key` before its read or store is sent; nil while
    /// fills are off. A second fill of the same key replaces the first, whose
    /// value is then discarded.
    mutating func beginFill(_ key: StorageKey, backendKey: String) -> Ticket? {
        guard self.isFilling else { return nil }
        let id = self.nextTicket
        self.nextTicket &+= 1
        self.pending[key] = (id, backendKey)
        self.byBackendKey[backendKey] = key
        return Ticket(key: key, id: id)
    }

    /// Completes a fill with the value its reply brought, valid until
    /// `expires`. Returns whether the value entered: not when the key changed
    /// meanwhile (the placeholder is gone), nor when it has already expired.
    @discardableResult
    mutating func completeFill(_ ticket: Ticket, value: ByteBuffer, computeMicroseconds: UInt64, expiresAtUnixMilliseconds: Int64? = nil, expires: NIODeadline, now: NIODeadline) -> Bool {
        guard let placeholder = self.pending[ticket.key], placeholder.id == ticket.id else {
            self.discardedFills += 1
            return false
        }
        self.pending[ticket.key] = nil
        guard expires > now else {
            self.forgetUnlessHeld(ticket.key, backendKey: placeholder.backendKey)
            return false
        }
        // A value that shares its storage (a slice of the buffer a Redis
        // read or a worker's frame arrived in) would keep all of that buffer
        // alive: it is copied, so that the bound counts what is held.
        var value = value
        if value.storageCapacity != value.readableBytes {
            value = ByteBuffer(buffer: value)
        }
        let entry = Entry(value: value, computeMicroseconds: computeMicroseconds, expiresAtUnixMilliseconds: expiresAtUnixMilliseconds, backendKey: placeholder.backendKey)
        let cost = value.readableBytes + placeholder.backendKey.utf8.count + Self.overheadBytes
        for evicted in self.entries.insert(ticket.key, entry, cost: cost, expires: expires) where self.pending[evicted.key] == nil {
            self.byBackendKey[evicted.value.backendKey] = nil
        }
        // An entry costlier than the whole capacity is not held.
        self.forgetUnlessHeld(ticket.key, backendKey: placeholder.backendKey)
        return true
    }

    /// Ends a fill without a value (a miss, a failed read, or a value that
    /// is not to be held).
    mutating func abandonFill(_ ticket: Ticket) {
        guard let placeholder = self.pending[ticket.key], placeholder.id == ticket.id else { return }
        self.pending[ticket.key] = nil
        self.forgetUnlessHeld(ticket.key, backendKey: placeholder.backendKey)
    }

    /// Removes what is held or being filled under these Redis keys; returns
    /// how many entries went.
    @discardableResult
    mutating func invalidate(backendKeys: some Sequence<String>) -> Int {
        var removed = 0
        for backendKey in backendKeys {
            guard let key = self.byBackendKey.removeValue(forKey: backendKey) else { continue }
            self.pending[key] = nil
            if self.entries.remove(key) { removed += 1 }
        }
        self.invalidatedEntries += UInt64(removed)
        return removed
    }

    /// Removes what is held or being filled under Redis keys that start with
    /// `prefix` (one version's entries); returns how many entries went.
    @discardableResult
    mutating func invalidate(backendKeyPrefix prefix: String) -> Int {
        let matching = self.byBackendKey.keys.filter { $0.hasPrefix(prefix) }
        return self.invalidate(backendKeys: matching)
    }

    /// Removes every entry and placeholder; with `stopFilling`, fills stay
    /// off until `startFilling`. Returns how many entries went.
    @discardableResult
    mutating func flush(stopFilling: Bool) -> Int {
        let removed = self.entries.count
        self.entries.removeAll()
        self.pending.removeAll(keepingCapacity: true)
        self.byBackendKey.removeAll(keepingCapacity: true)
        if stopFilling { self.isFilling = false }
        self.flushes += 1
        return removed
    }

    /// Allows fills (Redis tracks every read from now on).
    mutating func startFilling() {
        self.isFilling = true
    }

    /// Stops fills and discards those in progress; entries stay.
    mutating func stopFilling() {
        self.isFilling = false
        for (key, placeholder) in self.pending {
            self.pending[key] = nil
            self.forgetUnlessHeld(key, backendKey: placeholder.backendKey)
        }
    }

    /// Drops the Redis key's mapping unless an entry is held under `key`.
    private mutating func forgetUnlessHeld(_ key: StorageKey, backendKey: String) {
        if !self.entries.contains(key), self.byBackendKey[backendKey] == key {
            self.byBackendKey[backendKey] = nil
        }
    }
}
