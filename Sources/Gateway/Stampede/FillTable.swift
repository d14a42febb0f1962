import NIOCore

/// The single-flight bookkeeping of one gateway: which entries a worker is
/// computing now (a *fill*), and which lookups wait for each.
///
/// A value type without I/O: `FillCoordinator` owns one behind a lock,
/// carries out what its methods return (answering lookups on their
/// connections) and feeds it the clock.
///
/// - The first lookup of a key that misses starts a fill: its connection is
///   the *filler*, told to compute, and the fill has a deadline (`bound`).
/// - A later lookup that misses while the fill runs is told to wait (status
///   3) when its connection announced support, and is held when it is such a
///   connection's held lookup; a lookup of any other connection is told to
///   compute, as before single-flight, and does not become the filler.
/// - A store of the key ends the fill: every held lookup gets the value, and
///   so does a lookup that misses while the store is on its way to the
///   backend (its read may have passed the write there), until
///   `storeFinished`. A lookup that started before the backend confirmed the
///   store and still missed (its read passed the write on another backend
///   connection) starts no new fill: it is read again (`retry`), now after
///   the write (for `raceWindow` after each store).
/// - When the filler's connection closes without storing, or the fill's
///   deadline passes, the oldest held lookup becomes the filler (told to
///   compute) with a new deadline: one at a time.
/// - A held lookup whose own limit (what its client waits) passes is told to
///   compute, without becoming the filler.
/// - An early refresh is a fill that a hit starts (`refresh`): the entry is
///   still there, so hits go on, and none of them is asked to refresh it
///   again while it runs; a lookup that misses meanwhile (the entry expired)
///   waits for it like for any fill. It ends like any fill: the store, the
///   filler's connection closing, or its deadline. A refresh the gateway
///   could not grant after all (another gateway holds the entry's lease)
///   ends at once (`cancelRefresh`).
///
/// **Fill leases** (`leases: true` in `miss`; gateways sharing Redis): a fill
/// of this gateway is one of possibly several, one per gateway, and at most
/// one of them computes: the one whose gateway holds the entry's lease in
/// the backend (`FillLeases`). The table says when to ask (`Outcome.claim`)
/// and the coordinator feeds the answers back (`claimed`):
/// - The first miss of a key starts a fill in `Lease.claiming` with no
///   filler: a lookup of a connection that announced support is told to
///   wait (or held), and the oldest held lookup becomes the filler once the
///   lease is taken (`Outcome.elected`). A connection that did not announce
///   support is told to compute at once, as always, and is the filler; the
///   claim still goes out, so that other gateways wait for its store.
/// - Held elsewhere: no filler here (`Lease.elsewhere`); the held lookups
///   wait for the other gateway's value, which the coordinator reads again
///   when the backend says the entry changed, or every `poll` without such
///   news (`Outcome.reread`, `valueArrived`). When the other lease's time is
///   up without a value, the lease is asked for again: the holder died or
///   hung, and one waiter here takes over (`Outcome.elected`, `takeover`).
/// - Backend unavailable: the fill goes on as a fill of this gateway alone
///   (`Lease.none`), as without leases: fail open.
/// - A lease this gateway holds lapses at the fill's deadline; the fill then
///   asks again before a waiter takes over (`Outcome.leaseLost`, `claim`),
///   and a fill that passes to a local waiter because the filler's
///   connection closed renews it (`claim` again: the lease is taken when it
///   is free or already this gateway's). A fill that ends with nobody here
///   to take over gives the lease back (`Outcome.release`).
struct FillTable<Key: Hashable & Sendable, Value: Equatable & Sendable>: Sendable {
    /// A held lookup: the connection and request it came on, and when it
    /// must be answered at the latest.
    struct Waiter: Hashable, Sendable {
        var connection: UInt64
        var request: UInt64
        var giveUpAt: NIODeadline
    }

    /// Where a fill's lease stands (see "Fill leases" above).
    enum Lease: Equatable, Sendable {
        /// No lease: this gateway alone decides (no leases, or the backend
        /// did not answer: fail open).
        case none
        /// Asked for; the answer is on its way.
        case claiming
        /// This gateway holds it until the fill's deadline.
        case held
        /// Another gateway holds it until the fill's deadline.
        case elsewhere
    }

