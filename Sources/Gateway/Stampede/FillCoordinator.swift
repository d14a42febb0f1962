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
///
/// With `leases` and `remote` (a Redis backend), fills are shared with the
/// other gateways on the backend (`FillTable`, "Fill leases"): it sends the
/// claims the table asks for, reads the entry again when the backend says it
/// (or its lease) changed or a poll is due, and gives leases back.
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
        /// With leases: the backend names of the fills' entries and leases
        /// (to match change notifications), and whether each is the lease.
        var watched: [String: (key: StorageKey, isLease: Bool)] = [:]
        /// An event loop for work that no connection starts (notifications).
        var loop: (any EventLoop)?
    }

    /// What carrying out some table outcomes takes, gathered under the lock
    /// and done after it.
    private struct Effects {
        var answers: [(Responder, FillTable<StorageKey, ByteBuffer>.Outcome)] = []
        var claims: [(key: StorageKey, bound: TimeAmount, renewal: Bool)] = []
        var rereads: [StorageKey] = []
        var releases: [StorageKey] = []
        var leasesLost = 0
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
    /// How another gateway's value is learnt of; nil without leases.
    let remote: FillRemoteReads?
    /// Whether fills are shared through `leases`.
    var sharesFills: Bool { self.leases != nil && self.remote != nil }
    private let leaseCounters = LeaseCounters()
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
    /// over, sharing `leases` with the other gateways on its backend,
    /// learning of their values through `remote`, and refreshing early with
    /// `earlyRefreshBeta` (0: never).
    init(
        waitCap: TimeAmount,
        leases: (any FillLeases)? = nil,
        remote: FillRemoteReads? = nil,
        earlyRefreshBeta: Double = 1,
        metricsFactory: any MetricsFactory
    ) {
        self.waitBound = FillWaitBound(cap: waitCap)
        self.leases = leases
        self.remote = remote
        self.earlyRefresh = EarlyRefresh(beta: earlyRefreshBeta, seed: UInt64.random(in: 0...UInt64.max))
        self.metrics = FillMetrics(factory: metricsFactory)
        if leases != nil, let changes = remote?.changes {
            changes.observe { [weak self] names in self?.backendChanged(names) }
        }
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
        let sharing = self.sharesFills
        let (decision, claim) = self.state.withLockedValue { state -> (FillTable<StorageKey, ByteBuffer>.MissDecision, TimeAmount?) in
            let bound = self.waitBound.bound(computeMicroseconds: state.computeTimes[key.function])
            let token = state.nextToken
            let existed = state.table.fills[key] != nil
            let decision = state.table.miss(
                key, connection: connection, request: token, hold: hold, mayWait: mayWait, now: now, bound: bound, lookupStarted: lookupStarted,
                leases: sharing
            )
            var claim: TimeAmount?
            if sharing, !existed, let fill = state.table.fills[key], fill.lease == .claiming {
                claim = fill.bound
                self.watch(key, in: &state)
                state.loop = eventLoop
            }
            if decision == .hold {
                state.nextToken += 1
                state.responders[token] = respond
                self.scheduleTimer(&state, on: eventLoop)
            } else if decision == .compute(startsFill: true) || claim != nil {
                self.scheduleTimer(&state, on: eventLoop)
            }
            return (decision, claim)
        }
        if let claim { self.sendClaim(key, bound: claim, renewal: false, on: eventLoop) }
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
                    self.state.withLockedValue { $0.table.refreshLeaseTaken(key, connection: connection) }
                    self.leaseCounters.count(\.taken, self.metrics.leasesTaken)
                    self.count(self.refreshes, self.metrics.refreshes)
                    return bound
                }
                self.count(self.refreshesDeclined, self.metrics.refreshesDeclined)
                var heldElsewhere = false
                switch result {
                case .heldElsewhere:
                    heldElsewhere = true
                    self.leaseCounters.count(\.heldElsewhere, self.metrics.leasesHeldElsewhere)
                case .unavailable: self.leaseCounters.count(\.faults, self.metrics.leaseFaults)
                case .taken: break
                }
                let now = NIODeadline.now()
                let effects = self.state.withLockedValue { state -> Effects in
                    let outcomes = state.table.cancelRefresh(key, connection: connection, now: now, heldElsewhere: heldElsewhere)
                    if heldElsewhere, !outcomes.isEmpty {
                        self.watch(key, in: &state)
                        state.loop = eventLoop
                    }
                    return self.take(outcomes, from: &state)
                }
                self.perform(effects, on: eventLoop)
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
        let effects = self.state.withLockedValue { state -> Effects in
            guard !state.table.fills.isEmpty else { return Effects() }
            let outcomes = state.table.connectionClosed(connection, now: now)
            return self.take(outcomes, from: &state)
        }
        self.perform(effects, on: self.anyLoop)
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
        ].merging(self.sharesFills ? self.leaseCounters.statistics : [:]) { ours, _ in ours }
    }

    // MARK: Carrying out

    private func count(_ counter: borrowing Synchronization.Atomic<UInt64>, _ metric: Counter) {
        counter.wrappingAdd(1, ordering: .relaxed)
        metric.increment()
    }

    /// What `outcomes` take: the responders of their waiters, taken out of
    /// `state` (a waiter whose connection has gone has none), and the
    /// backend work they ask for.
    private func take(
        _ outcomes: [FillTable<StorageKey, ByteBuffer>.Outcome],
        from state: inout State
    ) -> Effects {
        var effects = Effects()
        for outcome in outcomes {
            let waiter: FillTable<StorageKey, ByteBuffer>.Waiter
            switch outcome {
            case .promoted(let promoted, _): waiter = promoted
            case .gaveUp(let late): waiter = late
            case .elected(let elected, _): waiter = elected
            case .claim(let key):
                guard let fill = state.table.fills[key] else { continue }
                effects.claims.append((key, fill.bound, fill.claimCause == .renewal))
                continue
            case .reread(let key):
                effects.rereads.append(key)
                continue
            case .release(let key):
                effects.releases.append(key)
                continue
            case .leaseLost:
                effects.leasesLost += 1
                continue
            }
            if let respond = state.responders.removeValue(forKey: waiter.request) { effects.answers.append((respond, outcome)) }
        }
        return effects
    }

    /// Carries out `effects`: answers, then the backend work, on `eventLoop`.
    private func perform(_ effects: Effects, on eventLoop: (any EventLoop)?) {
        for (respond, outcome) in effects.answers {
            switch outcome {
            case .promoted(_, takeover: true): self.count(self.takeovers, self.metrics.takeovers)
            case .promoted(_, takeover: false), .gaveUp: self.count(self.waitTimeouts, self.metrics.waitTimeouts)
            case .elected(_, let takeover):
                self.count(self.fills, self.metrics.fills)
                if takeover { self.leaseCounters.count(\.takeovers, self.metrics.leaseTakeovers) }
            case .claim, .reread, .release, .leaseLost: break
            }
            respond(.compute)
        }
        for _ in 0..<effects.leasesLost { self.leaseCounters.count(\.lost, self.metrics.leasesLost) }
        guard let eventLoop, let leases = self.leases else { return }
        for key in effects.releases { leases.release(key, on: eventLoop) }
        for claim in effects.claims { self.sendClaim(claim.key, bound: claim.bound, renewal: claim.renewal, on: eventLoop) }
        for key in effects.rereads { self.reread(key, on: eventLoop) }
    }

    // MARK: Leases

    /// How often a fill waiting for another gateway reads the entry while
    /// the backend tells of no changes: a twentieth of the bound, between
    /// 10 and 25 ms (a waiter learns of the value at most that late; each
    /// waiting gateway costs Redis one GET per interval and key). Nil while
    /// notifications arrive: then the entry is read when it changes.
    private func pollInterval(bound: TimeAmount) -> TimeAmount? {
        if self.remote?.changes?.isLive == true { return nil }
        return min(.milliseconds(25), max(.milliseconds(10), .nanoseconds(bound.nanoseconds / 20)))
    }

    /// Remembers the backend names of `key`'s entry and lease, for
    /// notifications; forgets those of fills that ended once they pile up.
    private func watch(_ key: StorageKey, in state: inout State) {
        guard let names = self.leases?.backendNames(for: key) else { return }
        if state.watched.count > 2 * state.table.fills.count + 64 {
            state.watched = state.watched.filter { state.table.fills[$0.value.key] != nil }
        }
        state.watched[names.entry] = (key, false)
        state.watched[names.lease] = (key, true)
    }

    private var anyLoop: (any EventLoop)? { self.state.withLockedValue { $0.loop } }

    private func sendClaim(_ key: StorageKey, bound: TimeAmount, renewal: Bool, on eventLoop: any EventLoop) {
        guard let leases = self.leases else { return }
        leases.claimFill(key, for: bound, on: eventLoop).whenComplete { result in
            let answer = (try? result.get()) ?? .unavailable
            switch answer {
            case .taken: self.leaseCounters.count(\.taken, self.metrics.leasesTaken)
            case .heldElsewhere:
                self.leaseCounters.count(\.heldElsewhere, self.metrics.leasesHeldElsewhere)
                if renewal { self.leaseCounters.count(\.lost, self.metrics.leasesLost) }
            case .stored: break
            case .unavailable: self.leaseCounters.count(\.faults, self.metrics.leaseFaults)
            }
            let now = NIODeadline.now()
            let poll = self.pollInterval(bound: bound)
            let (effects, remoteWait) = self.state.withLockedValue { state -> (Effects, Bool) in
                let outcomes = state.table.claimed(key, answer, now: now, poll: poll)
                let fill = state.table.fills[key]
                let remoteWait = fill?.lease == .elsewhere && fill?.filler == nil && !renewal
                let effects = self.take(outcomes, from: &state)
                self.scheduleTimer(&state, on: eventLoop)
                return (effects, remoteWait)
            }
            if remoteWait { self.leaseCounters.count(\.remoteWaits, self.metrics.remoteWaits) }
            self.perform(effects, on: eventLoop)
        }
    }

    /// Reads `key`'s entry for a fill that waits for another gateway.
    private func reread(_ key: StorageKey, on eventLoop: any EventLoop) {
        guard let remote = self.remote else { return }
        self.leaseCounters.count(\.rereads, self.metrics.rereads)
        remote.read(key, eventLoop).whenSuccess { result in
            guard case .hit(let value, _, _) = result else { return }
            let responders = self.state.withLockedValue { state in
                state.table.valueArrived(key).compactMap { state.responders.removeValue(forKey: $0.request) }
            }
            if !responders.isEmpty { self.leaseCounters.count(\.remoteValues, self.metrics.remoteValues) }
            for respond in responders { respond(.value(value)) }
        }
    }

    /// The backend says `names` changed (nil: anything may have): fills of
    /// those entries read them again; fills waiting on a lease that changed
    /// ask for it again (its holder gave it back, or it lapsed).
    func backendChanged(_ names: [String]?) {
        let now = NIODeadline.now()
        let live = self.remote?.changes?.isLive == true
        let (effects, loop) = self.state.withLockedValue { state -> (Effects, (any EventLoop)?) in
            guard !state.table.fills.isEmpty, let loop = state.loop else { return (Effects(), nil) }
            var effects = Effects()
            guard let names else {
                effects.rereads = Array(state.table.fills.keys)
                if !live { state.table.startPolling(every: .milliseconds(10), now: now) }
                self.scheduleTimer(&state, on: loop)
                return (effects, loop)
            }
            var outcomes: [FillTable<StorageKey, ByteBuffer>.Outcome] = []
            for name in names {
                guard let (key, isLease) = state.watched[name] else { continue }
                if isLease {
                    outcomes += state.table.leaseChanged(key, now: now)
                } else if state.table.entryChanged(key) {
                    outcomes.append(.reread(key))
                }
            }
            let taken = self.take(outcomes, from: &state)
            effects.claims = taken.claims
            effects.rereads = taken.rereads
            self.scheduleTimer(&state, on: loop)
            return (effects, loop)
        }
        self.perform(effects, on: loop)
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
        let effects = self.state.withLockedValue { state -> Effects in
            state.timer = nil
            let outcomes = state.table.expire(now: now)
            let effects = self.take(outcomes, from: &state)
            self.scheduleTimer(&state, on: eventLoop)
            return effects
        }
        self.perform(effects, on: eventLoop)
    }

    /// Cancels the timer; called when the server stops.
    func shutdown() {
        self.state.withLockedValue { state in
            state.timer?.task.cancel()
            state.timer = nil
        }
    }
}

