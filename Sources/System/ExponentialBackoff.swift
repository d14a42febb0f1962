import NIOCore

/// A wait that grows with each consecutive failure: `initial` after the
/// first, times `multiplier` after each further one, capped at `maximum`, and
/// shortened by a random fraction of up to `jitter` of itself.
///
/// It is the one backoff computation of the package, a value with no clock
/// and no randomness of its own (the caller passes `random`), so it is tested
/// by itself. Its users:
/// - the client's reconnect backoff (`ConnectionStateMachine`) and its circuit
///   breaker's open time (`CircuitBreaker`): doubling, no jitter;
/// - the gateway's Redis reconnects (`RedisBackoff`, which validates its
///   settings and adds `stableAfter`): any multiplier, with jitter.
///
/// The computation never overflows or traps, whatever the settings:
/// - with `multiplier` 2 (doubling) it is exact integer arithmetic on
///   nanoseconds, and a delay past `Int64.max` is the maximum;
/// - with any other multiplier it is done in `Double`, which saturates to
///   infinity, and then the maximum;
/// - the jitter is applied last: with `jitter` 0.5 the wait is between half
///   and all of the capped delay, as `random` goes from 1 to 0.
public struct ExponentialBackoff: Sendable, Hashable {
    /// The wait after the first failure (before jitter); at least zero.
    public let initial: TimeAmount
    /// The longest wait (before jitter); at least zero. A maximum below
    /// `initial` caps every wait, the first included.
    public let maximum: TimeAmount
    /// The factor by which the wait grows with each failure; at least 1.
    public let multiplier: Double
    /// The largest fraction of a wait that jitter removes, from 0 (none) to 1.
    public let jitter: Double

    /// A backoff; out-of-range settings are clamped rather than refused:
    /// negative durations count as zero, a multiplier below 1 (or NaN) as 1,
    /// and a jitter outside 0...1 (NaN as 0) as the nearest end. Callers that
    /// must refuse bad settings (a configuration) check them first.
    public init(initial: TimeAmount, maximum: TimeAmount, multiplier: Double = 2, jitter: Double = 0) {
        self.initial = max(.zero, initial)
        self.maximum = max(.zero, maximum)
        self.multiplier = multiplier >= 1 ? multiplier : 1
        self.jitter = jitter.isNaN ? 0 : min(max(jitter, 0), 1)
    }

    /// The wait after `failures` consecutive failures (1 for the first; zero
    /// or fewer count as one). `random` is a number in 0..<1 that picks the
    /// jitter (values outside 0...1 are clamped, NaN counts as 0); it is
    /// ignored when `jitter` is 0.
    public func delay(afterFailures failures: Int, random: Double = 0) -> TimeAmount {
        let capped = self.cappedDelay(exponent: max(failures, 1) - 1)
        guard self.jitter > 0 else { return capped }
        let fraction = random.isNaN ? 0 : min(max(random, 0), 1)
        guard fraction > 0 else { return capped }
        let shortened = Double(capped.nanoseconds) * (1 - self.jitter * fraction)
        // Double(Int64.max) rounds up to 2^63, which Int64 cannot hold.
        return .nanoseconds(Int64(min(max(shortened, 0), Double(Int64.max).nextDown)))
    }

    /// `min(maximum, initial * multiplier^exponent)`, for `exponent >= 0`.
    private func cappedDelay(exponent: Int) -> TimeAmount {
        let initial = self.initial.nanoseconds
        if initial == 0 { return .zero }
        if self.multiplier == 2 {
            // Past 2^62 the product exceeds Int64.max for any initial >= 1.
            guard exponent <= 62 else { return self.maximum }
            let product = initial.multipliedReportingOverflow(by: 1 << exponent)
            return product.overflow ? self.maximum : min(.nanoseconds(product.partialValue), self.maximum)
        }
        let maximum = Double(self.maximum.nanoseconds)
        // Doubles saturate to +infinity instead of overflowing; min() then picks the maximum.
        let delay = min(Double(initial) * Self.power(self.multiplier, exponent), maximum)
        if delay >= maximum { return self.maximum }
        return .nanoseconds(Int64(delay))
    }

    /// `base` to the power `exponent`, by squaring: O(log exponent) steps.
    private static func power(_ base: Double, _ exponent: Int) -> Double {
        var result = 1.0
        var base = base
        var exponent = exponent
        while exponent > 0 {
            if exponent & 1 == 1 { result *= base }
            base *= base
            exponent >>= 1
        }
        return result
    }
}
