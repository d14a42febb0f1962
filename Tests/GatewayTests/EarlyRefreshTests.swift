import GatewayTestSupport
import Testing

@testable import Gateway

@Suite("Early refresh decision (XFetch)")
struct EarlyRefreshTests {
    /// A generator that returns the same 64 bits every time.
    struct Fixed: RandomNumberGenerator {
        var bits: UInt64
        mutating func next() -> UInt64 { self.bits }
    }

    @Test func betaZeroOrNoComputeTimeNeverRefreshes() {
        var random = Fixed(bits: 0)
        #expect(!EarlyRefresh(beta: 0).shouldRefresh(nowMilliseconds: 999, expiresAtMilliseconds: 1000, computeMicroseconds: 1_000_000, using: &random))
        #expect(!EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 999, expiresAtMilliseconds: 1000, computeMicroseconds: 0, using: &random))
    }

    @Test func theFormulaDecides() {
        // rand = 2^-53 (the smallest draw): -ln(rand) = 36.7, so an entry of
        // a 100 ms computation refreshes up to 3.67 s before its expiry.
        var smallest = Fixed(bits: 0)
        #expect(EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 3_600, computeMicroseconds: 100_000, using: &smallest))
        #expect(!EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 3_700, computeMicroseconds: 100_000, using: &smallest))
        // rand = 1 (the largest): ln 1 = 0, no refresh before the expiry.
        var largest = Fixed(bits: .max)
        #expect(!EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 1, computeMicroseconds: 100_000, using: &largest))
        // rand = 1/2: -ln = 0.693; beta 2 doubles the reach.
        var half = Fixed(bits: (1 << 63) - (1 << 11))
        #expect(EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 69, computeMicroseconds: 100_000, using: &half))
        #expect(!EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 70, computeMicroseconds: 100_000, using: &half))
        #expect(EarlyRefresh(beta: 2).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 138, computeMicroseconds: 100_000, using: &half))
        // Past the expiry: always.
        #expect(EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 10, expiresAtMilliseconds: 10, computeMicroseconds: 1, using: &largest))
    }

    @Test func theProbabilityFollowsTheExponentialDistribution() {
        // P(refresh) = exp(-remaining / (delta * beta)): with remaining = delta, 1/e.
        var random = SeededRandom(seed: 18)
        let trials = 20_000
        let refreshed = (0..<trials).filter { _ in
            EarlyRefresh(beta: 1).shouldRefresh(nowMilliseconds: 0, expiresAtMilliseconds: 100, computeMicroseconds: 100_000, using: &random)
        }.count
        let share = Double(refreshed) / Double(trials)
        #expect(abs(share - 0.3679) < 0.02)
    }
}
