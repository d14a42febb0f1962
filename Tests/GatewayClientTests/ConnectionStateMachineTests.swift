@testable import GatewayClientRuntime
import NIOCore
import Testing

/// The client's connect/backoff decisions, driven with explicit times.
@Suite struct ConnectionStateMachineTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func theFirstCallConnectsAndOthersBypassMeanwhile() {
        var machine = ConnectionStateMachine()
        #expect(machine.decide(now: self.start) == .connect)
        #expect(machine.decide(now: self.start) == .bypass)
        machine.connectSucceeded()
        #expect(machine.decide(now: self.start) == .useConnection)
    }

    @Test func anAbsentGatewayIsNotRetriedOnEveryCall() {
        var machine = ConnectionStateMachine(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        #expect(machine.decide(now: self.start) == .connect)
        machine.connectFailed(now: self.start)
        // Within the backoff, calls run uncached without a connect attempt.
        #expect(machine.decide(now: self.start + .milliseconds(99)) == .bypass)
        #expect(machine.decide(now: self.start + .milliseconds(100)) == .connect)
        machine.connectFailed(now: self.start + .milliseconds(100))
        // The wait doubles…
        #expect(machine.decide(now: self.start + .milliseconds(299)) == .bypass)
        #expect(machine.decide(now: self.start + .milliseconds(300)) == .connect)
    }

    @Test func theBackoffDoublesUpToItsCap() {
        let machine = ConnectionStateMachine(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        #expect(machine.backoff(afterFailures: 1) == .milliseconds(100))
        #expect(machine.backoff(afterFailures: 2) == .milliseconds(200))
        #expect(machine.backoff(afterFailures: 4) == .milliseconds(800))
        #expect(machine.backoff(afterFailures: 5) == .seconds(1))
        #expect(machine.backoff(afterFailures: 500) == .seconds(1))
    }

    @Test func aLostConnectionIsRetriedAtOnceAndSuccessResetsTheFailures() {
        var machine = ConnectionStateMachine(initialDelay: .milliseconds(100), maximumDelay: .seconds(1))
        _ = machine.decide(now: self.start)
        machine.connectFailed(now: self.start)
        _ = machine.decide(now: self.start + .seconds(1))
        machine.connectSucceeded()
        #expect(machine.failures == 0)
        machine.connectionLost()
        #expect(machine.decide(now: self.start + .seconds(1)) == .connect)
        machine.connectFailed(now: self.start + .seconds(1))
        // Counting starts again from one failure.
        #expect(machine.state == .backingOff(retryAt: self.start + .seconds(1) + .milliseconds(100)))
    }

    @Test func theTimeIsReadOnlyWhileBackingOff() {
        var machine = ConnectionStateMachine()
        var reads = 0
        func now(_ time: NIODeadline) -> NIODeadline {
            reads += 1
            return time
        }
        #expect(machine.decide(now: now(self.start)) == .connect)
        machine.connectSucceeded()
        #expect(machine.decide(now: now(self.start)) == .useConnection)
        #expect(reads == 0, "a call with the connection open reads no clock")
        machine.connectionLost()
        #expect(machine.decide(now: now(self.start)) == .connect)
        machine.connectFailed(now: self.start)
        #expect(machine.decide(now: now(self.start)) == .bypass)
        #expect(reads == 1, "backing off needs the time")
    }
}
