import GatewayProtocol
import GatewaySystem
import NIOCore

/// How long to wait between attempts to (re)connect to Redis: exponential
/// backoff with jitter.
///
/// After `n` consecutive failures the next attempt waits
/// `min(maximumDelay, initialDelay * multiplier^(n-1))`, shortened by a random
/// fraction of up to `jitter` of itself: with `jitter` 0.5 the wait is
/// uniformly between half and all of the exponential delay. The jitter
/// spreads out the reconnects of many gateways after a Redis restart, so they
/// do not all hit it at the same instant.
///
/// A connection that stays up for at least `stableAfter` resets the count;
/// one that drops sooner counts as another failure, so a server that accepts
/// connections and then drops them is not hammered in a tight loop.
public struct RedisBackoff: Sendable, Hashable {
    /// The delays: the package's one backoff computation, shared with the
    /// client (`GatewaySystem.ExponentialBackoff`); this type adds the
    /// validation of its settings and `stableAfter`.
    let curve: ExponentialBackoff
    /// How long a connection must live for its closing not to count as a failure.
    public let stableAfter: TimeAmount

    /// The delay after the first failure (before jitter).
    public var initialDelay: TimeAmount { self.curve.initial }
    /// The longest delay (before jitter).
    public var maximumDelay: TimeAmount { self.curve.maximum }
    /// The factor by which the delay grows with each failure; at least 1.
    public var multiplier: Double { self.curve.multiplier }
    /// The largest fraction of a delay that jitter removes, from 0 (none) to 1 (full jitter).
    public var jitter: Double { self.curve.jitter }

    /// The defaults: 50 ms doubling up to 5 s, jitter 0.5, stable after 5 s.
    public static let standard = RedisBackoff(
        curve: ExponentialBackoff(initial: .milliseconds(50), maximum: .seconds(5), multiplier: 2, jitter: 0.5),
        stableAfter: .seconds(5)
    )

    /// A backoff policy; throws `GatewayError(.invalidConfiguration)` for a
    /// negative delay, a maximum below the initial delay, a multiplier below
    /// 1, or a jitter outside 0...1.
    public init(
        initialDelay: TimeAmount = .milliseconds(50),
        maximumDelay: TimeAmount = .seconds(5),
        multiplier: Double = 2,
        jitter: Double = 0.5,
        stableAfter: TimeAmount = .seconds(5)
    ) throws {
        guard initialDelay >= .zero, maximumDelay >= initialDelay, stableAfter >= .zero else {
            throw GatewayError(
                .invalidConfiguration,
                "Redis backoff delays must satisfy 0 <= initial (\(initialDelay)) <= maximum (\(maximumDelay)), and stableAfter >= 0"
            )
        }
        guard multiplier.isFinite, multiplier >= 1 else {
            throw GatewayError(.invalidConfiguration, "the Redis backoff multiplier must be at least 1, not \(multiplier)")
        }
        guard jitter.isFinite, (0...1).contains(jitter) else {
            throw GatewayError(.invalidConfiguration, "the Redis backoff jitter must be between 0 and 1, not \(jitter)")
        }
        self.init(
            curve: ExponentialBackoff(initial: initialDelay, maximum: maximumDelay, multiplier: multiplier, jitter: jitter),
            stableAfter: stableAfter
        )
    }

    private init(curve: ExponentialBackoff, stableAfter: TimeAmount) {
        self.curve = curve
        self.stableAfter = stableAfter
    }

    /// The delay before the next attempt after `failures` consecutive
    /// failures (1 for the first); `random` is a number in 0..<1 (values
    /// outside are clamped) that picks the jitter, so tests can fix it.
    public func delay(afterFailures failures: Int, random: Double) -> TimeAmount {
        self.curve.delay(afterFailures: failures, random: random)
    }
}

