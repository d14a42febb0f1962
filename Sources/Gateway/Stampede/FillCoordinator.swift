import GatewayProtocol
import Metrics
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// What a held lookup is finally answered.
enum FillAnswer: Sendable, Equatable {
    /// A hit with the value that the computing worker stored.
    case value(ByteBuffer)
    /// Status 1: compute and store.
    case compute
}

/// What a hit that is due for an early refresh comes to (`FillCoordinator.refresh`).
enum RefreshGrant {
    /// A plain hit: a refresh or fill of the entry runs already, or the
    /// gateway just stored it.
    case declined
    /// Status 4: the hit's connection refreshes the entry, within `bound`.
    case granted(bound: TimeAmount)
    /// Decided when the fill lease answers: the bound, or nil (declined).
    case pending(EventLoopFuture<TimeAmount?>)
}

/// The gateway's single-flight: one `FillTable` shared by every connection,
/// behind a lock, and the glue that carries out its decisions.
///
/// Connections hand it their misses, stores and closes; a held lookup comes
/// with a `Responder` that answers it on its own connection's event loop.
/// Deadlines run on a timer scheduled on an event loop for the earliest one.
final class FillCoordinator: Sendable {
    /// Answers one held lookup; called once, from any thread.
    typealias Responder = @Sendable (FillAnswer) -> Void

    private struct State: Sendable {
        var table = FillTable<StorageKey, ByteBuffer>()
        var responders: [UInt64: Responder] = [:]
        var nextToken: UInt64 = 0
        /// The last compute time each function's stores recorded, in microseconds.
        var computeTimes: [FunctionVersion: UInt64] = [:]
        /// How long each function's last early refresh took on this gateway,
        /// from the grant to the store's arrival, in microseconds.
        var refreshTimes: [FunctionVersion: UInt64] = [:]
        /// Entries whose life was extended ahead of their refresh, with their
        /// expiry (Unix milliseconds), so that each is extended once.
        var extendedAhead: [StorageKey: Int64] = [:]
        /// The pending timer, and when it fires.
        var timer: (at: NIODeadline, task: Scheduled<Void>)?
    }

    /// At most this many functions' compute times are kept.
    static let maximumFunctions = 10_000
    /// At most this many entries are remembered as extended ahead; past it,
    /// entries are extended only when their refresh is granted.
    static let maximumExtendedAhead = 4_096

    private let state = NIOLockedValueBox(State())
    private let waitBound: FillWaitBound
    private let metrics: FillMetrics
    /// The leases shared with other gateways on the same backend; nil when
    /// this gateway is alone (the embedded store).
    let leases: (any FillLeases)?
    /// When a hit asks for an early refresh (`--early-refresh-beta`).
    let earlyRefresh: EarlyRefresh

    let fills = Synchronization.Atomic<UInt64>(0)
    let waits = Synchronization.Atomic<UInt64>(0)
    let held = Synchronization.Atomic<UInt64>(0)
    let waitTimeouts = Synchronization.Atomic<UInt64>(0)
    let takeovers = Synchronization.Atomic<UInt64>(0)
    let refreshes = Synchronization.Atomic<UInt64>(0)
    let refreshesDeclined = Synchronization.Atomic<UInt64>(0)

    /// A coordinator whose fills run at most `waitCap` before a waiter takes
    /// over, sharing `leases` with the other gateways on its backend, and
    /// refreshing early with `earlyRefreshBeta` (0: never).
    init(waitCap: TimeAmount, leases: (any FillLeases)? = nil, earlyRefreshBeta: Double = 1, metricsFactory: any MetricsFactory) {
        self.waitBound = FillWaitBound(cap: waitCap)
        self.leases = leases
        self.earlyRefresh = EarlyRefresh(beta: earlyRefreshBeta, seed: UInt64.random(in: 0...UInt64.max))
        self.metrics = FillMetrics(factory: metricsFactory)
    }

    /// What a lookup of `key` that missed is answered. `hold` is the
    /// latest moment a held lookup must be answered (nil for a plain
    /// lookup), `mayWait` whether the connection announced support;
    /// `respond` answers the lookup if it is held (`.hold`).
    func miss(
        _ key: StorageKey,
        connection: UInt64,
        hold: NIODeadline?,
        mayWait: Bool,
        lookupStarted: NIODeadline,
        on eventLoop: any EventLoop,
        respond: @escaping Responder
    ) -> FillTable<StorageKey, ByteBuffer>.MissDecision {
        let now = NIODeadline.now()
        let decision = self.state.withLockedValue { state in
            let bound = self.waitBound.bound(computeMicroseconds: state.computeTimes[key.function])
            let token = state.nextToken
            let decision = state.table.miss(
                key, connection: connection, request: token, hold: hold, mayWait: mayWait, now: now, bound: bound, lookupStarted: lookupStarted
            )
            if decision == .hold {
                state.nextToken += 1
                state.responders[token] = respond
                self.scheduleTimer(&state, on: eventLoop)
            } else if decision == .compute(startsFill: true) {
                self.scheduleTimer(&state, on: eventLoop)
            }
            return decision
        }
        switch decision {
        case .compute(startsFill: true): self.count(self.fills, self.metrics.fills)
        case .wait: self.count(self.waits, self.metrics.waits)
        case .hold: self.count(self.held, self.metrics.held)
        case .compute, .value, .retry: break
        }
        return decision
    }