    /// One running computation.
    struct Fill: Sendable {
        /// The connection computing; nil while nobody on this gateway does
        /// (the lease is being asked for, or is held elsewhere).
        var filler: UInt64?
        /// When the filler is replaced (or, held elsewhere, when the other
        /// gateway's lease lapses).
        var deadline: NIODeadline
        var bound: TimeAmount
        /// Held lookups, oldest first.
        var waiters: [Waiter] = []
        var lease: Lease = .none
        /// Held elsewhere without news of changes: when the entry is read next, and how often.
        var nextPoll: NIODeadline? = nil
        var pollEvery: TimeAmount? = nil
        /// Why the pending claim was sent: a claim taken because the
        /// deadline passed promotes a waiter as a wait timeout; one taken
        /// after another gateway's lease lapsed, as a takeover.
        var claimCause: ClaimCause = .start
        /// The connection of the hit that started it as an early refresh; nil for a fill a miss started.
        var refresher: UInt64? = nil
        /// Whether a hit started it (an early refresh), and its filler is still that hit's connection.
        var isRefresh: Bool { self.refresher != nil && self.filler == self.refresher }
        /// When the early refresh was granted.
        var refreshedAt: NIODeadline? = nil

        /// The oldest held lookup's connection computes from `now`, with a
        /// whole bound; nil (and nothing changed) when nobody waits.
        mutating func passToOldestWaiter(now: NIODeadline) -> Waiter? {
            guard !self.waiters.isEmpty else { return nil }
            let next = self.waiters.removeFirst()
            self.filler = next.connection
            self.deadline = now + self.bound
            return next
        }
    }

    /// Why a claim was sent.
    enum ClaimCause: Equatable, Sendable {
        /// The fill started.
        case start
        /// This gateway's own fill passed its deadline (its lease lapsed).
        case deadline
        /// Another gateway's lease lapsed, or it gave it back, without a value.
        case remoteLapsed
        /// The filler's connection closed and a waiter took over: the lease is renewed for it.
        case renewal
    }

    /// What the backend answered a claim of a lease for a missing entry.
    typealias ClaimAnswer = FillClaimAnswer

    /// What a lookup that missed is answered.
    enum MissDecision: Equatable, Sendable {
        /// Status 1. `startsFill`: this lookup's connection is now the filler.
        case compute(startsFill: Bool)
        /// Status 3: another worker computes; send a held lookup.
        case wait
        /// No reply now: `Outcome`s answer it later.
        case hold
        /// A hit: the value a store that is still on its way carries.
        case value(Value)
        /// Read the entry again: this lookup's read may have passed a store
        /// that the backend has confirmed since.
        case retry
    }

    /// An answer to a held lookup that the table decided.
    enum Outcome: Equatable, Sendable {
        /// Compute and store: the waiter is the new filler (`takeover`:
        /// because the previous one's connection closed, else because the
        /// fill's deadline passed).
        case promoted(Waiter, takeover: Bool)
        /// Compute: the waiter's own limit passed (it is not the filler).
        case gaveUp(Waiter)
        /// Compute and store: the waiter is the filler because this gateway
        /// took the lease (`takeover`: after another gateway's lease lapsed
        /// without a value), or could not ask for it (fail open).
        case elected(Waiter, takeover: Bool)
        /// Ask the backend for `key`'s lease (taken if free or already this
        /// gateway's), and report the answer with `claimed`.
        case claim(Key)
        /// Read `key`'s entry again; a hit goes to `valueArrived`.
        case reread(Key)
        /// Give back `key`'s lease: nobody here computes it any more.
        case release(Key)
        /// `key`'s lease lapsed before this gateway's fill stored.
        case leaseLost(Key)
    }

    /// The shortest wait before asking again for a lease held elsewhere.
    static var minimumRecheck: TimeAmount { .milliseconds(10) }

    private(set) var fills: [Key: Fill] = [:]
    /// Values stored whose store the backend has not confirmed yet.
    private(set) var storing: [Key: Value] = [:]
    /// When the backend confirmed the last store of each key, for
    /// `raceWindow`; `finishedOrder` lists them oldest first, to forget them.
    private var finished: [Key: NIODeadline] = [:]
    private var finishedOrder: [(key: Key, at: NIODeadline)] = []
    private var finishedHead = 0

    /// How long after a store a lookup that started before it may still be
    /// answered by a read that missed it.
    static var raceWindow: TimeAmount { .seconds(1) }

    /// An empty table.
    init() {}