/// The reconnect decisions for one pooled connection, as a value with no I/O.
///
/// The pool feeds it events (connect succeeded or failed, the connection
/// closed, the backoff timer fired, shutdown) and performs the `Action` it
/// returns. Time and randomness come in as arguments, so every transition is
/// deterministic and testable (in the style of swift-nio-http2's
/// `ConnectionStateMachine`).
///
/// ```
///   idle --start--> connecting --ok--> connected --closed (stable)--> connecting
///                     |    ^                 \--closed (short-lived)--> waiting
///                  failed  |timer fired
///                     v    |
///                    waiting
///   any --shutdown--> shutDown (absorbing)
/// ```
///
/// Events that do not fit the state (which the pool's locking rules out) are
/// absorbed without a transition rather than trapping; a connection that
/// arrives when none is wanted is closed.
struct RedisReconnectStateMachine: Sendable {
    /// Where the connection is in its life.
    enum State: Sendable, Hashable {
        /// Not started.
        case idle
        /// A connect attempt is running; `failures` failed before it.
        case connecting(failures: Int)
        /// Connected since `since`, after `failures` failed attempts.
        case connected(failures: Int, since: NIODeadline)
        /// Waiting for the backoff timer after `failures` failures.
        case waitingToReconnect(failures: Int)
        /// Shut down; nothing more will happen.
        case shutDown
    }

    /// What the pool must do after an event.
    enum Action: Sendable, Hashable {
        /// Nothing.
        case none
        /// Start a connect attempt now.
        case connect
        /// Start the backoff timer; call `reconnectTimerFired` when it fires.
        case scheduleReconnect(after: TimeAmount)
        /// Cancel the backoff timer.
        case cancelReconnectTimer
        /// Close the connection that was just reported (or is held).
        case closeConnection
    }

    private(set) var state: State = .idle
    let backoff: RedisBackoff

    init(backoff: RedisBackoff) {
        self.backoff = backoff
    }

    /// Whether a usable connection is held.
    var isConnected: Bool {
        if case .connected = self.state { return true }
        return false
    }

    /// The pool starts: connect at once.
    mutating func start() -> Action {
        guard case .idle = self.state else { return .none }
        self.state = .connecting(failures: 0)
        return .connect
    }

    /// The connect attempt produced a connection at `now`.
    mutating func connectSucceeded(now: NIODeadline) -> Action {
        guard case .connecting(let failures) = self.state else { return .closeConnection }
        self.state = .connected(failures: failures, since: now)
        return .none
    }

    /// The connect attempt failed; back off. `random` picks the jitter.
    mutating func connectFailed(random: Double) -> Action {
        guard case .connecting(let failures) = self.state else { return .none }
        return self.backOff(failures: failures + 1, random: random)
    }

    /// The held connection closed at `now`. A stable connection is replaced
    /// at once; a short-lived one counts as a failure and backs off.
    mutating func connectionClosed(now: NIODeadline, random: Double) -> Action {
        guard case .connected(let failures, let since) = self.state else { return .none }
        if now - since >= self.backoff.stableAfter {
            self.state = .connecting(failures: 0)
            return .connect
        }
        return self.backOff(failures: failures + 1, random: random)
    }

    /// The backoff timer fired: try again.
    mutating func reconnectTimerFired() -> Action {
        guard case .waitingToReconnect(let failures) = self.state else { return .none }
        self.state = .connecting(failures: failures)
        return .connect
    }

    /// The pool shuts down. A running connect attempt is left to finish; its
    /// connection is then closed by `connectSucceeded`.
    mutating func shutdown() -> Action {
        let previous = self.state
        self.state = .shutDown
        switch previous {
        case .idle, .connecting, .shutDown: return .none
        case .connected: return .closeConnection
        case .waitingToReconnect: return .cancelReconnectTimer
        }
    }

    private mutating func backOff(failures: Int, random: Double) -> Action {
        self.state = .waitingToReconnect(failures: failures)
        return .scheduleReconnect(after: self.backoff.delay(afterFailures: failures, random: random))
    }
}
