import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore

/// The embedded default store: entries in the gateway's own memory, bounded
/// by `limitBytes`, honouring TTLs and evicting the least recently used entry.
///
/// One host then works with no Redis at all. All event loops share one
/// lock-protected `LRUCache`; operations are short (a hash lookup and a few
/// index updates), so the lock is held for well under a microsecond.
public final class MemoryStore: CacheStore {
    /// The default bound: 256 MiB.
    public static let defaultLimitBytes = 256 * 1024 * 1024

    /// Roughly what one entry costs besides its value (node, index and key).
    static let overheadBytes = 160

    /// An entry and its expiry in Unix milliseconds (what lookups report,
    /// for early refresh: fixed when the entry is stored).
    private struct Held: Sendable {
        var entry: StoreEntry
        var expiresAtUnixMilliseconds: Int64
    }

    private struct State: Sendable {
        var entries: LRUCache<StorageKey, Held>
        /// Keys of each (namespace, function, version), so that invalidation
        /// by function or version does not scan every entry.
        var byVersion: [VersionID: Set<CacheKey>] = [:]

        mutating func forget(_ key: StorageKey) {
            let id = VersionID(key)
            self.byVersion[id]?.remove(key.key)
            if self.byVersion[id]?.isEmpty == true { self.byVersion[id] = nil }
        }
    }

    private struct VersionID: Hashable, Sendable {
        var namespace: String
        var function: String
        var version: String

        init(_ key: StorageKey) {
            self.namespace = key.namespace
            self.function = key.function.function
            self.version = key.function.version
        }

        init(namespace: String, function: String, version: String) {
            self.namespace = namespace
            self.function = function
            self.version = version
        }
    }

    private let state: NIOLockedValueBox<State>

    /// The most bytes the entries may take.
    public let limitBytes: Int

    /// Creates an empty store bounded by `limitBytes`.
    public init(limitBytes: Int = MemoryStore.defaultLimitBytes) {
        self.limitBytes = limitBytes
        self.state = NIOLockedValueBox(State(entries: LRUCache(capacityBytes: limitBytes)))
    }

    /// `memory`.
    public var kind: String { "memory" }

    /// Always true: memory does not go down.
    public var isHealthy: Bool { true }

    /// The number of entries held (expired ones included until touched or evicted).
    public var count: Int { self.state.withLockedValue { $0.entries.count } }

    /// The bytes the entries take, by this store's accounting.
    public var usedBytes: Int { self.state.withLockedValue { $0.entries.costBytes } }

    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        eventLoop.makeSucceededFuture(self.lookupNow(key))
    }

    /// Memory answers every lookup at once.
    public func lookupImmediately(_ key: StorageKey, now: NIODeadline) -> StoreLookup? {
        self.lookupNow(key, now: now)
    }

    private func lookupNow(_ key: StorageKey, now: NIODeadline = .now()) -> StoreLookup {
        self.state.withLockedValue { state in
            if let held = state.entries.get(key, now: now) {
                return .hit(held.entry.value, computeMicroseconds: held.entry.computeMicroseconds, expiresAtUnixMilliseconds: held.expiresAtUnixMilliseconds)
            }
            state.forget(key)
            return .miss
        }
    }

    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        // The value usually is a slice of a large read buffer; keep a copy of
        // just its bytes, so that the accounting below is what memory holds.
        var entry = entry
        entry.value = ByteBuffer(buffer: entry.value)
        let cost = entry.value.readableBytes + key.function.function.utf8.count + key.function.version.utf8.count
            + key.namespace.utf8.count + Self.overheadBytes
        let now = NIODeadline.now()
        let expires = now + entry.ttl
        let held = Held(entry: entry, expiresAtUnixMilliseconds: Self.unixMilliseconds(at: now) + entry.ttl.nanoseconds / 1_000_000)
        let stored: Bool = self.state.withLockedValue { state in
            let evicted = state.entries.set(key, held, cost: cost, expires: expires)
            for old in evicted { state.forget(old) }
            guard cost <= state.entries.capacityBytes else {
                state.forget(key)
                return false
            }
            state.byVersion[VersionID(key), default: []].insert(key.key)
            return true
        }
        return eventLoop.makeSucceededFuture(stored)
    }

    public func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop) {
        let now = NIODeadline.now()
        let until = now + .milliseconds(unixMilliseconds - Self.unixMilliseconds(at: now))
        self.state.withLockedValue { _ = $0.entries.extend(key, until: until, now: now) }
    }

    /// `deadline` in Unix milliseconds (the wall clock's offset read once).
    static func unixMilliseconds(at deadline: NIODeadline) -> Int64 {
        Int64(deadline.uptimeNanoseconds / 1_000_000) + RedisStore.uptimeToUnixMilliseconds
    }

    public func invalidate(
        namespace: String,
        function: String,
        version: String?,
        key: CacheKey?,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<UInt64> {
        let deleted: UInt64 = self.state.withLockedValue { state in
            var ids: [VersionID]
            if let version {
                ids = [VersionID(namespace: namespace, function: function, version: version)]
            } else {
                ids = state.byVersion.keys.filter { $0.namespace == namespace && $0.function == function }
            }
            var deleted: UInt64 = 0
            for id in ids {
                let keys = key.map { [$0] } ?? Array(state.byVersion[id] ?? [])
                for cacheKey in keys {
                    let storageKey = StorageKey(
                        namespace: id.namespace,
                        function: FunctionVersion(function: id.function, version: id.version),
                        key: cacheKey
                    )
                    if state.entries.remove(storageKey) { deleted += 1 }
                    state.forget(storageKey)
                }
            }
            return deleted
        }
        return eventLoop.makeSucceededFuture(deleted)
    }

    /// How many entries one version holds (expired ones included until touched or evicted).
    public func entryCount(namespace: String, function: String, version: String) -> Int {
        self.state.withLockedValue { $0.byVersion[VersionID(namespace: namespace, function: function, version: version)]?.count ?? 0 }
    }

    public func shutdown() async {
        self.state.withLockedValue { $0 = State(entries: LRUCache(capacityBytes: self.limitBytes)) }
    }
}
