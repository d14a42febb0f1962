@testable import GatewayClientRuntime
import NIOCore
import Testing

/// The circuit breaker's decisions, driven with explicit times.
@Suite struct CircuitBreakerTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    func breaker() -> CircuitBreaker {
        CircuitBreaker(threshold: 3, initialOpenDuration: .milliseconds(100), maximumOpenDuration: .seconds(1))
    }

    @Test func consecutiveTimeoutsOpenTheCircuitAndCallsThenBypass() {
        var breaker = self.breaker()
        #expect(breaker.decide(now: self.start) == .allow(reports: false))
        breaker.timedOut(now: self.start)
        breaker.timedOut(now: self.start)
        // Below the threshold: calls still look up, and report an answer.
        #expect(breaker.decide(now: self.start) == .allow(reports: true))
        breaker.timedOut(now: self.start)
        #expect(breaker.state == .open(until: self.start + .milliseconds(100)))
        #expect(breaker.decide(now: self.start + .milliseconds(99)) == .bypass)
    }

    @Test func anAnswerBetweenTimeoutsStartsTheCountAgain() {
        var breaker = self.breaker()
        breaker.timedOut(now: self.start)
        breaker.timedOut(now: self.start)
        breaker.answered()
        #expect(breaker.state == .closed(timeouts: 0))
        #expect(breaker.decide(now: self.start) == .allow(reports: false), "with nothing counted, a call reports nothing")
        breaker.timedOut(now: self.start)
        breaker.timedOut(now: self.start)
        #expect(breaker.state == .closed(timeouts: 2))
    }

    @Test func afterTheOpenTimeOneProbeGoesOutAndItsAnswerClosesTheCircuit() {
        var breaker = self.breaker()
        for _ in 0..<3 { breaker.timedOut(now: self.start) }
        let reopen = self.start + .milliseconds(100)
        #expect(breaker.decide(now: reopen) == .allow(reports: true), "the probe")
        #expect(breaker.decide(now: reopen) == .bypass, "only one probe at a time")
        #expect(breaker.decide(now: reopen + .milliseconds(50)) == .bypass)
        breaker.answered()
        #expect(breaker.state == .closed(timeouts: 0))
        #expect(breaker.trips == 0)
        #expect(breaker.decide(now: reopen) == .allow(reports: false))
    }

    @Test func aProbeThatTimesOutReopensForTwiceAsLongUpToTheCap() {
        var breaker = self.breaker()
        for _ in 0..<3 { breaker.timedOut(now: self.start) }
        var now = self.start
        for expected in [200, 400, 800, 1_000, 1_000] {
            now = now + breaker.openDuration(afterTrips: breaker.trips)
            #expect(breaker.decide(now: now) == .allow(reports: true))
            breaker.timedOut(now: now)
            #expect(breaker.state == .open(until: now + .milliseconds(Int64(expected))))
        }
    }

    @Test func aProbeWhoseOutcomeNeverComesIsFollowedByAnother() {
        var breaker = self.breaker()
        for _ in 0..<3 { breaker.timedOut(now: self.start) }
        let probe = self.start + .milliseconds(100)
        #expect(breaker.decide(now: probe) == .allow(reports: true))
        #expect(breaker.decide(now: probe + .milliseconds(99)) == .bypass)
        #expect(breaker.decide(now: probe + .milliseconds(100)) == .allow(reports: true))
    }

    @Test func lateOutcomesWhileOpenChangeNothing() {
        var breaker = self.breaker()
        for _ in 0..<3 { breaker.timedOut(now: self.start) }
        let open = breaker.state
        // Calls let through before the circuit opened finish now.
        breaker.answered()
        breaker.timedOut(now: self.start + .milliseconds(10))
        #expect(breaker.state == open)
    }

    @Test func aNewConnectionClosesTheCircuit() {
        var breaker = self.breaker()
        for _ in 0..<3 { breaker.timedOut(now: self.start) }
        breaker.reset()
        #expect(breaker.state == .closed(timeouts: 0))
        #expect(breaker.decide(now: self.start) == .allow(reports: false))
    }

    @Test func theTimeIsReadOnlyWhileTheCircuitIsNotClosed() {
        var breaker = self.breaker()
        var reads = 0
        func now(_ time: NIODeadline) -> NIODeadline {
            reads += 1
            return time
        }
        _ = breaker.decide(now: now(self.start))
        breaker.timedOut(now: self.start)
        _ = breaker.decide(now: now(self.start))
        #expect(reads == 0, "a closed circuit reads no clock")
        breaker.timedOut(now: self.start)
        breaker.timedOut(now: self.start)
        _ = breaker.decide(now: now(self.start))
        #expect(reads == 1)
    }

    @Test func extremeSettingsAreKeptInRange() {
        let negative = CircuitBreaker(threshold: -4, initialOpenDuration: .nanoseconds(Int64.min), maximumOpenDuration: .nanoseconds(Int64.min))
        #expect(negative.threshold == 1)
        #expect(negative.openDuration(afterTrips: 1) == .zero)
        let huge = CircuitBreaker(threshold: Int.max, initialOpenDuration: .nanoseconds(Int64.max), maximumOpenDuration: .nanoseconds(Int64.max))
        #expect(huge.openDuration(afterTrips: Int.max) == .nanoseconds(Int64.max))
        var one = CircuitBreaker(threshold: 1, initialOpenDuration: .nanoseconds(Int64.max), maximumOpenDuration: .nanoseconds(Int64.max))
        one.timedOut(now: self.start)
        #expect(one.decide(now: self.start + .seconds(1_000_000)) == .bypass)
    }
}
