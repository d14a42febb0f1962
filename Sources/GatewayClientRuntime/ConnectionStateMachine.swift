import GatewaySystem
import NIOCore

/// When the client may try to reach the gateway, as a value type with no I/O
/// and no clock of its own (callers pass `now`), so it is tested by itself.
///
/// While the gateway stays absent, calls do not pay for a connect attempt:
/// after a failure the client waits `backoff(afterFailures:)` before the next
/// attempt, and every call in between runs its function uncached at once.
/// Only one call connects at a time; the others run uncached meanwhile.
struct ConnectionStateMachine: Sendable {
    enum State: Equatable, Sendable {
        /// No connection and no reason to wait: the next call connects.
        case idle
        /// One call is connecting; the others do not wait for it.
        case connecting
        /// A connection is open.
        case connected
        /// The last attempt failed; no attempt before `retryAt`.
        case backingOff(retryAt: NIODeadline)
    }

    /// What a call should do.
    enum Decision: Equatable, Sendable {
        /// Use the open connection.
        case useConnection
        /// Connect (this call is the one that tries).
        case connect
        /// Run the function uncached: the gateway is absent or another call is connecting.
        case bypass
    }

    private(set) var state: State = .idle
    /// Failed attempts since the last success.
    private(set) var failures = 0
    let initialDelay: TimeAmount
    let maximumDelay: TimeAmount

    /// Doubling, no jitter (the package's one backoff computation).
    private let delay: ExponentialBackoff

    /// Negative delays count as zero (every call may try again at once).
    init(initialDelay: TimeAmount = .milliseconds(100), maximumDelay: TimeAmount = .seconds(5)) {
        self.delay = ExponentialBackoff(initial: initialDelay, maximum: maximumDelay)
        self.initialDelay = self.delay.initial
        self.maximumDelay = self.delay.maximum
    }

    /// The wait after `failures` consecutive failed attempts: doubling from the
    /// initial delay, capped at the maximum.
    func backoff(afterFailures failures: Int) -> TimeAmount {
        self.delay.delay(afterFailures: failures)
    }

    /// `now` is read only while backing off: with a connection open (every
    /// call but the first, usually) a hit does not read the clock for this.
    mutating func decide(now: @autoclosure () -> NIODeadline) -> Decision {
        switch self.state {
        case .connected:
            return .useConnection
        case .connecting:
            return .bypass
        case .idle:
            self.state = .connecting
            return .connect
        case .backingOff(let retryAt):
            guard now() >= retryAt else { return .bypass }
            self.state = .connecting
            return .connect
        }
    }

    mutating func connectSucceeded() {
        self.state = .connected
        self.failures = 0
    }

    mutating func connectFailed(now: NIODeadline) {
        self.failures += 1
        self.state = .backingOff(retryAt: now + self.backoff(afterFailures: self.failures))
    }

    /// The connection closed (the gateway stopped or restarted): the next call
    /// tries again at once, since a restarted gateway is usually back quickly;
    /// if that attempt fails, backing off starts.
    mutating func connectionLost() {
        if case .connected = self.state { self.state = .idle }
    }
}
