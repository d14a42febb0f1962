import NIOCore

/// One message of the cache-gateway protocol: a request, a reply or an error.
///
/// On the wire a message is a MessagePack array `[type, id, field…]`; see
/// docs/PROTOCOL.md for every type and field. Replies echo the id of their
/// request, so a connection may have many requests in flight and receive the
/// replies in any order.
public struct GatewayMessage: Hashable, Sendable {
    /// The protocol version this library speaks.
    public static let protocolVersion: UInt64 = 1

    /// The request id; a reply carries the id of its request. Id 0 is reserved
    /// for errors that cannot be tied to a request.
    public var id: UInt64
    /// What the message says.
    public var body: Body

    /// Creates a message.
    public init(id: UInt64, _ body: Body) {
        self.id = id
        self.body = body
    }

    /// The kinds of message and their fields.
    public enum Body: Hashable, Sendable {
        /// Type 1, request: opens a session (must be the first request).
        case hello(Hello)
        /// Type 2, request: liveness check.
        case ping
        /// Type 3, request: asks for a cached value.
        case lookup(Lookup)
        /// Type 4, request: stores a value.
        case store(Store)
        /// Type 5, request: announces that this connection's worker runs a function version.
        case register(FunctionVersion)
        /// Type 6, request: deletes entries.
        case invalidate(Invalidate)
        /// Type 7, request: asks for the gateway's counters.
        case stats
        /// Type 8, request: asks for the registry's functions, versions and leases.
        case functions
        /// Type 129, reply to hello.
        case helloReply(HelloReply)
        /// Type 130, reply to ping.
        case pong
        /// Type 131, reply to lookup.
        case lookupReply(LookupReply)
        /// Type 132, reply to store.
        case storeReply(stored: Bool)
        /// Type 133, reply to register.
        case registerReply
        /// Type 134, reply to invalidate.
        case invalidateReply(deleted: UInt64)
        /// Type 135, reply to stats.
        case statsReply(Stats)
        /// Type 136, reply to functions.
        case functionsReply([FunctionInfo])
        /// Type 255, the reply to a request that failed.
        case error(ErrorReply)

        /// The message type number.
        public var type: MessageType {
            switch self {
            case .hello: .hello
            case .ping: .ping
            case .lookup: .lookup
            case .store: .store
            case .register: .register
            case .invalidate: .invalidate
            case .stats: .stats
            case .functions: .functions
            case .helloReply: .helloReply
            case .pong: .pong
            case .lookupReply: .lookupReply
            case .storeReply: .storeReply
            case .registerReply: .registerReply
            case .invalidateReply: .invalidateReply
            case .statsReply: .statsReply
            case .functionsReply: .functionsReply
            case .error: .error
            }
        }
    }
}

/// The number that opens every message array.
public struct MessageType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The wire number.
    public let rawValue: UInt64
    /// Wraps a wire number, known or not.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// 1
    public static let hello = MessageType(rawValue: 1)
    /// 2
    public static let ping = MessageType(rawValue: 2)
    /// 3
    public static let lookup = MessageType(rawValue: 3)
    /// 4
    public static let store = MessageType(rawValue: 4)
    /// 5
    public static let register = MessageType(rawValue: 5)
    /// 6
    public static let invalidate = MessageType(rawValue: 6)
    /// 7
    public static let stats = MessageType(rawValue: 7)
    /// 8
    public static let functions = MessageType(rawValue: 8)
    /// 129
    public static let helloReply = MessageType(rawValue: 129)
    /// 130
    public static let pong = MessageType(rawValue: 130)
    /// 131
    public static let lookupReply = MessageType(rawValue: 131)
    /// 132
    public static let storeReply = MessageType(rawValue: 132)
    /// 133
    public static let registerReply = MessageType(rawValue: 133)
    /// 134
    public static let invalidateReply = MessageType(rawValue: 134)
    /// 135
    public static let statsReply = MessageType(rawValue: 135)
    /// 136
    public static let functionsReply = MessageType(rawValue: 136)
    /// 255
    public static let error = MessageType(rawValue: 255)

    /// Whether a peer may send this type to the gateway.
    public var isRequest: Bool { (1...8).contains(self.rawValue) }

    /// The type number.
    public var description: String { "\(self.rawValue)" }
}

/// Fields of hello: `[1, id, protocolVersion, clientName, pid]`.
public struct Hello: Hashable, Sendable {
    /// The protocol version the client speaks (currently 1).
    public var protocolVersion: UInt64
    /// A name for logs, at most 256 bytes of UTF-8 (for example the executable's name).
    public var clientName: String
    /// The client's process id, for logs.
    public var pid: UInt64
    /// Appended field 5: how long, in milliseconds, the client waits for a
    /// held lookup (one sent with `Lookup.holdMilliseconds`). Nonzero
    /// announces that the client handles lookup status 3 (`wait`); 0, or the
    /// field absent (old clients), means the gateway never holds its lookups.
    public var holdMilliseconds: UInt64

