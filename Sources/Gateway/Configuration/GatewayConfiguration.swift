import GatewayProtocol
import GatewaySystem
import NIOCore

/// The server's settings: its socket, limits, namespace and access control,
/// with a default for every field.
///
/// `GatewayApplication.Configuration.server` holds one; `GatewayServer` reads it.
public struct GatewayConfiguration: Sendable {
    /// Where the gateway listens. Default: `/run/cache-gateway/gateway.sock`.
    /// With an inherited listener it names that socket (for logs), and the
    /// gateway neither creates nor removes the file.
    public var socketPath: String
    /// Whether the gateway binds `socketPath` itself (the default) or serves a
    /// listening socket it was handed (systemd socket activation).
    public var listener: Listener
    /// The socket file's permission bits, e.g. 0o660. Default: 0o660.
    public var socketMode: UInt32
    /// The socket file's group (a name or a numeric id); nil keeps the process's group.
    public var socketGroup: String?
    /// Separates applications that share one backend. Default: `default`.
    public var namespace: String
    /// The largest frame payload accepted, in bytes.
    public var maxFrameSize: Int
    /// The largest value stored, in bytes.
    public var maxValueSize: Int
    /// The most requests one connection may have waiting on the store; at
    /// the limit the connection stops reading until one is answered.
    public var maxInFlightPerConnection: Int
    /// How long a frame may take to arrive once its first byte has: a peer that
    /// starts a frame and stalls is answered `malformedFrame` and disconnected.
    /// Default: 10 s.
    public var frameTimeout: TimeAmount
    /// Who may use the gateway (by the peer's uid and gid) and whether each uid
    /// gets a namespace of its own. Default: everyone who can open the socket,
    /// one namespace.
    public var accessControl: AccessControl
    /// Whether a lookup that misses while another lookup of the same entry
    /// is computing on this gateway waits for its value (single-flight;
    /// only for clients that announce support). Default: on.
    public var singleFlight: Bool
    /// The longest a computation may run before a waiting lookup is told to
    /// compute instead (the bound is twice the function's last recorded
    /// compute time, at most this). Default: 2 s.
    public var fillWaitCap: TimeAmount
    /// XFetch's beta for early refresh: how early a hit asks its caller to
    /// compute the entry again (clients that announce support only; see
    /// `EarlyRefresh`). 0 turns early refresh off; it needs single-flight.
    /// Default: 1.
    public var earlyRefreshBeta: Double

    /// The default socket path.
    public static let defaultSocketPath = "/run/cache-gateway/gateway.sock"

    /// Creates a configuration; every argument has a default.
    public init(
        socketPath: String = GatewayConfiguration.defaultSocketPath,
        socketMode: UInt32 = 0o660,
        socketGroup: String? = nil,
        namespace: String = "default",
        maxFrameSize: Int = FrameLimits.defaultMaxFrameSize,
        maxValueSize: Int = 4 * 1024 * 1024,
        maxInFlightPerConnection: Int = 4096,
        frameTimeout: TimeAmount = .seconds(10),
        accessControl: AccessControl = AccessControl(),
        listener: Listener = .bind,
        singleFlight: Bool = true,
        fillWaitCap: TimeAmount = .seconds(2),
        earlyRefreshBeta: Double = 1
    ) {
        self.singleFlight = singleFlight
        self.fillWaitCap = fillWaitCap
        self.earlyRefreshBeta = earlyRefreshBeta
        self.socketPath = socketPath
        self.listener = listener
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.namespace = namespace
        self.maxFrameSize = maxFrameSize
        self.maxValueSize = maxValueSize
        self.maxInFlightPerConnection = maxInFlightPerConnection
        self.frameTimeout = frameTimeout
        self.accessControl = accessControl
    }

    /// Checks the fields against each other; throws `.invalidConfiguration`.
    public func validate() throws {
        func fail(_ message: String) -> GatewayError { GatewayError(.invalidConfiguration, message) }
        guard !self.socketPath.isEmpty else { throw fail("the socket path is empty") }
        guard self.socketPath.utf8.count <= UnixSocketAddress.maximumPathLength else {
            throw fail("the socket path is \(self.socketPath.utf8.count) bytes; Unix sockets allow at most \(UnixSocketAddress.maximumPathLength)")
        }
        guard self.socketMode <= 0o777 else { throw fail("the socket mode \(String(self.socketMode, radix: 8)) is not a permission mode") }
        // The namespace is part of Redis keys, whose fields are separated by ':'.
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-".utf8)
        guard !self.namespace.isEmpty, self.namespace.utf8.count <= 128, self.namespace.utf8.allSatisfy(allowed.contains) else {
            throw fail("the namespace must be 1 to 128 characters of A-Z, a-z, 0-9, '_', '.' and '-'")
        }
        guard self.maxFrameSize >= 1024, self.maxFrameSize <= Int(UInt32.max) else {
            throw fail("the largest frame must be 1 KiB to 4 GiB, is \(self.maxFrameSize)")
        }
        // A store frame carries the value plus at most about 700 bytes of fields.
        guard self.maxValueSize >= 1, self.maxValueSize + 1024 <= self.maxFrameSize else {
            throw fail("the largest value (\(self.maxValueSize)) must be at least 1 KiB below the largest frame (\(self.maxFrameSize))")
        }
        guard self.maxInFlightPerConnection >= 1 else { throw fail("the in-flight limit must be at least 1") }
        guard self.frameTimeout > .zero else { throw fail("the frame timeout must be positive") }
        guard self.fillWaitCap >= .milliseconds(1) else { throw fail("the fill wait cap must be at least 1 ms") }
        guard self.earlyRefreshBeta.isFinite, (0...100).contains(self.earlyRefreshBeta) else {
            throw fail("the early-refresh beta must be 0 (off) to 100, is \(self.earlyRefreshBeta)")
        }
    }

    /// How the gateway gets its listening socket. A struct around an internal
    /// enum, so that choices can be added without breaking code that uses it.
    public struct Listener: Sendable, Equatable, CustomStringConvertible {
        enum Base: Sendable, Equatable {
            case bind
            case inherited(descriptor: Int32)
        }

        let base: Base

        /// The gateway binds `socketPath`: it removes a stale socket file
        /// first, sets the file's mode and group, and removes it on exit.
        public static let bind = Listener(base: .bind)

        /// The gateway serves `descriptor`, a Unix stream socket that is
        /// already bound and listening (from systemd, see
        /// `SystemdSocketActivation`). Whoever made it owns the file, its
        /// mode and group, and its removal.
        public static func inherited(descriptor: Int32) -> Listener {
            Listener(base: .inherited(descriptor: descriptor))
        }

        /// `bind` or `inherited descriptor N`.
        public var description: String {
            switch self.base {
            case .bind: "bind"
            case .inherited(let descriptor): "inherited descriptor \(descriptor)"
            }
        }
    }
}
