import GatewayProtocol
import NIOCore

/// Where the gateway keeps entries.
///
/// The server talks only to this protocol, so backends compose without
/// reshaping it: `MemoryStore` (the embedded default) and the Redis store
/// implement it; a near-cache is a store that wraps another store; Redis
/// Cluster and Sentinel are topologies behind the Redis store (they change
/// which connection a key goes to, not this interface).
///
/// Every method answers on the event loop it is given, so a connection's
/// request and reply stay on that connection's loop: an in-memory hit never
/// leaves the loop it arrived on.
public protocol CacheStore: Sendable {
    /// A short name for stats and logs, e.g. `memory` or `redis`.
    var kind: String { get }

    /// Whether the backend can currently serve requests.
    var isHealthy: Bool { get }

    /// Looks up an entry. A store that cannot answer (backend down or slow)
    /// succeeds with `.missDoNotStore` rather than failing.
    func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup>

    /// Looks up an entry as `lookup(_:on:)` does and calls `answer` with the
    /// outcome on `eventLoop`, once: the cold path's form, with no future.
    ///
    /// A store that goes to a backend answers from within the turn of the
    /// event loop that brought the backend's reply; one that wraps another
    /// passes the callback along. The default calls `lookup(_:on:)`.
    func lookup(_ key: StorageKey, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<StoreLookup, any Error>) -> Void)

    /// Answers a lookup at once when the store can without waiting (an
    /// in-memory store), or returns nil: then the server calls `lookup`.
    ///
    /// This is the hit path's shortcut: the server answers inside the read
    /// that brought the request, with no promise, no callback and no
    /// allocation of its own. A store that wraps another (a near-cache in front
    /// of Redis) answers here what it holds and returns nil for the rest.
    /// `now` is the lookup's time, as the caller's event loop tells it (`EventLoop.now`).
    func lookupImmediately(_ key: StorageKey, now: NIODeadline) -> StoreLookup?

    /// Stores an entry for `ttl`; succeeds with false when the entry was dropped
    /// (backend unavailable).
    func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool>

    /// Deletes entries of `function`: one entry (`version` and `key`), one
    /// key in every version (`key` only), one version (`version` only), or
    /// every version. Succeeds with the number deleted.
    func invalidate(
        namespace: String,
        function: String,
        version: String?,
        key: CacheKey?,
        on eventLoop: any EventLoop
    ) -> EventLoopFuture<UInt64>

    /// Keeps `key`'s entry, if it is there, until at least
    /// `unixMilliseconds` (a later expiry stays), without waiting for the
    /// backend: an early refresh of the entry is running, and its callers go
    /// on hitting the old value until the new one is stored. The expiry that
    /// lookups report (`StoreLookup.hit`) stays the entry's own.
    func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop)

    /// Counters of the store's own (faults, connections), merged into the stats reply.
    var statistics: [String: Stats.Value] { get }

    /// The name under which the backend keeps `key`'s entry (the Redis key),
    /// or nil when the store has no such names (memory).
    func backendKey(for key: StorageKey) -> String?

    /// Releases connections and memory; called once when the gateway stops.
    func shutdown() async
}

extension CacheStore {
    /// No counters of its own.
    public var statistics: [String: Stats.Value] { [:] }

    /// Through `lookup(_:on:)`'s future, completed on `eventLoop`.
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<StoreLookup, any Error>) -> Void) {
        self.lookup(key, on: eventLoop).hop(to: eventLoop).whenComplete(answer)
    }

    /// Never answers at once: every lookup goes through `lookup`.
    public func lookupImmediately(_ key: StorageKey, now: NIODeadline) -> StoreLookup? { nil }

    /// `lookupImmediately(_:now:)` at the current time.
    public func lookupImmediately(_ key: StorageKey) -> StoreLookup? {
        self.lookupImmediately(key, now: .now())
    }

    /// No backend names.
    public func backendKey(for key: StorageKey) -> String? { nil }

    /// Entries live their TTL, no longer.
    public func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop) {}
}

/// The full identity of an entry: namespace, function, version and argument key.
///
/// The version is part of the identity, so entries of two versions of a
/// function can never be confused.
public struct StorageKey: Hashable, Sendable {
    /// Separates applications that share one backend.
    public var namespace: String
    /// The function and the version of its code.
    public var function: FunctionVersion
    /// The digest of the call's arguments.
    public var key: CacheKey

    /// Creates a storage key.
    public init(namespace: String, function: FunctionVersion, key: CacheKey) {
        self.namespace = namespace
        self.function = function
        self.key = key
    }
}

/// What a store keeps for one entry.
public struct StoreEntry: Sendable {
    /// The value's bytes, opaque to the gateway.
    public var value: ByteBuffer
    /// How long the entry lives.
    public var ttl: TimeAmount
    /// How long computing the value took, in microseconds.
    public var computeMicroseconds: UInt64
    /// When the entry expires, in Unix milliseconds, if a store in front
    /// (the near-cache) fixed it; nil: now plus `ttl`. Set, every copy of the
    /// entry reports the same expiry, so early refresh decides the same way
    /// whichever copy a hit reads.
    public var expiresAtUnixMilliseconds: Int64?

    /// Creates an entry.
    public init(value: ByteBuffer, ttl: TimeAmount, computeMicroseconds: UInt64, expiresAtUnixMilliseconds: Int64? = nil) {
        self.value = value
        self.ttl = ttl
        self.computeMicroseconds = computeMicroseconds
        self.expiresAtUnixMilliseconds = expiresAtUnixMilliseconds
    }
}

/// The answer of `CacheStore.lookup`.
public enum StoreLookup: Sendable, Equatable {
    /// The entry exists: its value, how long computing it took (what this
    /// hit saved), in microseconds, and when it expires, in Unix
    /// milliseconds, where the store knows (every store of the gateway
    /// does; an entry in an older Redis format does not). Early refresh
    /// decides by it.
    case hit(ByteBuffer, computeMicroseconds: UInt64, expiresAtUnixMilliseconds: Int64? = nil)
    /// No entry: the worker should compute and store.
    case miss
    /// The backend could not answer: the worker should compute and not store.
    case missDoNotStore
}
