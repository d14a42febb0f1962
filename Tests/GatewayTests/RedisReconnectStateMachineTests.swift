import GatewayProtocol
import NIOCore
import Testing

@testable import Gateway

@Suite("Redis backoff and reconnect state machine")
struct RedisReconnectStateMachineTests {
    private let noJitter = try! RedisBackoff(
        initialDelay: .milliseconds(100),
        maximumDelay: .seconds(1),
        multiplier: 2,
        jitter: 0,
        stableAfter: .seconds(5)
    )

    // MARK: Backoff

    @Test func delaysGrowExponentiallyUpToTheMaximum() {
        let delays = (1...7).map { self.noJitter.delay(afterFailures: $0, random: 0.3) }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1), .seconds(1)])
        #expect(self.noJitter.delay(afterFailures: 0, random: 0) == .milliseconds(100))
        #expect(self.noJitter.delay(afterFailures: -3, random: 0) == .milliseconds(100))
        #expect(self.noJitter.delay(afterFailures: 1_000_000, random: 0) == .seconds(1))
        #expect(self.noJitter.delay(afterFailures: .max, random: 0) == .seconds(1))
    }

    @Test func jitterShortensTheDelayByUpToItsFraction() throws {
        let backoff = try RedisBackoff(initialDelay: .milliseconds(100), maximumDelay: .seconds(1), multiplier: 2, jitter: 0.5)
        #expect(backoff.delay(afterFailures: 2, random: 0) == .milliseconds(200))
        #expect(backoff.delay(afterFailures: 2, random: 0.5) == .milliseconds(150))
        #expect(backoff.delay(afterFailures: 2, random: 1) == .milliseconds(100))
        // Out-of-range randomness is clamped rather than trusted.
        #expect(backoff.delay(afterFailures: 2, random: -7) == .milliseconds(200))
        #expect(backoff.delay(afterFailures: 2, random: 9) == .milliseconds(100))
        #expect(backoff.delay(afterFailures: 2, random: .nan) == .milliseconds(200))
        for _ in 0..<1000 {
            let delay = backoff.delay(afterFailures: 3, random: Double.random(in: 0..<1))
            #expect(delay > .milliseconds(200) && delay <= .milliseconds(400))
        }
        let full = try RedisBackoff(initialDelay: .seconds(1), maximumDelay: .seconds(1), jitter: 1)
        #expect(full.delay(afterFailures: 1, random: 1) == .zero)
    }

    @Test func extremeSettingsStayInRange() throws {
        let huge = try RedisBackoff(initialDelay: .nanoseconds(1), maximumDelay: .nanoseconds(.max), multiplier: 1e300, jitter: 0)
        #expect(huge.delay(afterFailures: 50, random: 0) > .zero)
        let zero = try RedisBackoff(initialDelay: .zero, maximumDelay: .zero, multiplier: 3, jitter: 0.5)
        #expect(zero.delay(afterFailures: 10, random: 0.5) == .zero)
        let flat = try RedisBackoff(initialDelay: .milliseconds(10), maximumDelay: .seconds(1), multiplier: 1, jitter: 0)
        #expect(flat.delay(afterFailures: .max, random: 0) == .milliseconds(10))
    }

    @Test func invalidBackoffSettingsAreRefused() {
        for make in [
            { try RedisBackoff(initialDelay: .milliseconds(-1)) },
            { try RedisBackoff(initialDelay: .seconds(2), maximumDelay: .seconds(1)) },
            { try RedisBackoff(multiplier: 0.5) },
            { try RedisBackoff(multiplier: .infinity) },
            { try RedisBackoff(jitter: 1.5) },
            { try RedisBackoff(jitter: -0.1) },
            { try RedisBackoff(stableAfter: .seconds(-1)) },
        ] as [() throws -> RedisBackoff] {
            #expect(throws: GatewayError(.invalidConfiguration, "")) { _ = try make() }
        }
    }

    // MARK: State machine

    @Test func connectFailuresBackOffAndRetry() {
        var machine = RedisReconnectStateMachine(backoff: self.noJitter)
        #expect(machine.state == .idle)
        #expect(machine.start() == .connect)
        #expect(machine.state == .connecting(failures: 0))
        #expect(machine.start() == .none, "starting twice does nothing")

        #expect(machine.connectFailed(random: 0) == .scheduleReconnect(after: .milliseconds(100)))
        #expect(machine.state == .waitingToReconnect(failures: 1))
        #expect(!machine.isConnected)
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectFailed(random: 0) == .scheduleReconnect(after: .milliseconds(200)))
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.connectFailed(random: 0) == .scheduleReconnect(after: .milliseconds(400)))
        #expect(machine.reconnectTimerFired() == .connect)
        #expect(machine.state == .connecting(failures: 3))

        let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        #expect(machine.connectSucceeded(now: now) == .none)
        #expect(machine.isConnected)
        #expect(machine.state == .connected(failures: 3, since: now))
    }

    @Test func aStableConnectionReconnectsAtOnceAndResetsTheBackoff() {
        var machine = RedisReconnectStateMachine(backoff: self.noJitter)
        _ = machine.start()
        _ = machine.connectFailed(random: 0)
        _ = machine.reconnectTimerFired()
        let connectedAt = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.connectSucceeded(now: connectedAt)

        #expect(machine.connectionClosed(now: connectedAt + .seconds(5), random: 0) == .connect)
        #expect(machine.state == .connecting(failures: 0))
        #expect(machine.connectFailed(random: 0) == .scheduleReconnect(after: .milliseconds(100)))
    }

    @Test func aShortLivedConnectionCountsAsAFailure() {
        var machine = RedisReconnectStateMachine(backoff: self.noJitter)
        var now = NIODeadline.uptimeNanoseconds(1_000_000_000)
        _ = machine.start()
        var delays: [TimeAmount] = []
        for _ in 0..<5 {
            #expect(machine.connectSucceeded(now: now) == .none)
            now = now + .milliseconds(10)
            guard case .scheduleReconnect(let delay) = machine.connectionClosed(now: now, random: 0) else {
                Issue.record("a connection that dropped after 10 ms must back off, got \(machine.state)")
                return
            }
            delays.append(delay)
            #expect(machine.reconnectTimerFired() == .connect)
        }
        #expect(delays == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1)])
    }

    @Test func shutdownFromEveryState() {
        let now = NIODeadline.uptimeNanoseconds(1)

        var idle = RedisReconnectStateMachine(backoff: self.noJitter)
        #expect(idle.shutdown() == .none)
        #expect(idle.start() == .none, "a shut-down machine never starts")

        var connecting = RedisReconnectStateMachine(backoff: self.noJitter)
        _ = connecting.start()
        #expect(connecting.shutdown() == .none)
        #expect(connecting.connectSucceeded(now: now) == .closeConnection, "a connection that arrives after shutdown is closed")
        #expect(connecting.state == .shutDown)

        var failing = RedisReconnectStateMachine(backoff: self.noJitter)
        _ = failing.start()
        _ = failing.shutdown()
        #expect(failing.connectFailed(random: 0) == .none, "no retry after shutdown")

        var waiting = RedisReconnectStateMachine(backoff: self.noJitter)
        _ = waiting.start()
        _ = waiting.connectFailed(random: 0)
        #expect(waiting.shutdown() == .cancelReconnectTimer)
        #expect(waiting.reconnectTimerFired() == .none, "a timer that fires anyway does nothing")

        var connected = RedisReconnectStateMachine(backoff: self.noJitter)
        _ = connected.start()
        _ = connected.connectSucceeded(now: now)
        #expect(connected.shutdown() == .closeConnection)
        #expect(connected.connectionClosed(now: now + .seconds(10), random: 0) == .none, "no reconnect after shutdown")
        #expect(connected.shutdown() == .none)
        #expect(connected.state == .shutDown)
    }

    @Test func eventsThatDoNotFitTheStateAreAbsorbed() {
        var machine = RedisReconnectStateMachine(backoff: self.noJitter)
        let now = NIODeadline.uptimeNanoseconds(1)
        #expect(machine.connectFailed(random: 0) == .none)
        #expect(machine.reconnectTimerFired() == .none)
        #expect(machine.connectionClosed(now: now, random: 0) == .none)
        #expect(machine.connectSucceeded(now: now) == .closeConnection, "an unexpected connection is not kept")
        #expect(machine.state == .idle)
        _ = machine.start()
        _ = machine.connectSucceeded(now: now)
        #expect(machine.reconnectTimerFired() == .none)
        #expect(machine.connectSucceeded(now: now) == .closeConnection, "a second connection is not kept")
        #expect(machine.isConnected)
    }
}