    /// A lookup of `key` from `connection` missed. `hold` is the latest
    /// moment a held lookup (`request`) must be answered, nil for a plain
    /// lookup; `mayWait` whether the connection understands status 3;
    /// `bound` how long a fill started now may run before a waiter takes over.
    /// `lookupStarted` is when the lookup went to the backend. With
    /// `leases`, a fill that starts asks for the entry's lease (its `lease`
    /// is `.claiming`: the caller sends the claim, see "Fill leases").
    mutating func miss(
        _ key: Key,
        connection: UInt64,
        request: UInt64,
        hold: NIODeadline?,
        mayWait: Bool,
        now: NIODeadline,
        bound: TimeAmount,
        lookupStarted: NIODeadline? = nil,
        leases: Bool = false
    ) -> MissDecision {
        if let value = self.storing[key] { return .value(value) }
        self.forgetFinished(now: now)
        if self.fills[key] == nil, let finishedAt = self.finished[key], (lookupStarted ?? now) < finishedAt {
            return .retry
        }
        guard var fill = self.fills[key] else {
            guard leases, mayWait else {
                self.fills[key] = Fill(filler: connection, deadline: now + bound, bound: bound, lease: leases ? .claiming : .none)
                return .compute(startsFill: true)
            }
            // Nobody computes until the lease is taken: this lookup waits for the answer.
            var started = Fill(filler: nil, deadline: now + bound, bound: bound, lease: .claiming)
            if let hold {
                started.waiters.append(Waiter(connection: connection, request: request, giveUpAt: hold))
                self.fills[key] = started
                return .hold
            }
            self.fills[key] = started
            return .wait
        }
        if fill.filler == nil, fill.lease == .held || fill.lease == .none {
            // This gateway may compute and nobody does: this lookup's connection will.
            fill.filler = connection
            fill.deadline = now + fill.bound
            self.fills[key] = fill
            return .compute(startsFill: true)
        }
        if let hold, mayWait {
            fill.waiters.append(Waiter(connection: connection, request: request, giveUpAt: hold))
            self.fills[key] = fill
            return .hold
        }
        return mayWait ? .wait : .compute(startsFill: false)
    }

    /// A hit of `key` from `connection` is due for an early refresh: whether
    /// it is asked to refresh (then a fill of `key` runs, with `connection`
    /// its filler, for `bound`). Not while a fill or a store of `key` is
    /// under way, nor for a read that started before the last store of `key`
    /// was confirmed (it may have read the entry that store replaced).
    mutating func refresh(_ key: Key, connection: UInt64, now: NIODeadline, bound: TimeAmount, lookupStarted: NIODeadline? = nil) -> Bool {
        guard self.fills[key] == nil, self.storing[key] == nil else { return false }
        self.forgetFinished(now: now)
        if let finishedAt = self.finished[key], (lookupStarted ?? now) < finishedAt { return false }
        self.fills[key] = Fill(filler: connection, deadline: now + bound, bound: bound, refresher: connection, refreshedAt: now)
        return true
    }

    /// When the early refresh of `key` that runs now was granted; nil when none runs.
    func refreshGranted(_ key: Key) -> NIODeadline? {
        guard let fill = self.fills[key], fill.isRefresh else { return nil }
        return fill.refreshedAt
    }

    /// The refresh of `key` by `connection` that `refresh` started took the
    /// entry's lease in the backend: it is this gateway's until the fill
    /// ends (given back if the refresher leaves with nobody to take over).
    mutating func refreshLeaseTaken(_ key: Key, connection: UInt64) {
        guard var fill = self.fills[key], fill.isRefresh, fill.filler == connection else { return }
        fill.lease = .held
        self.fills[key] = fill
    }

    /// The refresh of `key` by `connection` that `refresh` started is not
    /// granted after all: it ends. A lookup held for it meanwhile (the entry
    /// expired) becomes the filler, as when a filler's connection closes;
    /// when the refresh was declined because another gateway holds the
    /// entry's lease (`heldElsewhere`), the lease is claimed first instead,
    /// so that the held lookups wait for that gateway's value.
    mutating func cancelRefresh(_ key: Key, connection: UInt64, now: NIODeadline, heldElsewhere: Bool = false) -> [Outcome] {
        guard var fill = self.fills[key], fill.isRefresh, fill.filler == connection else { return [] }
        guard !fill.waiters.isEmpty else {
            self.fills.removeValue(forKey: key)
            return []
        }
        if heldElsewhere {
            fill.filler = nil
            fill.lease = .claiming
            fill.claimCause = .start
            fill.deadline = now + fill.bound
            self.fills[key] = fill
            return [.claim(key)]
        }
        let next = fill.passToOldestWaiter(now: now)!
        self.fills[key] = fill
        return [.promoted(next, takeover: true)]
    }

    /// Whether an early refresh of `key` runs now.
    func isRefreshing(_ key: Key) -> Bool { self.fills[key]?.isRefresh ?? false }