    /// Creates hello fields.
    public init(protocolVersion: UInt64 = GatewayMessage.protocolVersion, clientName: String, pid: UInt64, holdMilliseconds: UInt64 = 0) {
        self.protocolVersion = protocolVersion
        self.clientName = clientName
        self.pid = pid
        self.holdMilliseconds = holdMilliseconds
    }
}

/// Fields of the hello reply: `[129, id, protocolVersion, gatewayVersion, maxFrameSize, maxValueSize]`.
public struct HelloReply: Hashable, Sendable {
    /// The protocol version the gateway will speak on this connection.
    public var protocolVersion: UInt64
    /// The gateway's software version, for logs.
    public var gatewayVersion: String
    /// The largest payload, in bytes, the gateway accepts in one frame.
    public var maxFrameSize: UInt64
    /// The largest value, in bytes, the gateway stores.
    public var maxValueSize: UInt64
    /// Appended field 6: the longest the gateway holds a lookup of this
    /// connection, in milliseconds; 0 (or absent, an older gateway) when it
    /// never does (the client did not announce support, or single-flight is off).
    public var holdMilliseconds: UInt64

    /// Creates hello-reply fields.
    public init(protocolVersion: UInt64, gatewayVersion: String, maxFrameSize: UInt64, maxValueSize: UInt64, holdMilliseconds: UInt64 = 0) {
        self.protocolVersion = protocolVersion
        self.gatewayVersion = gatewayVersion
        self.maxFrameSize = maxFrameSize
        self.maxValueSize = maxValueSize
        self.holdMilliseconds = holdMilliseconds
    }
}

/// A function and one version of its code.
public struct FunctionVersion: Hashable, Sendable {
    /// The function's stable name, 1 to 512 bytes of UTF-8, e.g. `Billing.InvoiceService.total(for:currency:)`.
    public var function: String
    /// The version: 1 to 128 bytes of UTF-8; the `@Cached` macro uses the hexadecimal SHA-256 of the source.
    public var version: String

    /// Creates a function version.
    public init(function: String, version: String) {
        self.function = function
        self.version = version
    }
}

/// Fields of lookup: `[3, id, function, version, key]`,
/// `[3, id, function, version, key, holdMilliseconds]` for a held lookup, and
/// `[3, id, function, version, key, holdMilliseconds, true]` from a caller
/// that can refresh the entry in the background.
public struct Lookup: Hashable, Sendable {
    /// The function and version whose entry is wanted.
    public var function: FunctionVersion
    /// The entry's key.
    public var key: CacheKey
    /// Appended field 5: nonzero asks the gateway to hold the lookup, at most
    /// this many milliseconds, while another worker computes the entry (sent
    /// after a `wait` reply). 0 (the field is then not sent) is a plain lookup.
    public var holdMilliseconds: UInt64
    /// Appended field 6: true announces that the caller can refresh the
    /// entry in the background, so a hit may be answered status 4
    /// (`LookupReply.refresh`). False (the field is then not sent) never is.
    public var refresh: Bool

    /// Creates lookup fields.
    public init(function: FunctionVersion, key: CacheKey, holdMilliseconds: UInt64 = 0, refresh: Bool = false) {
        self.function = function
        self.key = key
        self.holdMilliseconds = holdMilliseconds
        self.refresh = refresh
    }
}

/// Fields of the lookup reply: `[131, id, status, value]`.
public enum LookupReply: Hashable, Sendable {
    /// Status 0: the entry exists; here are its bytes.
    case hit(ByteBuffer)
    /// Status 1: no entry; compute the value and store it.
    case miss
    /// Status 2: the backend is unavailable; compute the value and do not store it.
    case missDoNotStore
    /// Status 3: no entry, and another worker is computing it; send the
    /// lookup again with `holdMilliseconds` to be answered when its value
    /// arrives. Only sent to a connection whose hello announced support.
    case wait
    /// Status 4: a hit, and the caller is asked to compute the entry again
    /// and store it (an early refresh). Only sent for a lookup that
    /// announced it can (`Lookup.refresh`).
    case refresh(ByteBuffer)

    /// The value of a hit (status 0 or 4); nil for any other status.
    public var value: ByteBuffer? {
        switch self {
        case .hit(let value), .refresh(let value): value
        case .miss, .missDoNotStore, .wait: nil
        }
    }

    /// The wire status number.
    public var status: UInt64 {
        switch self {
        case .hit: 0
        case .miss: 1
        case .missDoNotStore: 2
        case .wait: 3
        case .refresh: 4
        }
    }
}

/// Fields of store: `[4, id, function, version, key, ttlMilliseconds, computeMicroseconds, value]`.
public struct Store: Hashable, Sendable {
    /// The function and version that computed the value.
    public var function: FunctionVersion
    /// The entry's key.
    public var key: CacheKey
    /// How long the entry lives, 1 ms to `Store.maximumTTLMilliseconds`.
    public var ttlMilliseconds: UInt64
    /// How long computing the value took, in microseconds (for "compute time saved").
    public var computeMicroseconds: UInt64
    /// The value's bytes, opaque to the gateway (the client's MessagePack).
    public var value: ByteBuffer

