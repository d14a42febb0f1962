import GatewaySystem
import NIOCore

/// When the client stops asking a gateway that is connected but does not
/// answer (stopped, hung, or overloaded), as a value type with no I/O and no
/// clock of its own (callers pass `now`), so it is tested by itself.
///
/// A lookup that times out costs its caller the whole lookup timeout. After
/// `threshold` consecutive lookup timeouts the circuit **opens**: for
/// `openDuration(afterTrips:)` every call runs its function uncached at once,
/// without any I/O. Then it is **half-open**: one call, the probe, looks up as
/// usual while the others keep running uncached. An answer (any reply that is
/// not a timeout) closes the circuit; another timeout opens it again for twice
/// as long, up to `maximumOpenDuration`.
///
/// Outcomes are reported by calls that were told to (`Decision.allow(reports:)`):
/// with the circuit closed and no timeout counted, a call reports nothing, so
/// a hit takes no second lock and reads no clock for this. A call that started
/// then and answers after a timeout was counted does not reset the count;
/// the next call does.
struct CircuitBreaker: Sendable {
    enum State: Equatable, Sendable {
        /// Calls look up; `timeouts` lookups in a row have timed out.
        case closed(timeouts: Int)
        /// Calls run uncached until `until`.
        case open(until: NIODeadline)
        /// One probe is out; the others run uncached. Should its outcome
        /// never come, another probe goes out at `probeExpires`.
        case halfOpen(probeExpires: NIODeadline)
    }

    /// What a call should do.
    enum Decision: Equatable, Sendable {
        /// Look up; report the outcome (`timedOut` or `answered`) when `reports`.
        case allow(reports: Bool)
        /// Run the function uncached, with no I/O.
        case bypass
    }

    private(set) var state: State = .closed(timeouts: 0)
    /// How often the circuit opened since it last closed (1 while first open).
    private(set) var trips = 0
    /// Consecutive lookup timeouts that open the circuit (at least 1).
    let threshold: Int
    /// How long the circuit stays open the first time (at least zero).
    let initialOpenDuration: TimeAmount
    /// The cap of the doubling open time.
    let maximumOpenDuration: TimeAmount

    /// Doubling, no jitter (the package's one backoff computation).
    private let openTime: ExponentialBackoff

    init(threshold: Int = 3, initialOpenDuration: TimeAmount = .milliseconds(100), maximumOpenDuration: TimeAmount = .seconds(5)) {
        self.threshold = max(1, threshold)
        self.openTime = ExponentialBackoff(initial: initialOpenDuration, maximum: maximumOpenDuration)
        self.initialOpenDuration = self.openTime.initial
        self.maximumOpenDuration = self.openTime.maximum
    }

    /// How long the circuit stays open after its `trips`-th opening since it
    /// last closed: doubling from the initial duration, capped at the maximum.
    func openDuration(afterTrips trips: Int) -> TimeAmount {
        self.openTime.delay(afterFailures: trips)
    }

    /// `now` is read only while the circuit is open or half-open.
    mutating func decide(now: @autoclosure () -> NIODeadline) -> Decision {
        switch self.state {
        case .closed(let timeouts):
            return .allow(reports: timeouts > 0)
        case .open(let until):
            let now = now()
            guard now >= until else { return .bypass }
            self.state = .halfOpen(probeExpires: now + self.openDuration(afterTrips: self.trips))
            return .allow(reports: true)
        case .halfOpen(let probeExpires):
            let now = now()
            guard now >= probeExpires else { return .bypass }
            // The probe's outcome never came: send another one.
            self.state = .halfOpen(probeExpires: now + self.openDuration(afterTrips: self.trips))
            return .allow(reports: true)
        }
    }

    /// A lookup timed out.
    mutating func timedOut(now: NIODeadline) {
        switch self.state {
        case .closed(let timeouts):
            if timeouts + 1 >= self.threshold {
                self.open(now: now)
            } else {
                self.state = .closed(timeouts: timeouts + 1)
            }
        case .halfOpen:
            self.open(now: now)
        case .open:
            // A call let through before the circuit opened: already counted.
            break
        }
    }

    /// A lookup got a reply (or failed other than by timing out): the gateway answers.
    mutating func answered() {
        switch self.state {
        case .closed, .halfOpen:
            self.reset()
        case .open:
            // A late answer to a call that started before the circuit opened:
            // the probe decides.
            break
        }
    }

    /// Whether calls look up as usual.
    var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    /// Closes the circuit and forgets its history (a new connection).
    mutating func reset() {
        self.state = .closed(timeouts: 0)
        self.trips = 0
    }

    private mutating func open(now: NIODeadline) {
        self.trips += 1
        self.state = .open(until: now + self.openDuration(afterTrips: self.trips))
    }
}
