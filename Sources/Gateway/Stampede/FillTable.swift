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
struct FillTable<Key: Hashable & Sendable, Value: Equatable & Sendable>: Sendable {
    /// A held lookup: the connection and request it came on, and when it
    /// must be answered at the latest.
    struct Waiter: Hashable, Sendable {
        var connection: UInt64
        var request: UInt64
        var giveUpAt: NIODeadline
    }

    /// One running computation.
    struct Fill: Sendable {
        var filler: UInt64
        var deadline: NIODeadline
        var bound: TimeAmount
        /// Held lookups, oldest first.
        var waiters: [Waiter] = []
        /// Whether a hit started it (an early refresh), and its filler is still that hit's connection.
        var isRefresh = false
        /// When the early refresh was granted.
        var refreshedAt: NIODeadline? = nil
    }

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
    }

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
    /// `lookupStarted` is when the lookup went to the backend.
    mutating func miss(
        _ key: Key,
        connection: UInt64,
        request: UInt64,
        hold: NIODeadline?,
        mayWait: Bool,
        now: NIODeadline,
        bound: TimeAmount,
        lookupStarted: NIODeadline? = nil
    ) -> MissDecision {
        if let value = self.storing[key] { return .value(value) }
        self.forgetFinished(now: now)
        if self.fills[key] == nil, let finishedAt = self.finished[key], (lookupStarted ?? now) < finishedAt {
            return .retry
        }
        guard var fill = self.fills[key] else {
            self.fills[key] = Fill(filler: connection, deadline: now + bound, bound: bound)
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
        self.fills[key] = Fill(filler: connection, deadline: now + bound, bound: bound, isRefresh: true, refreshedAt: now)
        return true
    }

    /// When the early refresh of `key` that runs now was granted; nil when none runs.
    func refreshGranted(_ key: Key) -> NIODeadline? {
        guard let fill = self.fills[key], fill.isRefresh else { return nil }
        return fill.refreshedAt
    }

    /// The refresh of `key` by `connection` that `refresh` started is not
    /// granted after all: it ends, and a lookup held for it meanwhile (the
    /// entry expired) becomes the filler, as when a filler's connection closes.
    mutating func cancelRefresh(_ key: Key, connection: UInt64, now: NIODeadline) -> [Outcome] {
        guard var fill = self.fills[key], fill.isRefresh, fill.filler == connection else { return [] }
        guard !fill.waiters.isEmpty else {
            self.fills.removeValue(forKey: key)
            return []
        }
        let next = fill.waiters.removeFirst()
        fill.filler = next.connection
        fill.deadline = now + fill.bound
        fill.isRefresh = false
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
                guard !fill.waiters.isEmpty else {
                    self.fills.removeValue(forKey: key)
                    continue
                }
                let next = fill.waiters.removeFirst()
                fill.filler = next.connection
                fill.deadline = now + fill.bound
                fill.isRefresh = false
                outcomes.append(.promoted(next, takeover: true))
            }
            self.fills[key] = fill
        }
        return outcomes
    }

    /// What is due at `now`: held lookups past their own limit give up; a
    /// fill past its deadline passes to its oldest waiter, or ends with none.
    mutating func expire(now: NIODeadline) -> [Outcome] {
        var outcomes: [Outcome] = []
        for key in Array(self.fills.keys) {
            guard var fill = self.fills[key] else { continue }
            let (late, waiting) = fill.waiters.reduce(into: ([Waiter](), [Waiter]())) { split, waiter in
                if waiter.giveUpAt <= now { split.0.append(waiter) } else { split.1.append(waiter) }
            }
            outcomes += late.map { .gaveUp($0) }
            fill.waiters = waiting
            if fill.deadline <= now {
                guard !fill.waiters.isEmpty else {
                    self.fills.removeValue(forKey: key)
                    continue
                }
                let next = fill.waiters.removeFirst()
                fill.filler = next.connection
                fill.deadline = now + fill.bound
                fill.isRefresh = false
                outcomes.append(.promoted(next, takeover: false))
            }
            self.fills[key] = fill
        }
        return outcomes
    }

    /// The earliest moment `expire` has something to do; nil when nothing runs.
    var nextDeadline: NIODeadline? {
        var next: NIODeadline?
        for fill in self.fills.values {
            next = min(next ?? fill.deadline, fill.deadline)
            for waiter in fill.waiters { next = min(next!, waiter.giveUpAt) }
        }
        return next
    }

    /// How many lookups are held now.
    var heldCount: Int { self.fills.values.reduce(0) { $0 + $1.waiters.count } }
}