    /// The longest TTL a store may ask for: 365 days.
    public static let maximumTTLMilliseconds: UInt64 = 365 * 24 * 3600 * 1000

    /// Creates store fields.
    public init(function: FunctionVersion, key: CacheKey, ttlMilliseconds: UInt64, computeMicroseconds: UInt64, value: ByteBuffer) {
        self.function = function
        self.key = key
        self.ttlMilliseconds = ttlMilliseconds
        self.computeMicroseconds = computeMicroseconds
        self.value = value
    }
}

/// Fields of invalidate: `[6, id, function, version, key]`, where `version` and
/// `key` may be nil.
public struct Invalidate: Hashable, Sendable {
    /// The function whose entries go.
    public var function: String
    /// Only this version's entries; nil for every version.
    public var version: String?
    /// Only the entry with this key (in `version`, or in every version when
    /// `version` is nil).
    public var key: CacheKey?

    /// Creates invalidate fields.
    public init(function: String, version: String? = nil, key: CacheKey? = nil) {
        self.function = function
        self.version = version
        self.key = key
    }
}

/// Fields of the stats reply: `[135, id, stats]`, where `stats` is a map from
/// names to unsigned integers or strings.
public struct Stats: Hashable, Sendable {
    /// One statistic's value.
    public enum Value: Hashable, Sendable {
        /// A counter or gauge.
        case count(UInt64)
        /// A word such as a backend's health.
        case text(String)
    }

    /// The statistics by name; docs/PROTOCOL.md lists the names the gateway sends.
    public var values: [String: Value]

    /// Creates a stats reply.
    public init(values: [String: Value]) { self.values = values }

    /// The counter called `name`, if there is one.
    public subscript(count name: String) -> UInt64? {
        if case .count(let value) = self.values[name] { return value }
        return nil
    }
}

/// Fields of an error reply: `[255, id, code, message]`.
public struct ErrorReply: Hashable, Sendable {
    /// The stable error code.
    public var code: ErrorCode
    /// What happened, for people.
    public var message: String

    /// Creates error-reply fields.
    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }

    /// The reply that reports `error` to a peer.
    public init(_ error: GatewayError) {
        self.init(code: error.wireCode, message: error.message)
    }
}

/// One function in the functions reply:
/// `[function, hits, misses, computeSavedMicroseconds, versions]`.
///
/// The versions, first and last use and leases come from the registry, which
/// every gateway on the same backend shares; hits, misses and compute time
/// saved are this gateway's own counters since it started.
public struct FunctionInfo: Hashable, Sendable {
    /// The function's stable name.
    public var function: String
    /// Lookups of this function that this gateway answered with a hit.
    public var hits: UInt64
    /// Lookups of this function that this gateway answered with a miss.
    public var misses: UInt64
    /// The compute time that those hits saved: the sum of the hit entries'
    /// recorded compute times, in microseconds.
    public var computeSavedMicroseconds: UInt64
    /// The versions the registry knows, newest first.
    public var versions: [VersionInfo]

    /// Creates a function record.
    public init(function: String, hits: UInt64 = 0, misses: UInt64 = 0, computeSavedMicroseconds: UInt64 = 0, versions: [VersionInfo] = []) {
        self.function = function
        self.hits = hits
        self.misses = misses
        self.computeSavedMicroseconds = computeSavedMicroseconds
        self.versions = versions
    }
}

/// One version of a function in the functions reply:
/// `[version, firstSeen, lastSeen, entries, state, leases]`.
public struct VersionInfo: Hashable, Sendable {
    /// The version string.
    public var version: String
    /// When a worker first registered it, in Unix milliseconds.
    public var firstSeenMilliseconds: UInt64
    /// When it was last known to be in use (a lease held or released), in Unix milliseconds.
    public var lastSeenMilliseconds: UInt64
    /// How many of its entries are live (an estimate for Redis: index members not yet expired).
    public var entries: UInt64
    /// `active` (a live lease), `idle` (no live lease, not purged yet) or `retired`
    /// (its entries were purged and no worker has used it since).
    public var state: String
    /// The gateways holding a lease on it.
    public var leases: [LeaseInfo]

    /// Creates a version record.
    public init(version: String, firstSeenMilliseconds: UInt64, lastSeenMilliseconds: UInt64, entries: UInt64, state: String, leases: [LeaseInfo]) {
        self.version = version
        self.firstSeenMilliseconds = firstSeenMilliseconds
        self.lastSeenMilliseconds = lastSeenMilliseconds
        self.entries = entries
        self.state = state
        self.leases = leases
    }
}

/// A gateway's lease on a version: `[gateway, expires]`.
public struct LeaseInfo: Hashable, Sendable {
    /// The gateway's id (`--gateway-id`, by default host name and process id).
    public var gateway: String
    /// When the lease lapses unless renewed, in Unix milliseconds.
    public var expiresMilliseconds: UInt64

    /// Creates a lease record.
    public init(gateway: String, expiresMilliseconds: UInt64) {
        self.gateway = gateway
        self.expiresMilliseconds = expiresMilliseconds
    }
}
