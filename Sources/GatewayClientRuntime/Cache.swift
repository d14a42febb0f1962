import Foundation
import GatewayProtocol
import NIOCore
import NIOPosix

/// Runs `body` at most once per cached entry: its result, for these
/// `arguments`, is looked up through the gateway and computed only on a miss.
///
/// This is what `@Cached` expands to, and it is public for closures too:
/// ```swift
/// let total = try await cache(ttl: .seconds(300), function: "total(for:)", version: "2", arguments: customer) {
///     try await database.sumInvoices(customer)
/// }
/// ```
/// - The key is the SHA-256 of the canonical MessagePack of the result's type
///   name, the arguments' type names and the arguments, so the concrete types of
///   a generic function are part of it.
/// - `function` is qualified with the module from `fileID` (the text before the
///   first "/"), giving the full name that `invalidate(function:…)` and the
///   gateway's `stats`, `functions` and `purge` use; `version` keeps results
///   of different code apart.
/// - `ttl` is how long the stored result stays valid: at least 1 ms (a
///   shorter positive TTL rounds up) and at most a year
///   (`Store.maximumTTLMilliseconds`; a longer one is clamped). A TTL of zero
///   or less caches nothing: `body` runs and its result is returned, with no
///   lookup and no store.
/// - Fail-open: when the gateway is absent, slow (over
///   `CacheClient.Configuration.lookupTimeout`) or answers an error, `body` runs
///   and its result is returned (and not stored). Errors thrown by `body`
///   propagate with their type (`throws(Failure)`) and are never cached. A
///   result larger than the gateway's value limit is returned and not stored.
/// - Identical concurrent calls in this process run `body` once; the others
///   get its result.
/// - It runs on the caller's isolation throughout; waiting for a hit usually
///   suspends nothing (see `CacheClient.Configuration.maximumInlineWait`).
///
/// It is inlinable, so that it is specialized where it is called, for the
/// call's result and argument types: deriving the key and decoding a hit then
/// run as concrete code, without the run-time metadata lookups and dynamic
/// casts that a generic function reached across a module boundary makes on
/// every call. What does not depend on the types (the connection, single
/// flight, storing) is out of line.
@inlinable
public func cache<Result: Codable, each Argument: Encodable, Failure: Error>(
    ttl: Duration,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    isolation: isolated (any Actor)? = #isolation,
    body: () async throws(Failure) -> Result
) async throws(Failure) -> Result {
    guard ttl > .zero else { return try await body() }
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        // The arguments cannot be encoded: there is no key, so nothing is cached.
        return try await body()
    }
    // A hit usually completes in `beginLookup` without an `async` call.
    let lookup: CacheClient.Lookup
    switch client.beginLookup(call) {
    case .done(let done): lookup = done
    case .unfinished(let unfinished): lookup = await client.finishLookup(unfinished, call)
    }
    if let value: Result = call.hitValue(lookup) { return value }
    return try await computeAndStore(call, after: lookup, ttl: ttl, client: client, body: body)
}

/// The synchronous form of `cache(ttl:function:version:fileID:arguments:isolation:body:)`,
/// for functions that are not `async`. It blocks the calling thread while it
/// waits for the gateway (at most the lookup timeout), doing the whole round
/// trip on that thread. Called on a SwiftNIO event loop thread, where blocking
/// is not allowed, it runs `body` uncached. The TTL is treated as in `cache`.
/// Inlinable for the same reason.
@inlinable
public func cacheSync<Result: Codable, each Argument: Encodable, Failure: Error>(
    ttl: Duration,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    body: () throws(Failure) -> Result
) throws(Failure) -> Result {
    guard CacheClient.mayBlock, ttl > .zero else { return try body() }
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        return try body()
    }
    let lookup = client.lookupBlocking(call)
    if let value: Result = call.hitValue(lookup) { return value }
    return try computeAndStoreBlocking(call, after: lookup, ttl: ttl, client: client, body: body)
}

/// How a cached function's entries are renewed (`@Cached(ttl:refresh:)`,
/// `cache(ttl:refresh:…)`).
public struct CacheRefresh: Sendable, Hashable {
    @usableFromInline
    enum Kind: Sendable, Hashable {
        case never
        case early
    }

    @usableFromInline let kind: Kind

    /// An entry lives its TTL; the first call after that computes it while
    /// other callers wait (or compute too, without a gateway that holds them).
    public static let never = CacheRefresh(kind: .never)

    /// Early refresh: the gateway may answer a hit of an entry close to its
    /// expiry with the value *and* a request to compute it again (XFetch:
    /// the slower the computation, the earlier; one caller anywhere on the
    /// gateway at a time). The call returns the cached value at once and
    /// computes the new one in the background, storing it when done, so
    /// that under steady load entries are renewed before they expire and no
    /// caller waits for a computation. The body escapes the call and must
    /// be `@Sendable` (whatever it captures must be `Sendable`).
    public static let early = CacheRefresh(kind: .early)
}