    /// A hit of `key` on `connection` is due for an early refresh
    /// (`earlyRefresh`): whether the connection is asked to refresh it.
    ///
    /// Locally first: at most one refresh or fill of an entry runs on this
    /// gateway (`FillTable.refresh`). With leases shared with other gateways,
    /// the refresh is granted only once this gateway takes the entry's lease
    /// for the refresh's bound; held elsewhere or unavailable, the hit is a
    /// plain hit (counted in `refreshesDeclined`) and the local refresh ends.
    func refresh(_ key: StorageKey, connection: UInt64, lookupStarted: NIODeadline, on eventLoop: any EventLoop) -> RefreshGrant {
        let now = NIODeadline.now()
        let bound = self.state.withLockedValue { state -> TimeAmount? in
            let bound = self.waitBound.bound(computeMicroseconds: state.computeTimes[key.function])
            guard state.table.refresh(key, connection: connection, now: now, bound: bound, lookupStarted: lookupStarted) else { return nil }
            self.scheduleTimer(&state, on: eventLoop)
            return bound
        }
        guard let bound else { return .declined }
        guard let leases = self.leases else {
            self.count(self.refreshes, self.metrics.refreshes)
            return .granted(bound: bound)
        }
        let decided = leases.acquire(key, for: bound, on: eventLoop)
            .recover { _ in .unavailable }
            .map { result -> TimeAmount? in
                if result == .taken {
                    self.count(self.refreshes, self.metrics.refreshes)
                    return bound
                }
                self.count(self.refreshesDeclined, self.metrics.refreshesDeclined)
                let now = NIODeadline.now()
                let answers = self.state.withLockedValue { state in
                    self.take(state.table.cancelRefresh(key, connection: connection, now: now), from: &state)
                }
                self.deliver(answers)
                return nil
            }
        return .pending(decided)
    }

    /// The time to recompute an entry of `function` that early refresh
    /// decides by (XFetch's delta): the compute time the entry recorded
    /// (`computeMicroseconds`), or, when longer, the time the function's last
    /// early refresh took on this gateway from its grant to its store, which
    /// counts what the compute time leaves out (the reply's way to the
    /// client, starting the background work, the store's way back: on a busy
    /// host, tens of milliseconds). With it the mean lead matches what a
    /// refresh really takes, and the period stays the TTL.
    func refreshDelta(_ function: FunctionVersion, computeMicroseconds: UInt64) -> UInt64 {
        let measured = self.state.withLockedValue { $0.refreshTimes[function] } ?? 0
        return max(computeMicroseconds, measured)
    }

    /// A hit found `key`'s entry, which expires at `expiresAt` (Unix
    /// milliseconds), about to be due for an early refresh: until when its
    /// life is to be extended (its expiry plus the refresh's bound, by when
    /// a refresh granted before the expiry has stored or ended), or nil when
    /// it has been already (or too many entries are remembered).
    func extendAhead(_ key: StorageKey, expiresAt: Int64, nowMilliseconds: Int64) -> Int64? {
        self.state.withLockedValue { state -> Int64? in
            guard state.extendedAhead[key] != expiresAt else { return nil }
            if state.extendedAhead.count >= Self.maximumExtendedAhead {
                state.extendedAhead = state.extendedAhead.filter { $0.value > nowMilliseconds }
                guard state.extendedAhead.count < Self.maximumExtendedAhead else { return nil }
            }
            state.extendedAhead[key] = expiresAt
            let bound = self.waitBound.bound(computeMicroseconds: state.computeTimes[key.function])
            return expiresAt + bound.nanoseconds / 1_000_000
        }
    }

