#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol

/// Who may use the gateway, and whose entries a connection sees.
///
/// The socket file's mode and group decide who can open the socket at all.
/// On top of that, the gateway reads the peer's credentials from the kernel
/// when it accepts a connection (`SO_PEERCRED`: the uid, gid and pid of the
/// process that connected, which it cannot forge) and checks them here:
///
/// - With both allow-lists empty (the default), everyone who can open the
///   socket is served: the socket's permissions are the access control.
/// - Otherwise a peer is served when its uid is in `allowedUIDs`, or when its
///   effective gid or one of its supplementary groups (`SO_PEERGROUPS`, as
///   they were when it connected) is in `allowedGIDs`: adding a worker's user
///   to an allowed group admits it, as the group does for the socket file.
/// - uid 0 and the gateway's own uid are always served. Either can read the
///   gateway's memory, its HMAC key and its Redis password anyway, so refusing
///   them would protect nothing, and would lock the operator's
///   `cache-gateway stats` out.
///
/// With `namespacePerUID`, each connection's entries live in a namespace of
/// its peer's uid (`<namespace>+uid<N>`; '+' cannot occur in a configured
/// namespace, so no configuration can name it), so that two applications on
/// one host, running as different users, never read each other's entries.
/// Gateways on several hosts that share one Redis share a uid's entries, as
/// they share a namespace's.
///
/// When the credentials cannot be read (not Linux), a peer is served only if
/// no allow-list is set and `namespacePerUID` is off.
public struct AccessControl: Sendable, Hashable {
    /// The uids served; empty with `allowedGIDs` empty means everyone.
    public var allowedUIDs: Set<UInt32>
    /// The gids served (a peer's effective or supplementary groups); empty with `allowedUIDs` empty means everyone.
    public var allowedGIDs: Set<UInt32>
    /// Whether each peer uid gets a namespace of its own.
    public var namespacePerUID: Bool

    /// Creates a policy; the default serves everyone who can open the socket,
    /// all in the configured namespace.
    public init(allowedUIDs: Set<UInt32> = [], allowedGIDs: Set<UInt32> = [], namespacePerUID: Bool = false) {
        self.allowedUIDs = allowedUIDs
        self.allowedGIDs = allowedGIDs
        self.namespacePerUID = namespacePerUID
    }

    /// Whether any allow-list is set.
    public var restrictsPeers: Bool { !self.allowedUIDs.isEmpty || !self.allowedGIDs.isEmpty }

    /// The decision for one connection: its namespace, or why it is refused.
    ///
    /// - Parameters:
    ///   - peer: the peer's credentials, nil when they could not be read.
    ///   - namespace: the configured namespace.
    ///   - gatewayUID: the gateway's own effective uid.
    public func decide(peer: PeerCredentials?, namespace: String, gatewayUID: UInt32 = UInt32(geteuid())) -> ConnectionAccess {
        guard let peer else {
            if self.restrictsPeers || self.namespacePerUID {
                return ConnectionAccess(peer: nil, namespace: namespace, refusal: "the peer's credentials could not be read")
            }
            return ConnectionAccess(peer: nil, namespace: namespace, refusal: nil)
        }
        let allowed = !self.restrictsPeers
            || peer.uid == 0 || peer.uid == gatewayUID
            || self.allowedUIDs.contains(peer.uid) || self.allowedGIDs.contains(peer.gid)
            || !self.allowedGIDs.isDisjoint(with: peer.groups)
        let groups = peer.groups.isEmpty ? "" : " (groups \(peer.groups.sorted().map(String.init).joined(separator: ",")))"
        return ConnectionAccess(
            peer: peer,
            namespace: self.namespacePerUID ? Self.namespace(namespace, uid: peer.uid) : namespace,
            refusal: allowed ? nil : "uid \(peer.uid) and gid \(peer.gid)\(groups) are not allowed to use this gateway"
        )
    }

    /// The namespace of `uid`'s entries under `namespacePerUID`.
    public static func namespace(_ namespace: String, uid: UInt32) -> String {
        "\(namespace)+uid\(uid)"
    }

    /// Parses user ids for `--allow-uid`: numbers or user names, each argument
    /// a comma-separated list. Throws `.invalidConfiguration` for an unknown name.
    public static func userIDs(_ arguments: [String]) throws -> Set<UInt32> {
        try Self.ids(arguments, what: "user") { name in
            guard let entry = getpwnam(name) else { return nil }
            return UInt32(entry.pointee.pw_uid)
        }
    }

    /// Parses group ids for `--allow-gid`: numbers or group names, each argument
    /// a comma-separated list. Throws `.invalidConfiguration` for an unknown name.
    public static func groupIDs(_ arguments: [String]) throws -> Set<UInt32> {
        try Self.ids(arguments, what: "group") { name in
            guard let entry = getgrnam(name) else { return nil }
            return UInt32(entry.pointee.gr_gid)
        }
    }

    private static func ids(_ arguments: [String], what: String, lookUp: (String) -> UInt32?) throws -> Set<UInt32> {
        var ids: Set<UInt32> = []
        for argument in arguments {
            for item in argument.split(separator: ",", omittingEmptySubsequences: false) {
                let name = item.trimmingWhitespace()
                guard !name.isEmpty else {
                    throw GatewayError(.invalidConfiguration, "an empty \(what) in the \(what) list '\(argument)'")
                }
                if name.allSatisfy({ $0.isASCII && $0.isNumber }) {
                    guard let id = UInt32(name), id != UInt32.max else {
                        throw GatewayError(.invalidConfiguration, "\(name) is not a \(what) id")
                    }
                    ids.insert(id)
                } else if let id = lookUp(name) {
                    ids.insert(id)
                } else {
                    throw GatewayError(.invalidConfiguration, "no \(what) called \(name)")
                }
            }
        }
        return ids
    }
}

extension Substring {
    fileprivate func trimmingWhitespace() -> String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}

/// The credentials of the process at the other end of a Unix socket, as the
/// kernel recorded them when it connected (`SO_PEERCRED`).
public struct PeerCredentials: Sendable, Hashable, CustomStringConvertible {
    /// The peer's effective user id.
    public var uid: UInt32
    /// The peer's effective group id.
    public var gid: UInt32
    /// The peer's process id (in the gateway's pid namespace; 0 when unknown).
    public var pid: Int32
    /// The peer's supplementary groups (`SO_PEERGROUPS`); empty when it has
    /// none or they could not be read.
    public var groups: Set<UInt32>

    /// Credentials from their parts.
    public init(uid: UInt32, gid: UInt32, pid: Int32, groups: Set<UInt32> = []) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.groups = groups
    }

    /// `uid=… gid=… pid=…`.
    public var description: String { "uid=\(self.uid) gid=\(self.gid) pid=\(self.pid)" }
}

/// What the gateway decided about one connection when it accepted it.
public struct ConnectionAccess: Sendable, Hashable {
    /// The peer, when its credentials could be read.
    public var peer: PeerCredentials?
    /// The namespace of the connection's entries.
    public var namespace: String
    /// Why the peer is refused; nil when it is served.
    public var refusal: String?

    /// A decision from its parts.
    public init(peer: PeerCredentials?, namespace: String, refusal: String?) {
        self.peer = peer
        self.namespace = namespace
        self.refusal = refusal
    }
}
