import NIOCore

/// How long a fill may run before a waiting lookup takes over, from the
/// compute time the function's stores recorded.
///
/// Twice the last recorded compute time plus `slack` (a computation is
/// rarely exactly as fast as the last one, and the worker's store takes a
/// while to arrive on a busy host), at least `minimum` and at most
/// `cap`; `cap` when the function has no store yet (the stampede after a
/// deploy, before anyone knows how long it takes).
struct FillWaitBound: Sendable, Equatable {
    /// The longest bound (`--fill-wait-max-ms`).
    var cap: TimeAmount
    /// The shortest bound.
    var minimum: TimeAmount = .milliseconds(100)
    /// Added to twice the compute time.
    var slack: TimeAmount = .milliseconds(500)

    /// The bound for a function whose last store took `computeMicroseconds` (nil: none seen).
    func bound(computeMicroseconds: UInt64?) -> TimeAmount {
        guard let computeMicroseconds else { return self.cap }
        // Clamped before multiplying: a worker may report any compute time.
        let compute = TimeAmount.microseconds(Int64(min(computeMicroseconds, UInt64(self.cap.nanoseconds / 1000))))
        return min(self.cap, max(self.minimum, compute + compute + self.slack))
    }
}