    /// A store of `key` arrived: the fill ends; returns the lookups to answer
    /// with `value`. Until `storeFinished(key)`, misses of `key` get it too.
    mutating func stored(_ key: Key, value: Value) -> [Waiter] {
        self.storing[key] = value
        return self.fills.removeValue(forKey: key)?.waiters ?? []
    }

    /// The backend has the store of `key` (or dropped it) at `now`: lookups
    /// read it there again.
    mutating func storeFinished(_ key: Key, now: NIODeadline) {
        self.storing.removeValue(forKey: key)
        self.forgetFinished(now: now)
        self.finished[key] = now
        self.finishedOrder.append((key, now))
    }

    /// Forgets stores older than `raceWindow`.
    private mutating func forgetFinished(now: NIODeadline) {
        while self.finishedHead < self.finishedOrder.count, self.finishedOrder[self.finishedHead].at + Self.raceWindow <= now {
            let (key, at) = self.finishedOrder[self.finishedHead]
            if self.finished[key] == at { self.finished.removeValue(forKey: key) }
            self.finishedHead += 1
        }
        if self.finishedHead > 64, self.finishedHead * 2 > self.finishedOrder.count {
            self.finishedOrder.removeFirst(self.finishedHead)
            self.finishedHead = 0
        }
    }

    /// `connection` closed: its held lookups are dropped, and each fill it
    /// was computing passes to its oldest waiter (or ends, with none).
    mutating func connectionClosed(_ connection: UInt64, now: NIODeadline) -> [Outcome] {
        guard !self.fills.isEmpty else { return [] }
        var outcomes: [Outcome] = []
        for key in Array(self.fills.keys) {
            guard var fill = self.fills[key] else { continue }
            fill.waiters.removeAll { $0.connection == connection }
            if fill.filler == connection {
                guard let next = fill.passToOldestWaiter(now: now) else {
                    self.fills.removeValue(forKey: key)
                    if fill.lease == .held { outcomes.append(.release(key)) }
                    continue
                }
                outcomes.append(.promoted(next, takeover: true))
                if fill.lease == .held {
                    // The new filler gets a whole bound: so does the lease.
                    fill.claimCause = .renewal
                    fill.lease = .claiming
                    outcomes.append(.claim(key))
                }
            } else if fill.filler == nil, fill.waiters.isEmpty, fill.lease == .elsewhere {
                // Nobody here waits for the other gateway's value any more.
                self.fills.removeValue(forKey: key)
                continue
            }
            self.fills[key] = fill
        }
        return outcomes
    }

    /// What is due at `now`: held lookups past their own limit give up; a
    /// fill past its deadline passes to its oldest waiter, or ends with none.
    /// With leases, a fill past its deadline asks for the lease again first
    /// (its own lease has lapsed, or the other gateway's has), and a fill
    /// waiting for another gateway's value reads it when a poll is due.
    mutating func expire(now: NIODeadline) -> [Outcome] {
        var outcomes: [Outcome] = []
        for key in Array(self.fills.keys) {
            guard var fill = self.fills[key] else { continue }
            let (late, waiting) = fill.waiters.reduce(into: ([Waiter](), [Waiter]())) { split, waiter in
                if waiter.giveUpAt <= now { split.0.append(waiter) } else { split.1.append(waiter) }
            }
            outcomes += late.map { .gaveUp($0) }
            fill.waiters = waiting
            if fill.lease == .elsewhere, let poll = fill.nextPoll, poll <= now, fill.deadline > now {
                outcomes.append(.reread(key))
                fill.nextPoll = fill.pollEvery.map { now + $0 }
            }
            if fill.deadline <= now {
                switch fill.lease {
                case .none:
                    guard let next = fill.passToOldestWaiter(now: now) else {
                        self.fills.removeValue(forKey: key)
                        continue
                    }
                    outcomes.append(.promoted(next, takeover: false))
                case .held, .elsewhere, .claiming:
                    if fill.lease == .held, fill.filler != nil { outcomes.append(.leaseLost(key)) }
                    guard !fill.waiters.isEmpty else {
                        // Nobody here waits: the fill ends; a lease of this
                        // gateway's has lapsed already.
                        self.fills.removeValue(forKey: key)
                        continue
                    }
                    if fill.lease == .claiming {
                        // A claim that was never answered (its own timeout
                        // answers it first): fail open.
                        fill.lease = .none
                        let next = fill.passToOldestWaiter(now: now)!
                        outcomes.append(.promoted(next, takeover: false))
                    } else {
                        fill.claimCause = fill.lease == .held ? .deadline : .remoteLapsed
                        fill.lease = .claiming
                        fill.filler = nil
                        fill.nextPoll = nil
                        fill.deadline = now + fill.bound
                        outcomes.append(.claim(key))
                    }
                }
            }
            self.fills[key] = fill
        }
        return outcomes
    }

