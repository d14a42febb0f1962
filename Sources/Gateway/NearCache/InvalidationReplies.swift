/// What the invalidation listener's connection receives, in order, as a
/// value type with no I/O: the replies to its handshake, to `CLIENT ID` and
/// to `SUBSCRIBE __redis__:invalidate`, then messages, and the replies to its
/// keep-alive `PING`s.
///
/// In RESP2, Redis sends invalidations to a subscribed connection as pub/sub
/// messages on the channel `__redis__:invalidate`: `["message",
/// "__redis__:invalidate", [key, …]]`, or with a null in place of the keys
/// when the whole database changed (`FLUSHDB`, `FLUSHALL`). A subscribed
/// connection answers `PING` with `["pong", ""]`.
struct InvalidationReplies: Sendable {
    /// The channel Redis sends invalidations to.
    static let channel = "__redis__:invalidate"

    /// What one reply means.
    enum Event: Equatable, Sendable {
        /// Nothing to report (a handshake reply that went well).
        case none
        /// Subscribed: invalidations for clients redirecting to `clientID` arrive from now on.
        case subscribed(clientID: Int64)
        /// These keys changed.
        case invalidated([String])
        /// Every key changed.
        case flushed
        /// A keep-alive `PING` was answered.
        case pong
        /// The connection cannot be used: close it.
        case failed(String)
    }

    private enum Stage: Sendable {
        case handshake(remaining: Int)
        case clientID
        case subscribing(clientID: Int64)
        case subscribed
    }

    private var stage: Stage

    /// Expects `handshakeReplies` handshake replies first (AUTH, SELECT,
    /// CLIENT SETNAME, PING as sent), then those of `CLIENT ID` and `SUBSCRIBE`.
    init(handshakeReplies: Int) {
        self.stage = handshakeReplies > 0 ? .handshake(remaining: handshakeReplies) : .clientID
    }

    /// The meaning of the next reply.
    mutating func receive(_ reply: RESPValue) -> Event {
        switch self.stage {
        case .handshake(let remaining):
            if case .error(let message) = reply { return .failed("Redis refused the listener's handshake: \(message)") }
            self.stage = remaining > 1 ? .handshake(remaining: remaining - 1) : .clientID
            return .none
        case .clientID:
            guard let id = reply.integer else { return .failed("CLIENT ID answered \(reply)") }
            self.stage = .subscribing(clientID: id)
            return .none
        case .subscribing(let id):
            guard let parts = reply.array, parts.count == 3, parts[0].string == "subscribe", parts[1].string == Self.channel else {
                return .failed("SUBSCRIBE answered \(reply)")
            }
            self.stage = .subscribed
            return .subscribed(clientID: id)
        case .subscribed:
            guard let parts = reply.array, let kind = parts.first?.string else {
                return .failed("the listener received \(reply)")
            }
            switch kind {
            case "message" where parts.count == 3 && parts[1].string == Self.channel:
                switch parts[2] {
                case .array(let keys?):
                    return .invalidated(keys.compactMap(\.string))
                case .array(nil), .bulkString(nil):
                    return .flushed
                case .bulkString(let key?):
                    return .invalidated([String(buffer: key)])
                default:
                    return .failed("an invalidation message carried \(parts[2])")
                }
            case "pong":
                return .pong
            default:
                return .failed("the listener received \(reply)")
            }
        }
    }
}