/// `cache(ttl:function:version:fileID:arguments:isolation:body:)` with a
/// choice of `refresh`. With `.early` the lookup announces that this call
/// can refresh the entry, and a hit that the gateway asks to refresh returns
/// the cached value at once and runs `body` again in a detached `Task`,
/// storing its result (the gateway's store of it ends the refresh). A
/// refresh that throws stores nothing: the entry expires as it would, or
/// another caller is asked to refresh it once this refresh's bound has
/// passed. `body` therefore escapes and is `@Sendable`: it runs outside the
/// caller's isolation in the background, and on a miss too (inside the call,
/// as with the other form). The result type's metatype must be `Sendable`
/// (it is encoded in the background): any type not isolated to a global actor.
/// `.never` is exactly the other form.
@inlinable
public func cache<Result: Codable & SendableMetatype, each Argument: Encodable, Failure: Error>(
    ttl: Duration,
    refresh: CacheRefresh,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    isolation: isolated (any Actor)? = #isolation,
    body: @escaping @Sendable () async throws(Failure) -> Result
) async throws(Failure) -> Result {
    guard refresh.kind == .early else {
        return try await cache(ttl: ttl, function: function, version: version, fileID: fileID, arguments: repeat each arguments, body: body)
    }
    guard ttl > .zero else { return try await body() }
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        return try await body()
    }
    let lookup: CacheClient.Lookup
    switch client.beginLookup(call, refresh: true) {
    case .done(let done): lookup = done
    case .unfinished(let unfinished): lookup = await client.finishLookup(unfinished, call)
    }
    if let value: Result = call.hitValue(lookup) {
        if case .refresh(_, let connection) = lookup {
            refreshInBackground(call, on: connection, ttl: ttl, client: client, body: body)
        }
        return value
    }
    return try await computeAndStore(call, after: lookup, ttl: ttl, client: client, body: body)
}

/// The synchronous form of `cache(ttl:refresh:function:version:fileID:arguments:isolation:body:)`.
/// With `.early`, a refresh runs `body` on a Dispatch global queue (quality
/// of service `utility`), not on the calling thread, which returns the
/// cached value at once; everything else is as in `cacheSync`.
@inlinable
public func cacheSync<Result: Codable & SendableMetatype, each Argument: Encodable, Failure: Error>(
    ttl: Duration,
    refresh: CacheRefresh,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    body: @escaping @Sendable () throws(Failure) -> Result
) throws(Failure) -> Result {
    guard refresh.kind == .early else {
        return try cacheSync(ttl: ttl, function: function, version: version, fileID: fileID, arguments: repeat each arguments, body: body)
    }
    guard CacheClient.mayBlock, ttl > .zero else { return try body() }
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        return try body()
    }
    let lookup = client.lookupBlocking(call, refresh: true)
    if let value: Result = call.hitValue(lookup) {
        if case .refresh(_, let connection) = lookup {
            refreshInBackgroundBlocking(call, on: connection, ttl: ttl, client: client, body: body)
        }
        return value
    }
    return try computeAndStoreBlocking(call, after: lookup, ttl: ttl, client: client, body: body)
}

/// Runs `body` in a detached task and stores its result through
/// `connection`: an early refresh the gateway asked for.
@usableFromInline
func refreshInBackground<Result: Encodable & SendableMetatype, Failure: Error>(
    _ call: CachedCall,
    on connection: GatewayLink,
    ttl: Duration,
    client: CacheClient,
    body: @escaping @Sendable () async throws(Failure) -> Result
) {
    client.metrics.refreshesStarted.increment()
    let site = call.site
    let key = call.key
    Task.detached {
        let started = ContinuousClock.now
        guard let value = try? await body(), let encoded = try? MessagePackEncoder().encode(value) else {
            client.metrics.refreshesFailed.increment()
            return
        }
        client.store(encoded, site: site, key: key, ttl: ttl, computeTime: ContinuousClock.now - started, on: connection)
    }
}

/// `refreshInBackground` for `cacheSync`: on a Dispatch global queue.
@usableFromInline
func refreshInBackgroundBlocking<Result: Encodable & SendableMetatype, Failure: Error>(
    _ call: CachedCall,
    on connection: GatewayLink,
    ttl: Duration,
    client: CacheClient,
    body: @escaping @Sendable () throws(Failure) -> Result
) {
    client.metrics.refreshesStarted.increment()
    let site = call.site
    let key = call.key
    DispatchQueue.global(qos: .utility).async {
        let started = ContinuousClock.now
        guard let value = try? body(), let encoded = try? MessagePackEncoder().encode(value) else {
            client.metrics.refreshesFailed.increment()
            return
        }
        client.store(encoded, site: site, key: key, ttl: ttl, computeTime: ContinuousClock.now - started, on: connection)
    }
}

