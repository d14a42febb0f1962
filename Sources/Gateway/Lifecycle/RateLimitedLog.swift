import Logging
import NIOConcurrencyHelpers
import NIOCore

/// Logs repeated faults at most once per interval for each kind, saying how
/// many were suppressed since the last line, so that a Redis outage under
/// load gives a few lines, not thousands per second.
final class RateLimitedLog: Sendable {
    private struct Kind {
        var lastLogged: NIODeadline
        var suppressed: Int
    }

    private let logger: Logger
    private let interval: TimeAmount
    private let kinds = NIOLockedValueBox<[String: Kind]>([:])

    init(logger: Logger, interval: TimeAmount) {
        self.logger = logger
        self.interval = interval
    }

    /// Logs `message` (with `metadata`) at warning level unless a line of the
    /// same `kind` was logged within the interval.
    func log(_ kind: String, _ message: @autoclosure () -> String, metadata extra: @autoclosure () -> Logger.Metadata = [:]) {
        let now = NIODeadline.now()
        let suppressed: Int? = self.kinds.withLockedValue { kinds in
            if var entry = kinds[kind], now - entry.lastLogged < self.interval {
                entry.suppressed += 1
                kinds[kind] = entry
                return nil
            }
            let suppressed = kinds[kind]?.suppressed ?? 0
            kinds[kind] = Kind(lastLogged: now, suppressed: 0)
            return suppressed
        }
        guard let suppressed else { return }
        var metadata = extra()
        metadata["fault"] = "\(kind)"
        if suppressed > 0 { metadata["suppressed"] = "\(suppressed)" }
        self.logger.warning("\(message())", metadata: metadata)
    }
}
