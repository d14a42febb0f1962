import NIOCore

extension TimeAmount {
    /// `duration` in nanoseconds, clamped to what a `TimeAmount` holds (about
    /// 292 years either way), so that no configured `Duration` overflows. The
    /// public API takes `Duration`; the connection's deadlines are SwiftNIO's.
    init(clamping duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let limit = Int64.max / 1_000_000_000
        if seconds >= limit {
            self = .nanoseconds(.max)
        } else if seconds <= -limit {
            self = .nanoseconds(.min)
        } else {
            self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        }
    }
}
