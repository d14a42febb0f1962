import Logging
import Synchronization

/// Set once when the gateway starts draining; a connection accepted after that
/// moment reads it in `WorkerSession.activate`, so none escapes the drain.
final class DrainSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    var isDraining: Bool { self.flag.load(ordering: .acquiring) }
    func start() { self.flag.store(true, ordering: .releasing) }
}

/// What every connection of one server shares.
struct ServerContext: Sendable {
    let configuration: GatewayConfiguration
    let store: any CacheStore
    let statistics: GatewayStatistics
    let metrics: GatewayMetrics
    let logger: Logger
    let drain: DrainSignal
    /// Tracks the versions connections use; nil when the server runs without one.
    let registry: Registry?
    /// Where refused connections are logged, at most one line per interval.
    let deniedLog: RateLimitedLog
    /// Single-flight across this gateway's connections; nil when it is off.
    var fills: FillCoordinator? = nil
}