/// The rest of `cache` after anything but a usable hit: single flight, then
/// `body`, then storing its result.
@usableFromInline
func computeAndStore<Result: Codable, Failure: Error>(
    _ call: CachedCall,
    after lookup: CacheClient.Lookup,
    ttl: Duration,
    client: CacheClient,
    isolation: isolated (any Actor)? = #isolation,
    body: () async throws(Failure) -> Result
) async throws(Failure) -> Result {
    switch await client.singleFlight.join(call.flightKey) {
    case .follower(let encoded):
        if let value: Result = call.decoded(encoded) { return value }
        return try await body()
    case .leader:
        var encoded: [UInt8]?
        defer { client.singleFlight.finish(call.flightKey, encoded: encoded) }
        let started = ContinuousClock.now
        let value = try await body()
        encoded = call.publish(value, computeTime: ContinuousClock.now - started, ttl: ttl, after: lookup, client: client)
        return value
    }
}

/// `computeAndStore` for `cacheSync`.
@usableFromInline
func computeAndStoreBlocking<Result: Codable, Failure: Error>(
    _ call: CachedCall,
    after lookup: CacheClient.Lookup,
    ttl: Duration,
    client: CacheClient,
    body: () throws(Failure) -> Result
) throws(Failure) -> Result {
    switch client.singleFlight.joinBlocking(call.flightKey) {
    case .follower(let encoded):
        if let value: Result = call.decoded(encoded) { return value }
        return try body()
    case .leader:
        var encoded: [UInt8]?
        defer { client.singleFlight.finish(call.flightKey, encoded: encoded) }
        let started = ContinuousClock.now
        let value = try body()
        encoded = call.publish(value, computeTime: ContinuousClock.now - started, ttl: ttl, after: lookup, client: client)
        return value
    }
}

/// One call's identity: the function version and the key.
// `package`, not internal: the benchmarks (Benchmarks/GatewayBenchmarks) take
// a hit apart with it.
@usableFromInline
package struct CachedCall {
    /// The function version, resolved once per call site (`CallSite`).
    @usableFromInline package let site: CallSite
    @usableFromInline package let key: CacheKey

    /// The qualified function and version.
    var function: FunctionVersion { self.site.function }

    /// The value of a hit (status 0 or 4), if the lookup was one and its
    /// bytes decode (a value that does not decode is recomputed, as on a miss).
    @inlinable
    func hitValue<Result: Decodable>(_ lookup: CacheClient.Lookup) -> Result? {
        switch lookup {
        case .hit(let bytes, _), .refresh(let bytes, _): self.value(from: bytes)
        case .miss, .bypass, .wait: nil
        }
    }

    /// A hit's bytes, decoded.
    @inlinable
    package func value<Result: Decodable>(from bytes: ByteBuffer) -> Result? {
        try? MessagePackDecoder().decode(Result.self, from: bytes)
    }

    /// A single-flight leader's encoded result, decoded; nil when the leader failed.
    func decoded<Result: Decodable>(_ encoded: [UInt8]?) -> Result? {
        encoded.flatMap { try? MessagePackDecoder().decode(Result.self, from: $0) }
    }

    /// Encodes the leader's result for its followers and, after a miss (or a
    /// hit whose bytes did not decode, which this replaces), stores it; not
    /// after "do not store" or with no gateway. Returns the bytes, or nil when
    /// the result cannot be encoded.
    func publish<Result: Encodable>(_ value: Result, computeTime: Duration, ttl: Duration, after lookup: CacheClient.Lookup, client: CacheClient) -> [UInt8]? {
        guard let encoded = try? MessagePackEncoder().encode(value) else { return nil }
        switch lookup {
        case .miss(let connection), .hit(_, let connection), .refresh(_, let connection):
            client.store(encoded, site: self.site, key: self.key, ttl: ttl, computeTime: computeTime, on: connection)
        case .bypass, .wait:
            break
        }
        return encoded
    }

    var flightKey: SingleFlight.FlightKey {
        SingleFlight.FlightKey(function: self.function.function, version: self.function.version, key: self.key)
    }

    /// nil when the arguments cannot be encoded (then the call is not cached).
    @inlinable
    package init?<Result, each Argument: Encodable>(function: String, version: String, fileID: String, result: Result.Type, arguments: repeat each Argument) {
        let site = CallSite.resolve(function: function, version: version, fileID: fileID)
        guard let key = KeyBuilder.key(site: site, result: Result.self, arguments: repeat each arguments) else { return nil }
        self.site = site
        self.key = key
    }
}
