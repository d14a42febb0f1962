import Foundation
import GatewayProtocol
import GatewayTestSupport
import Testing

@testable import Gateway

@Suite("Early refresh decision (XFetch, one draw per entry)")
struct EarlyRefreshTests {
    static func key(_ random: inout SeededRandom) -> CacheKey {
        CacheKey(bytes: (0..<32).map { _ in UInt8.random(in: 0...255, using: &random) })!
    }

    @Test func betaZeroOrNoComputeTimeNeverRefreshes() {
        let key = CacheKey(bytes: [UInt8](repeating: 1, count: 32))!
        #expect(!EarlyRefresh(beta: 0, seed: 1).shouldRefresh(key, nowMilliseconds: 999, expiresAtMilliseconds: 1000, computeMicroseconds: 1_000_000))
        #expect(!EarlyRefresh(beta: 1, seed: 1).shouldRefresh(key, nowMilliseconds: 999, expiresAtMilliseconds: 1000, computeMicroseconds: 0))
        #expect(!EarlyRefresh(beta: 0, seed: 1).isDue(remainingMilliseconds: -1, computeMicroseconds: 1, draw: 0.5))
    }

    @Test func theFormulaDecides() {
        let refresh = EarlyRefresh(beta: 1, seed: 0, marginMilliseconds: 0)
        // rand = 1/2: -ln = 0.693: a 100 ms computation refreshes 69 ms before the expiry.
        #expect(refresh.isDue(remainingMilliseconds: 69, computeMicroseconds: 100_000, draw: 0.5))
        #expect(!refresh.isDue(remainingMilliseconds: 70, computeMicroseconds: 100_000, draw: 0.5))
        // beta 2 doubles the lead.
        #expect(EarlyRefresh(beta: 2, seed: 0, marginMilliseconds: 0).isDue(remainingMilliseconds: 138, computeMicroseconds: 100_000, draw: 0.5))
        // rand = 1: no lead; past the expiry: always.
        #expect(!refresh.isDue(remainingMilliseconds: 1, computeMicroseconds: 100_000, draw: 1))
        #expect(refresh.isDue(remainingMilliseconds: 0, computeMicroseconds: 1, draw: 1))
        // The margin is added to every lead.
        let margined = EarlyRefresh(beta: 1, seed: 0, marginMilliseconds: 10)
        #expect(margined.isDue(remainingMilliseconds: 79, computeMicroseconds: 100_000, draw: 0.5))
        #expect(!margined.isDue(remainingMilliseconds: 80, computeMicroseconds: 100_000, draw: 0.5))
    }

    @Test func theDrawIsFixedPerEntryAndGateway() {
        var random = SeededRandom(seed: 18)
        let key = Self.key(&random)
        let refresh = EarlyRefresh(beta: 1, seed: 5)
        let draw = refresh.draw(for: key, expiresAtMilliseconds: 1_000)
        #expect(draw > 0 && draw <= 1)
        #expect(refresh.draw(for: key, expiresAtMilliseconds: 1_000) == draw)
        // A new entry (a new expiry), another key, or another gateway draws afresh.
        #expect(refresh.draw(for: key, expiresAtMilliseconds: 1_001) != draw)
        #expect(refresh.draw(for: Self.key(&random), expiresAtMilliseconds: 1_000) != draw)
        #expect(EarlyRefresh(beta: 1, seed: 6).draw(for: key, expiresAtMilliseconds: 1_000) != draw)
    }

