import NIOCore

/// What the replies of sentinels and of a master's `ROLE` mean, as pure
/// functions and a value type with no I/O.
enum SentinelReplies {
    /// The answer to `SENTINEL get-master-addr-by-name`.
    enum MasterAddress: Equatable, Sendable {
        /// The master's address.
        case address(host: String, port: Int)
        /// The sentinel does not monitor a master of that name (a null reply).
        case unknownMaster
        /// The sentinel answered with an error (`-NOAUTH`, `-ERR unknown command`, …).
        case refused(String)
        /// Anything else.
        case malformed(String)
    }

    /// Reads `SENTINEL get-master-addr-by-name`'s reply: `[host, port]`, or null.
    static func masterAddress(_ reply: RESPValue) -> MasterAddress {
        switch reply {
        case .array(nil), .bulkString(nil):
            return .unknownMaster
        case .error(let message):
            return .refused(message)
        case .array(let parts?) where parts.count == 2:
            guard let host = parts[0].string, !host.isEmpty,
                let portText = parts[1].string, let port = Int(portText), (1...65535).contains(port)
            else { return .malformed("\(reply)") }
            return .address(host: host, port: port)
        default:
            return .malformed("\(reply)")
        }
    }

    /// The role `ROLE` answers (`master`, `slave`, `sentinel`), or nil for a reply that is not one.
    static func role(_ reply: RESPValue) -> String? {
        guard let parts = reply.array, let role = parts.first?.string else { return nil }
        return role
    }

    /// The channel sentinels announce a new master on.
    static let switchMasterChannel = "+switch-master"

    /// A `+switch-master` announcement: `<name> <old-ip> <old-port> <new-ip> <new-port>`.
    struct SwitchMaster: Equatable, Sendable {
        var masterName: String
        var newHost: String
        var newPort: Int
    }

    /// Reads a `+switch-master` message's payload; nil when it is not one.
    static func switchMaster(_ payload: String) -> SwitchMaster? {
        let fields = payload.split(separator: " ")
        guard fields.count == 5, let port = Int(fields[4]), (1...65535).contains(port), !fields[3].isEmpty else { return nil }
        return SwitchMaster(masterName: String(fields[0]), newHost: String(fields[3]), newPort: port)
    }
}

/// What a subscriber's connection to a sentinel receives, in order: the
/// replies to its handshake, to `SUBSCRIBE +switch-master`, then messages
/// and the replies to its keep-alive `PING`s (`["pong", ""]` while subscribed).
struct SentinelSubscriptionReplies: Sendable {
    /// What one reply means.
    enum Event: Equatable, Sendable {
        /// Nothing to report (a handshake reply that went well).
        case none
        /// Subscribed: announcements arrive from now on.
        case subscribed
        /// A master moved.
        case switched(SentinelReplies.SwitchMaster)
        /// A keep-alive `PING` was answered.
        case pong
        /// The connection cannot be used: close it.
        case failed(String)
    }

    private enum Stage: Sendable {
        case handshake(remaining: Int)
        case subscribing
        case subscribed
    }

    private var stage: Stage

    /// Expects `handshakeReplies` replies (AUTH, PING) before `SUBSCRIBE`'s.
    init(handshakeReplies: Int) {
        self.stage = handshakeReplies > 0 ? .handshake(remaining: handshakeReplies) : .subscribing
    }

    /// The meaning of the next reply.
    mutating func receive(_ reply: RESPValue) -> Event {
        switch self.stage {
        case .handshake(let remaining):
            if case .error(let message) = reply { return .failed("the sentinel refused the handshake: \(message)") }
            self.stage = remaining > 1 ? .handshake(remaining: remaining - 1) : .subscribing
            return .none
        case .subscribing:
            guard let parts = reply.array, parts.count == 3, parts[0].string == "subscribe", parts[1].string == SentinelReplies.switchMasterChannel else {
                return .failed("SUBSCRIBE answered \(reply)")
            }
            self.stage = .subscribed
            return .subscribed
        case .subscribed:
            guard let parts = reply.array, let kind = parts.first?.string else {
                return .failed("the subscription received \(reply)")
            }
            switch kind {
            case "message" where parts.count == 3 && parts[1].string == SentinelReplies.switchMasterChannel:
                guard let payload = parts[2].string, let switched = SentinelReplies.switchMaster(payload) else {
                    return .failed("a +switch-master message carried \(parts[2])")
                }
                return .switched(switched)
            case "pong":
                return .pong
            default:
                return .failed("the subscription received \(reply)")
            }
        }
    }
}
