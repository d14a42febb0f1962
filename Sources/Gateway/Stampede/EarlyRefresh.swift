import Foundation

/// The early-refresh decision of XFetch (Vattani, Chierichetti and
/// Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015):
/// a hit refreshes its entry early when `now - delta * beta * ln(rand) >= expiry`,
/// where `delta` is the time the entry took to compute and `rand` is uniform
/// in (0, 1]. The closer the expiry, and the slower the computation, the
/// likelier a refresh; `beta` above 1 favours earlier ones, 0 turns them off.
///
/// A value type without I/O; the random source is passed in.
struct EarlyRefresh: Sendable, Equatable {
    /// `--early-refresh-beta`; 0 never refreshes.
    var beta: Double

    /// The largest `-ln(rand)` that a `Double` in (0, 1] drawn with 53 random
    /// bits can give: ln(2^53). An entry whose expiry is further away than
    /// this many computations (times beta) is never refreshed, so the hit
    /// path skips the random draw for it.
    static let largestDraw = 53 * log(2.0)

    /// Whether a hit at `nowMilliseconds` refreshes an entry that expires at
    /// `expiresAtMilliseconds` (both Unix milliseconds) and took
    /// `computeMicroseconds` to compute.
    func shouldRefresh<Random: RandomNumberGenerator>(
        nowMilliseconds: Int64,
        expiresAtMilliseconds: Int64,
        computeMicroseconds: UInt64,
        using random: inout Random
    ) -> Bool {
        guard self.beta > 0, computeMicroseconds > 0 else { return false }
        let delta = Double(computeMicroseconds) / 1000 * self.beta
        let remaining = Double(expiresAtMilliseconds) - Double(nowMilliseconds)
        if remaining <= 0 { return true }
        if remaining > delta * Self.largestDraw { return false }
        // Uniform in (0, 1]: 53 random bits, never 0.
        let draw = Double((random.next() >> 11) + 1) / Double(1 << 53)
        return -delta * log(draw) >= remaining
    }
}