    @Test func theDrawsAreUniform() {
        var random = SeededRandom(seed: 19)
        let refresh = EarlyRefresh(beta: 1, seed: 7)
        let trials = 20_000
        let draws = (0..<trials).map { index in refresh.draw(for: Self.key(&random), expiresAtMilliseconds: Int64(index)) }
        // -ln(U) is Exp(1): mean 1; P(U < 1/2) = 1/2.
        let meanLead = draws.map { -log($0) }.reduce(0, +) / Double(trials)
        #expect(abs(meanLead - 1) < 0.03)
        #expect(abs(Double(draws.filter { $0 < 0.5 }.count) / Double(trials) - 0.5) < 0.015)
        // Consecutive expiries of one key are as independent.
        let key = Self.key(&random)
        let sameKey = (0..<trials).map { refresh.draw(for: key, expiresAtMilliseconds: 1_000_000 + Int64($0)) }
        #expect(abs(sameKey.map { -log($0) }.reduce(0, +) / Double(trials) - 1) < 0.03)
    }

    /// The lead (how long before its expiry an entry is first due) does not
    /// grow with the hit rate: with one draw per entry it is the draw's, mean
    /// `delta * beta` plus the margin, at 10 hits a second as at 1,000.
    /// (With a draw per hit, it would grow by `delta * beta * ln(100)`, 920 ms here.)
    @Test func theLeadDoesNotDependOnTheHitRate() {
        var random = SeededRandom(seed: 20)
        let refresh = EarlyRefresh(beta: 1, seed: 8, marginMilliseconds: 10)
        let expiry: Int64 = 10_000
        let keys = (0..<1_000).map { _ in Self.key(&random) }
        func meanLead(step: Int64) -> Double {
            var total: Int64 = 0
            for key in keys {
                // Hits every `step` ms from 2.5 s before the expiry (a lead
                // longer than that has a chance of e^-12).
                var now = expiry - 2_500
                while !refresh.shouldRefresh(key, nowMilliseconds: now, expiresAtMilliseconds: expiry, computeMicroseconds: 200_000) {
                    now += step
                }
                total += expiry - now
            }
            return Double(total) / Double(keys.count)
        }
        let slow = meanLead(step: 100)
        let fast = meanLead(step: 1)
        // 200 ms + 10 ms, less half a hit interval: 1,000 leads of standard
        // deviation 200 ms give a mean within 25 ms (4 standard errors).
        #expect(abs(fast - 209.5) < 25, "1,000 hits/s: mean lead \(fast) ms")
        // The same entries at a hundredth of the rate: the same draws, found
        // by a hit up to 100 ms later (49.5 ms on average).
        #expect(abs(fast - slow - 49.5) < 5, "10 hits/s: mean lead \(slow) ms")
    }

    @Test func shortlyBeforeItIsDueAnEntryIsSoon() {
        var random = SeededRandom(seed: 21)
        let refresh = EarlyRefresh(beta: 1, seed: 10)
        let expiry: Int64 = 100_000
        for _ in 0..<100 {
            let key = Self.key(&random)
            // The entry's lead, from its draw: due from expiry - lead on.
            let lead = -200 * log(refresh.draw(for: key, expiresAtMilliseconds: expiry))
            let dueAt = expiry - Int64(lead.rounded(.down))
            func decision(_ now: Int64) -> EarlyRefresh.Decision {
                refresh.decide(key, nowMilliseconds: now, expiresAtMilliseconds: expiry, computeMicroseconds: 200_000)
            }
            #expect(decision(dueAt) == .due)
            #expect(decision(dueAt - 2) == .soon)
            #expect(decision(dueAt - 240) == .soon)
            #expect(decision(dueAt - 260) == .notYet)
            #expect(decision(expiry) == .due)
        }
    }

    @Test func farFromItsExpiryAnEntryIsNeverDue() {
        let key = CacheKey(bytes: [UInt8](repeating: 3, count: 32))!
        let refresh = EarlyRefresh(beta: 1, seed: 9, marginMilliseconds: 10)
        // 100 ms computations: at most 100 * ln(2^53) + 10 = 3,682 ms of
        // lead, soon 250 ms before that.
        #expect(refresh.decide(key, nowMilliseconds: 0, expiresAtMilliseconds: 3_940, computeMicroseconds: 100_000) == .notYet)
    }
}