    /// A store of `key` with `value` arrived: every held lookup of it gets the value.
    func stored(_ key: StorageKey, value: ByteBuffer, computeMicroseconds: UInt64) {
        let now = NIODeadline.now()
        let responders = self.state.withLockedValue { state -> [Responder] in
            if let granted = state.table.refreshGranted(key),
                state.refreshTimes[key.function] != nil || state.refreshTimes.count < Self.maximumFunctions
            {
                state.refreshTimes[key.function] = UInt64(max(0, (now - granted).nanoseconds / 1000))
            }
            if state.computeTimes[key.function] != nil || state.computeTimes.count < Self.maximumFunctions {
                state.computeTimes[key.function] = computeMicroseconds
            }
            if !state.extendedAhead.isEmpty { state.extendedAhead.removeValue(forKey: key) }
            return state.table.stored(key, value: value).compactMap { state.responders.removeValue(forKey: $0.request) }
        }
        for respond in responders { respond(.value(value)) }
    }

    /// The backend has answered the store of `key`.
    func storeFinished(_ key: StorageKey) {
        let now = NIODeadline.now()
        self.state.withLockedValue { $0.table.storeFinished(key, now: now) }
    }

    /// `connection` closed: its held lookups go, and its fills pass to a waiter each.
    func connectionClosed(_ connection: UInt64) {
        let now = NIODeadline.now()
        let answers = self.state.withLockedValue { state -> [(Responder, FillTable<StorageKey, ByteBuffer>.Outcome)] in
            guard !state.table.fills.isEmpty else { return [] }
            let outcomes = state.table.connectionClosed(connection, now: now)
            return self.take(outcomes, from: &state)
        }
        self.deliver(answers)
    }

    /// How many lookups are held now.
    var heldNow: Int { self.state.withLockedValue { $0.table.heldCount } }

    /// The counters for the stats reply.
    var statistics: [String: Stats.Value] {
        [
            "fills": .count(self.fills.load(ordering: .relaxed)),
            "fillWaits": .count(self.waits.load(ordering: .relaxed)),
            "lookupsHeld": .count(self.held.load(ordering: .relaxed)),
            "fillWaitTimeouts": .count(self.waitTimeouts.load(ordering: .relaxed)),
            "fillTakeovers": .count(self.takeovers.load(ordering: .relaxed)),
            "lookupsHeldNow": .count(UInt64(self.heldNow)),
            "earlyRefreshes": .count(self.refreshes.load(ordering: .relaxed)),
            "earlyRefreshesDeclined": .count(self.refreshesDeclined.load(ordering: .relaxed)),
        ]
    }

    // MARK: Carrying out

    private func count(_ counter: borrowing Synchronization.Atomic<UInt64>, _ metric: Counter) {
        counter.wrappingAdd(1, ordering: .relaxed)
        metric.increment()
    }

    /// The responders of `outcomes`' waiters, taken out of `state` (a waiter
    /// whose connection has gone has none).
    private func take(
        _ outcomes: [FillTable<StorageKey, ByteBuffer>.Outcome],
        from state: inout State
    ) -> [(Responder, FillTable<StorageKey, ByteBuffer>.Outcome)] {
        outcomes.compactMap { outcome in
            let waiter: FillTable<StorageKey, ByteBuffer>.Waiter
            switch outcome {
            case .promoted(let promoted, _): waiter = promoted
            case .gaveUp(let late): waiter = late
            }
            return state.responders.removeValue(forKey: waiter.request).map { ($0, outcome) }
        }
    }

    private func deliver(_ answers: [(Responder, FillTable<StorageKey, ByteBuffer>.Outcome)]) {
        for (respond, outcome) in answers {
            switch outcome {
            case .promoted(_, takeover: true): self.count(self.takeovers, self.metrics.takeovers)
            case .promoted(_, takeover: false), .gaveUp: self.count(self.waitTimeouts, self.metrics.waitTimeouts)
            }
            respond(.compute)
        }
    }

    /// Makes sure a timer fires at the table's next deadline.
    private func scheduleTimer(_ state: inout State, on eventLoop: any EventLoop) {
        guard let next = state.table.nextDeadline else { return }
        if let timer = state.timer, timer.at <= next { return }
        state.timer?.task.cancel()
        let task = eventLoop.scheduleTask(deadline: next) { [self] in self.timerFired(on: eventLoop) }
        state.timer = (next, task)
    }

    private func timerFired(on eventLoop: any EventLoop) {
        let now = NIODeadline.now()
        let answers = self.state.withLockedValue { state -> [(Responder, FillTable<StorageKey, ByteBuffer>.Outcome)] in
            state.timer = nil
            let outcomes = state.table.expire(now: now)
            let answers = self.take(outcomes, from: &state)
            self.scheduleTimer(&state, on: eventLoop)
            return answers
        }
        self.deliver(answers)
    }

    /// Cancels the timer; called when the server stops.
    func shutdown() {
        self.state.withLockedValue { state in
            state.timer?.task.cancel()
            state.timer = nil
        }
    }
}