extension FillCoordinator {
    /// The lease counters (counted per claim or read, not per lookup: a lock is cheap enough).
    final class LeaseCounters: Sendable {
        struct Values: Sendable {
            var taken: UInt64 = 0
            var heldElsewhere: UInt64 = 0
            var lost: UInt64 = 0
            var faults: UInt64 = 0
            var takeovers: UInt64 = 0
            var remoteWaits: UInt64 = 0
            var remoteValues: UInt64 = 0
            var rereads: UInt64 = 0
        }

        private let values = Mutex(Values())

        func count(_ counter: WritableKeyPath<Values, UInt64> & Sendable, _ metric: Counter) {
            self.values.withLock { $0[keyPath: counter] &+= 1 }
            metric.increment()
        }

        /// The counters for the stats reply (docs/OPERATIONS.md, "Stampedes").
        var statistics: [String: Stats.Value] {
            let values = self.values.withLock { $0 }
            return [
                "fillLeasesTaken": .count(values.taken),
                "fillLeasesHeldElsewhere": .count(values.heldElsewhere),
                "fillLeasesLost": .count(values.lost),
                "fillLeaseFaults": .count(values.faults),
                "fillLeaseTakeovers": .count(values.takeovers),
                "fillRemoteWaits": .count(values.remoteWaits),
                "fillRemoteValues": .count(values.remoteValues),
                "fillRereads": .count(values.rereads),
            ]
        }
    }
}