    // MARK: Leases

    /// The backend answered the claim of `key`'s lease at `now`. `poll`:
    /// how often to read the entry while another gateway computes it, nil
    /// when the backend tells of its changes (`entryChanged`).
    mutating func claimed(_ key: Key, _ answer: ClaimAnswer, now: NIODeadline, poll: TimeAmount?) -> [Outcome] {
        guard var fill = self.fills[key], fill.lease == .claiming else {
            // The fill ended meanwhile (a value answered it): a lease taken for it goes back.
            return answer == .taken ? [.release(key)] : []
        }
        var outcomes: [Outcome] = []
        switch answer {
        case .taken:
            fill.lease = .held
            if fill.filler == nil {
                fill.deadline = now + fill.bound
                if let next = fill.passToOldestWaiter(now: now) {
                    switch fill.claimCause {
                    case .start, .renewal: outcomes.append(.elected(next, takeover: false))
                    case .remoteLapsed: outcomes.append(.elected(next, takeover: true))
                    case .deadline: outcomes.append(.promoted(next, takeover: false))
                    }
                }
                // With no waiter, the next lookup that misses computes.
            }
        case .heldElsewhere(let remaining):
            if fill.filler != nil {
                // A connection here computes anyway (it was told to, or took
                // over from one that was): its store ends both fills.
                fill.lease = .none
            } else {
                fill.lease = .elsewhere
                fill.deadline = now + max(remaining, Self.minimumRecheck)
                fill.pollEvery = poll
                fill.nextPoll = poll.map { now + $0 }
            }
        case .stored:
            // Read it; if it is gone again by then, ask again shortly (or,
            // with a connection here computing, let its store end the fill).
            if fill.filler != nil {
                fill.lease = .none
            } else {
                fill.lease = .elsewhere
                fill.deadline = now + Self.minimumRecheck
                fill.pollEvery = poll
                fill.nextPoll = nil
            }
            outcomes.append(.reread(key))
        case .unavailable:
            fill.lease = .none
            if fill.filler == nil {
                fill.deadline = now + fill.bound
                if let next = fill.passToOldestWaiter(now: now) {
                    outcomes.append(.elected(next, takeover: false))
                }
            }
        }
        self.fills[key] = fill
        return outcomes
    }

    /// Another gateway's value of `key` was read: the fill ends; returns
    /// the lookups to answer with it.
    mutating func valueArrived(_ key: Key) -> [Waiter] {
        self.fills.removeValue(forKey: key)?.waiters ?? []
    }

    /// The backend says `key`'s entry changed (another gateway wrote it):
    /// whether to read it again (a fill of it runs).
    func entryChanged(_ key: Key) -> Bool {
        self.fills[key] != nil
    }

    /// The backend says `key`'s lease changed (its holder gave it back, or
    /// it lapsed): a fill waiting for another gateway asks for it at once.
    mutating func leaseChanged(_ key: Key, now: NIODeadline) -> [Outcome] {
        guard var fill = self.fills[key], fill.lease == .elsewhere, fill.filler == nil else { return [] }
        fill.claimCause = .remoteLapsed
        fill.lease = .claiming
        fill.nextPoll = nil
        fill.deadline = now + fill.bound
        self.fills[key] = fill
        return [.claim(key)]
    }

    /// News of changes stopped (the backend's tracking is down): every fill
    /// waiting for another gateway reads the entry every `poll` from now on.
    mutating func startPolling(every poll: TimeAmount, now: NIODeadline) {
        for (key, fill) in self.fills where fill.lease == .elsewhere && fill.nextPoll == nil {
            self.fills[key]?.pollEvery = poll
            self.fills[key]?.nextPoll = now + poll
        }
    }

    /// The earliest moment `expire` has something to do; nil when nothing runs.
    var nextDeadline: NIODeadline? {
        var next: NIODeadline?
        for fill in self.fills.values {
            next = min(next ?? fill.deadline, fill.deadline)
            if let poll = fill.nextPoll { next = min(next!, poll) }
            for waiter in fill.waiters { next = min(next!, waiter.giveUpAt) }
        }
        return next
    }

    /// How many lookups are held now.
    var heldCount: Int { self.fills.values.reduce(0) { $0 + $1.waiters.count } }
}
