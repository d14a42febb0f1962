import Foundation
import GatewayProtocol

/// The early-refresh decision of XFetch (Vattani, Chierichetti and
/// Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015):
/// a hit refreshes its entry early when `now - delta * beta * ln(rand) >= expiry`,
/// where `delta` is the time the entry took to compute and `rand` is uniform
/// in (0, 1]. The closer the expiry, and the slower the computation, the
/// likelier a refresh; `beta` above 1 favours earlier ones, 0 turns them off.
///
/// **One draw per entry.** XFetch draws `rand` afresh on every hit. Then the
/// chance that an entry is still unrefreshed with `R` left is
/// `exp(-r * delta * beta * exp(-R / (delta * beta)))` at `r` hits per second,
/// so the refresh comes about `delta * beta * ln(r * delta * beta)` before the
/// expiry: the busier the key, the earlier (50 busy callers of a 200 ms
/// computation refresh some 1.5 s into a 2 s TTL's last stretch, several
/// computations per TTL). Here `rand` is drawn once per entry (and
/// gateway): a hash of the gateway's random `seed`, the entry's key and its
/// expiry, so no table of draws is kept. Every hit of the entry evaluates the
/// same condition with the same draw, and the refresh comes
/// `delta * beta * Exp(1)` before the expiry (mean `delta * beta`), whatever
/// the hit rate. A new entry (a new expiry) gets a new draw.
///
/// **The lead and the period.** With a lead of mean `delta`, a refresh often
/// ends after the old entry's expiry (63% of the time for `beta` = 1); the
/// gateway therefore keeps the old entry until the refresh can have stored
/// (`CacheStore.extendLife`), and callers go on hitting it until the new
/// value is stored. The period between two computations is then
/// `TTL + delta - lead`, whose mean is the TTL for `beta` = 1: about one
/// computation per TTL under steady load, none of them waited for.
///
/// **Extending ahead.** The draw is fixed, so the moment an entry becomes
/// due is known: a hit up to `aheadMilliseconds` before it (`soon`) extends
/// the entry's life already, once, so that the extension has reached the
/// backend (Redis) before the entry would expire, however short the lead
/// and however busy the gateway. Extending when the refresh is granted
/// instead raced with the expiry for leads of a few milliseconds.
/// `marginMilliseconds` would be added to every lead (0: XFetch's lead).
///
/// A value type without I/O.
struct EarlyRefresh: Sendable, Equatable {
    /// `--early-refresh-beta`; 0 never refreshes.
    var beta: Double
    /// Mixed into every draw: the gateway's own random number, so that two
    /// gateways sharing a backend draw differently for the same entry.
    var seed: UInt64
    /// Added to every lead, in milliseconds (see the type's documentation).
    var marginMilliseconds: Double = 0
    /// How long before an entry is due a hit finds it `soon`.
    var aheadMilliseconds: Double = 250

    /// What a hit finds about its entry.
    enum Decision: Equatable, Sendable {
        /// Not due, nor soon.
        case notYet
        /// Due within `aheadMilliseconds`: time to extend its life.
        case soon
        /// Due: refresh it.
        case due
    }

    /// The largest `-ln(rand)` that a draw can give: ln(2^53). An entry whose
    /// expiry is further away than this many computations (times beta, plus
    /// the margin and `aheadMilliseconds`) is neither due nor soon, so the
    /// hit path skips the draw for it.
    static let largestDraw = 53 * log(2.0)

    /// What a hit at `nowMilliseconds` finds about `key`'s entry, which
    /// expires at `expiresAtMilliseconds` (both Unix milliseconds) and took
    /// `computeMicroseconds` to compute.
    func decide(_ key: CacheKey, nowMilliseconds: Int64, expiresAtMilliseconds: Int64, computeMicroseconds: UInt64) -> Decision {
        guard self.beta > 0, computeMicroseconds > 0 else { return .notYet }
        let remaining = Double(expiresAtMilliseconds) - Double(nowMilliseconds)
        let delta = Double(computeMicroseconds) / 1000 * self.beta
        if remaining > delta * Self.largestDraw + self.marginMilliseconds + self.aheadMilliseconds { return .notYet }
        let draw = self.draw(for: key, expiresAtMilliseconds: expiresAtMilliseconds)
        if self.isDue(remainingMilliseconds: remaining, computeMicroseconds: computeMicroseconds, draw: draw) { return .due }
        return self.isDue(remainingMilliseconds: remaining - self.aheadMilliseconds, computeMicroseconds: computeMicroseconds, draw: draw) ? .soon : .notYet
    }

    /// Whether a hit at `nowMilliseconds` refreshes `key`'s entry (`decide` finds it due).
    func shouldRefresh(_ key: CacheKey, nowMilliseconds: Int64, expiresAtMilliseconds: Int64, computeMicroseconds: UInt64) -> Bool {
        self.decide(key, nowMilliseconds: nowMilliseconds, expiresAtMilliseconds: expiresAtMilliseconds, computeMicroseconds: computeMicroseconds) == .due
    }

    /// XFetch's condition with `draw` as `rand` (in (0, 1]), `remaining`
    /// milliseconds before the expiry: `-delta * beta * ln(draw) + margin >= remaining`.
    func isDue(remainingMilliseconds remaining: Double, computeMicroseconds: UInt64, draw: Double) -> Bool {
        guard self.beta > 0, computeMicroseconds > 0 else { return false }
        if remaining <= 0 { return true }
        let delta = Double(computeMicroseconds) / 1000 * self.beta
        return -delta * log(draw) + self.marginMilliseconds >= remaining
    }

    /// The entry's `rand`: uniform in (0, 1], fixed by the seed, the key and
    /// the expiry. The key is a SHA-256 digest, already uniform: two of its
    /// words, the seed and the expiry go through SplitMix64's finaliser.
    /// (Entries of two functions with the same argument key and expiry share
    /// a draw; each is still uniform.)
    func draw(for key: CacheKey, expiresAtMilliseconds: Int64) -> Double {
        let words = key.digest.withUnsafeBytes { ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 24, as: UInt64.self)) }
        var mixed = Self.mix(self.seed ^ words.0)
        mixed = Self.mix(mixed ^ words.1)
        mixed = Self.mix(mixed ^ UInt64(bitPattern: expiresAtMilliseconds))
        // 53 bits, never 0.
        return Double((mixed >> 11) + 1) / Double(1 << 53)
    }

    /// SplitMix64's step and finaliser.
    private static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
