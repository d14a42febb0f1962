import Foundation
import GatewayConnection
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
///   first "/"); `version` keeps results of different code apart.
/// - Fail-open: when the gateway is absent, slow (over
///   `CacheClient.Configuration.lookupTimeout`) or answers an error, `body` runs
///   and its result is returned (and not stored). Errors thrown by `body`
///   propagate and are never cached. A result larger than the gateway's value
///   limit is returned and not stored.
/// - Identical concurrent calls in this process run `body` once; the others
///   get its result.
public func cache<Result: Codable, each Argument: Encodable>(
    ttl: Duration,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    isolation: isolated (any Actor)? = #isolation,
    body: () async throws -> Result
) async rethrows -> Result {
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        // The arguments cannot be encoded: there is no key, so nothing is cached.
        return try await body()
    }
    let lookup: CacheClient.Lookup
    switch client.access() {
    case .bypass:
        lookup = .bypass
    case .use(let connection):
        lookup = (try? await client.lookup(call.function, key: call.key, on: connection).get()) ?? .bypass
    case .connect:
        if let connection = try? await client.connect().get() {
            lookup = (try? await client.lookup(call.function, key: call.key, on: connection).get()) ?? .bypass
        } else {
            lookup = .bypass
        }
    }
    if case .hit(let bytes) = lookup, let value = try? MessagePackDecoder().decode(Result.self, from: bytes) {
        return value
    }
    switch await client.singleFlight.join(call.flightKey) {
    case .follower(let encoded?):
        if let value = try? MessagePackDecoder().decode(Result.self, from: encoded) { return value }
        return try await body()
    case .follower(nil):
        return try await body()
    case .leader:
        var encoded: [UInt8]?
        defer { client.singleFlight.finish(call.flightKey, encoded: encoded) }
        let started = ContinuousClock.now
        let value = try await body()
        let computeTime = ContinuousClock.now - started
        encoded = try? MessagePackEncoder().encode(value)
        if case .miss(let connection, let maxValueSize) = lookup, let encoded {
            client.store(encoded, function: call.function, key: call.key, ttl: ttl, computeTime: computeTime, on: connection, maxValueSize: maxValueSize)
        }
        return value
    }
}

/// The synchronous form of `cache(ttl:function:version:fileID:arguments:isolation:body:)`,
/// for functions that are not `async`. It blocks the calling thread while it
/// waits for the gateway (at most the lookup timeout). Called on a SwiftNIO
/// event loop thread, where blocking is not allowed, it runs `body` uncached.
public func cacheSync<Result: Codable, each Argument: Encodable>(
    ttl: Duration,
    function: String,
    version: String,
    fileID: String = #fileID,
    arguments: repeat each Argument,
    body: () throws -> Result
) rethrows -> Result {
    guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { return try body() }
    let client = CacheClient.shared
    guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        return try body()
    }
    let lookup: CacheClient.Lookup
    switch client.access() {
    case .bypass:
        lookup = .bypass
    case .use(let connection):
        lookup = (try? client.lookup(call.function, key: call.key, on: connection).wait()) ?? .bypass
    case .connect:
        if let connection = try? client.connect().wait() {
            lookup = (try? client.lookup(call.function, key: call.key, on: connection).wait()) ?? .bypass
        } else {
            lookup = .bypass
        }
    }
    if case .hit(let bytes) = lookup, let value = try? MessagePackDecoder().decode(Result.self, from: bytes) {
        return value
    }
    switch client.singleFlight.joinBlocking(call.flightKey) {
    case .follower(let encoded?):
        if let value = try? MessagePackDecoder().decode(Result.self, from: encoded) { return value }
        return try body()
    case .follower(nil):
        return try body()
    case .leader:
        var encoded: [UInt8]?
        defer { client.singleFlight.finish(call.flightKey, encoded: encoded) }
        let started = ContinuousClock.now
        let value = try body()
        let computeTime = ContinuousClock.now - started
        encoded = try? MessagePackEncoder().encode(value)
        if case .miss(let connection, let maxValueSize) = lookup, let encoded {
            client.store(encoded, function: call.function, key: call.key, ttl: ttl, computeTime: computeTime, on: connection, maxValueSize: maxValueSize)
        }
        return value
    }
}

/// One call's identity: the qualified function, its version and the key.
struct CachedCall {
    let function: FunctionVersion
    let key: CacheKey

    var flightKey: SingleFlight.FlightKey {
        SingleFlight.FlightKey(function: self.function.function, version: self.function.version, key: self.key)
    }

    /// nil when the arguments cannot be encoded (then the call is not cached).
    init?<Result, each Argument: Encodable>(function: String, version: String, fileID: String, result: Result.Type, arguments: repeat each Argument) {
        let module = fileID.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
        let qualified = module.isEmpty ? function : "\(module).\(function)"
        var values: [any Encodable] = []
        var types: [String] = []
        for argument in repeat each arguments {
            values.append(argument)
            types.append(String(reflecting: type(of: argument)))
        }
        let material = KeyMaterial(result: String(reflecting: Result.self), argumentTypes: types, arguments: values)
        guard let key = try? CacheKey(hashing: material) else { return nil }
        self.function = FunctionVersion(function: qualified, version: version)
        self.key = key
    }
}

/// What a key is the hash of: `[resultType, [argumentTypes], argument…]`.
private struct KeyMaterial: Encodable {
    let result: String
    let argumentTypes: [String]
    let arguments: [any Encodable]

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(self.result)
        try container.encode(self.argumentTypes)
        for argument in self.arguments {
            try container.encode(argument)
        }
    }
}
