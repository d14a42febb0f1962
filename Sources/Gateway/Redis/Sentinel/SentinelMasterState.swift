/// What a Sentinel resolver knows, as a value type with no I/O: which
/// sentinel to ask first, where the master is, and whether an answer moves it.
///
/// **Order.** Sentinels are asked in the configured order, except that the
/// last one to answer goes first (Redis's guideline for Sentinel clients): a
/// sentinel that is down costs one timeout once, not on every resolution.
///
/// **Moves.** The master is where the last answer put it. An answer that
/// differs from the known master moves it (`.moved`): the pool is replaced.
/// Two sources race: a query's answer and a `+switch-master` announcement.
/// An announcement is the newer news, so a query that was sent before an
/// announcement arrived and answers differently is `.superseded` and moves
/// nothing (it may carry the old master, asked before the failover).
struct SentinelMasterState<Endpoint: Hashable & Sendable>: Sendable {
    /// What an answer did.
    enum Outcome: Equatable, Sendable {
        /// The first master known: nothing to replace.
        case found(Endpoint)
        /// The master it names is the one known already.
        case unchanged(Endpoint)
        /// The master moved: connections to `from` must go.
        case moved(from: Endpoint, to: Endpoint)
        /// A newer announcement disagrees; the master stays `current`.
        case superseded(current: Endpoint)
    }

    /// A query in flight: how many announcements had arrived when it was sent.
    struct Ticket: Equatable, Sendable {
        fileprivate let announcements: Int
    }

    /// The sentinels' indices, in the order to try them.
    private(set) var order: [Int]
    /// The master as last known, or nil before any answer.
    private(set) var master: Endpoint?
    private var announcements = 0

    /// `sentinelCount` sentinels, tried in their given order at first.
    init(sentinelCount: Int) {
        self.order = Array(0..<sentinelCount)
    }

    /// A query is sent now.
    func beginQuery() -> Ticket {
        Ticket(announcements: self.announcements)
    }

    /// Sentinel `sentinel` answered the query `ticket` with `endpoint`.
    mutating func answered(_ endpoint: Endpoint, by sentinel: Int, ticket: Ticket) -> Outcome {
        if let position = self.order.firstIndex(of: sentinel), position != 0 {
            self.order.remove(at: position)
            self.order.insert(sentinel, at: 0)
        }
        if let master = self.master, ticket.announcements != self.announcements, master != endpoint {
            return .superseded(current: master)
        }
        return self.move(to: endpoint)
    }

    /// A sentinel announced (`+switch-master`) that the master is now `endpoint`.
    mutating func announced(_ endpoint: Endpoint) -> Outcome {
        self.announcements += 1
        return self.move(to: endpoint)
    }

    private mutating func move(to endpoint: Endpoint) -> Outcome {
        guard let master = self.master else {
            self.master = endpoint
            return .found(endpoint)
        }
        guard master != endpoint else { return .unchanged(endpoint) }
        self.master = endpoint
        return .moved(from: master, to: endpoint)
    }
}
