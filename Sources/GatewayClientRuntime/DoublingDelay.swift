import NIOCore

/// A wait that doubles with each consecutive failure, from `initial` up to
/// `maximum`, without overflow; negative durations count as zero. The
/// client's reconnect backoff and its circuit breaker's open time both use it.
struct DoublingDelay: Sendable, Equatable {
    /// The wait after the first failure.
    let initial: TimeAmount
    /// The longest wait.
    let maximum: TimeAmount

    init(initial: TimeAmount, maximum: TimeAmount) {
        self.initial = max(.zero, initial)
        self.maximum = max(.zero, maximum)
    }

    /// The wait after `failures` consecutive failures (at least one counts as one).
    func after(_ failures: Int) -> TimeAmount {
        let exponent = min(max(failures - 1, 0), 62)
        let delay = self.initial.nanoseconds.multipliedReportingOverflow(by: 1 << exponent)
        return delay.overflow ? self.maximum : min(.nanoseconds(delay.partialValue), self.maximum)
    }
}
