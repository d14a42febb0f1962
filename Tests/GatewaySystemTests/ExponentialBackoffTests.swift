import GatewaySystem
import NIOCore
import Testing

/// The package's one backoff computation, which the client's reconnects and
/// circuit breaker and the gateway's Redis reconnects share.
@Suite struct ExponentialBackoffTests {
    @Test func doublingGrowsFromTheInitialWaitUpToTheMaximum() {
        let backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1))
        #expect(backoff.multiplier == 2)
        #expect(backoff.jitter == 0)
        let delays = (1...6).map { backoff.delay(afterFailures: $0) }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1)])
    }

    @Test func zeroOrFewerFailuresCountAsOne() {
        let backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1))
        #expect(backoff.delay(afterFailures: 0) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: -5) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: .min) == .milliseconds(100))
    }

    @Test func doublingNeverOverflows() {
        let backoff = ExponentialBackoff(initial: .nanoseconds(1), maximum: .nanoseconds(.max))
        #expect(backoff.delay(afterFailures: 63) == .nanoseconds(1 << 62))
        // 2^63 ns and beyond do not fit: the maximum, exactly.
        #expect(backoff.delay(afterFailures: 64) == .nanoseconds(.max))
        #expect(backoff.delay(afterFailures: 100) == .nanoseconds(.max))
        #expect(backoff.delay(afterFailures: .max) == .nanoseconds(.max))
        let large = ExponentialBackoff(initial: .nanoseconds(.max), maximum: .nanoseconds(.max))
        #expect(large.delay(afterFailures: 2) == .nanoseconds(.max))
    }

    @Test func otherMultipliersGrowByThemselvesAndSaturate() {
        let triple = ExponentialBackoff(initial: .milliseconds(10), maximum: .seconds(1), multiplier: 3)
        #expect((1...6).map { triple.delay(afterFailures: $0) } == [.milliseconds(10), .milliseconds(30), .milliseconds(90), .milliseconds(270), .milliseconds(810), .seconds(1)])
        let flat = ExponentialBackoff(initial: .milliseconds(10), maximum: .seconds(1), multiplier: 1)
        #expect(flat.delay(afterFailures: .max) == .milliseconds(10))
        let huge = ExponentialBackoff(initial: .nanoseconds(1), maximum: .nanoseconds(.max), multiplier: 1e300)
        #expect(huge.delay(afterFailures: 50) == .nanoseconds(.max))
        let infinite = ExponentialBackoff(initial: .milliseconds(1), maximum: .seconds(2), multiplier: .infinity)
        #expect(infinite.delay(afterFailures: 1) == .milliseconds(1))
        #expect(infinite.delay(afterFailures: 2) == .seconds(2))
    }

    @Test func jitterShortensTheWaitByUpToItsFraction() {
        let backoff = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1), jitter: 0.5)
        #expect(backoff.delay(afterFailures: 2, random: 0) == .milliseconds(200))
        #expect(backoff.delay(afterFailures: 2, random: 0.5) == .milliseconds(150))
        #expect(backoff.delay(afterFailures: 2, random: 1) == .milliseconds(100))
        // Out-of-range randomness is clamped rather than trusted.
        #expect(backoff.delay(afterFailures: 2, random: -7) == .milliseconds(200))
        #expect(backoff.delay(afterFailures: 2, random: 9) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: 2, random: .nan) == .milliseconds(200))
        // The maximum is capped before jitter, so jitter shortens it too.
        #expect(backoff.delay(afterFailures: 10, random: 1) == .milliseconds(500))
        for _ in 0..<1000 {
            let delay = backoff.delay(afterFailures: 3, random: Double.random(in: 0..<1))
            #expect(delay > .milliseconds(200) && delay <= .milliseconds(400))
        }
        let none = ExponentialBackoff(initial: .milliseconds(100), maximum: .seconds(1))
        #expect(none.delay(afterFailures: 2, random: 0.9) == .milliseconds(200), "without jitter, random is ignored")
        let full = ExponentialBackoff(initial: .seconds(1), maximum: .seconds(1), jitter: 1)
        #expect(full.delay(afterFailures: 1, random: 1) == .zero)
    }

    @Test func outOfRangeSettingsAreClamped() {
        let negative = ExponentialBackoff(initial: .nanoseconds(.min), maximum: .nanoseconds(.min), multiplier: -3, jitter: 7)
        #expect(negative.initial == .zero && negative.maximum == .zero)
        #expect(negative.multiplier == 1 && negative.jitter == 1)
        #expect(negative.delay(afterFailures: 10, random: 0.5) == .zero)
        let nan = ExponentialBackoff(initial: .milliseconds(1), maximum: .seconds(1), multiplier: .nan, jitter: .nan)
        #expect(nan.multiplier == 1 && nan.jitter == 0)
        #expect(nan == ExponentialBackoff(initial: .milliseconds(1), maximum: .seconds(1), multiplier: 1, jitter: 0))
        // A maximum below the initial wait caps every wait.
        let inverted = ExponentialBackoff(initial: .seconds(2), maximum: .seconds(1))
        #expect(inverted.delay(afterFailures: 1) == .seconds(1))
        let zero = ExponentialBackoff(initial: .zero, maximum: .seconds(1), multiplier: 3, jitter: 0.5)
        #expect(zero.delay(afterFailures: 10, random: 0.5) == .zero)
    }
}
