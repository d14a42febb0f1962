import GatewayProtocol
import Metrics
import NIOCore
import Synchronization

/// The gateway's metrics, made once from a swift-metrics factory and shared by
/// the server, its connections and the Redis store.
///
/// The gateway never bootstraps `MetricsSystem` and never makes a registry: the
/// executable (or a test) hands in the factory. With the default,
/// `MetricsSystem.factory`, metrics go wherever the process bootstrapped
/// them, and nowhere when it did not; with a no-op factory every recording
/// method returns at once, so that metrics that are off cost nothing
/// measurable on the request path.
///
/// **Cost on the request path.** Every metric object is made once: the
/// per-type and per-error-code counters at initialisation, the per-function
/// counters the first time a function is seen (then found again in a
/// dictionary under a lock held for one hash lookup). Recording is an atomic
/// add, or a short locked update for a histogram; no labels are built per request.
///
/// **Cardinality.** The `function` label takes the function names that workers
/// send (without their versions, which change with every deployment). Those
/// are bounded by the code that workers run, but a worker can send any name,
/// so at most `maximumFunctions` names get series of their own; the names seen
/// after that are counted together under `function="_other"`. The names and
/// labels are listed in docs/OPERATIONS.md.
public final class GatewayMetrics: Sendable {
    /// The metric names (Prometheus conventions: `_total` for counters, base units).
    public enum Names {
        /// Counter, label `type`: requests by message type (`invalid` for undecodable ones).
        public static let requests = "cache_gateway_requests_total"
        /// Counter, label `code`: error replies by wire code name.
        public static let errors = "cache_gateway_errors_total"
        /// Counter, label `function`: lookups answered with a hit.
        public static let hits = "cache_gateway_hits_total"
        /// Counter, label `function`: lookups answered with a miss (with or without "do not store").
        public static let misses = "cache_gateway_misses_total"
        /// Counter, label `function`: entries stored.
        public static let stores = "cache_gateway_stores_total"
        /// Counter: stores dropped because the backend could not take them.
        public static let droppedStores = "cache_gateway_stores_dropped_total"
        /// Counter, label `function`: the compute time of the entries served as hits, in microseconds.
        public static let computeSaved = "cache_gateway_compute_saved_microseconds_total"
        /// Counter, label `function`: purges (invalidations) performed.
        public static let purges = "cache_gateway_purges_total"
        /// Counter, label `function`: entries deleted by purges.
        public static let purgedEntries = "cache_gateway_purged_entries_total"
        /// Gauge: worker connections open now.
        public static let connections = "cache_gateway_connections"
        /// Counter: worker connections accepted.
        public static let connectionsAccepted = "cache_gateway_connections_accepted_total"
        /// Histogram (seconds): a lookup's time in the gateway, from its request to its reply.
        public static let lookupDuration = "cache_gateway_lookup_duration_seconds"
        /// Histogram (seconds): a Redis command's round trip, from being queued on a connection to its reply.
        public static let redisCommandDuration = "cache_gateway_redis_command_duration_seconds"
        /// Counter, label `operation`: backend faults (`lookup`, `store`, `index`).
        public static let backendErrors = "cache_gateway_backend_errors_total"
        /// Counter: backend entries that were not in the gateway's format (or did not verify).
        public static let corruptEntries = "cache_gateway_corrupt_entries_total"
        /// Counter, label `result` (`success`, `failure`): backend connection attempts.
        public static let backendConnects = "cache_gateway_backend_connects_total"
        /// Counter: backend connections re-established after one was lost.
        public static let backendReconnects = "cache_gateway_backend_reconnects_total"
        /// Counter: backend connections lost while the gateway ran.
        public static let backendDisconnects = "cache_gateway_backend_disconnects_total"
        /// Gauge: backend connections up now.
        public static let backendConnections = "cache_gateway_backend_connections"
        /// Counter: lookups answered from the near-cache (also in `hits`).
        public static let nearCacheHits = "cache_gateway_near_cache_hits_total"
        /// Counter: invalidation messages received from Redis.
        public static let nearCacheInvalidationMessages = "cache_gateway_near_cache_invalidation_messages_total"
        /// Counter: near-cache entries removed because their key changed.
        public static let nearCacheInvalidatedEntries = "cache_gateway_near_cache_invalidated_entries_total"
        /// Counter: times the near-cache dropped every entry.
        public static let nearCacheFlushes = "cache_gateway_near_cache_flushes_total"
        /// Gauge: near-cache entries held.
        public static let nearCacheEntries = "cache_gateway_near_cache_entries"
        /// Gauge: bytes the near-cache's entries take.
        public static let nearCacheBytes = "cache_gateway_near_cache_bytes"
    }

    /// The label value that gathers the functions seen after `maximumFunctions`.
    public static let otherFunction = "_other"

    /// The default bound on functions with series of their own.
    public static let defaultMaximumFunctions = 1000

    /// Histogram buckets suited to the two latency histograms: a hit served
    /// from memory takes tens of microseconds, one from Redis a few hundred,
    /// and a lookup never waits longer than the lookup timeout (5 ms by
    /// default). Factories that let buckets be set per metric (such as
    /// swift-prometheus's, whose default starts at 5 ms) should be given these.
    public static let latencyBuckets: [Duration] = [
        .microseconds(25), .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .seconds(1),
    ]

    /// What a backend fault was doing.
    enum BackendOperation: Int, CaseIterable {
        case lookup, store, index

        var label: String {
            switch self {
            case .lookup: "lookup"
            case .store: "store"
            case .index: "index"
            }
        }
    }

    /// The counters of one function.
    final class FunctionMetrics: Sendable {
        let hits: Counter
        let misses: Counter
        let stores: Counter
        let computeSaved: Counter
        let purges: Counter
        let purgedEntries: Counter

        init(function: String, factory: any MetricsFactory) {
            let dimensions = [("function", function)]
            self.hits = Counter(label: Names.hits, dimensions: dimensions, factory: factory)
            self.misses = Counter(label: Names.misses, dimensions: dimensions, factory: factory)
            self.stores = Counter(label: Names.stores, dimensions: dimensions, factory: factory)
            self.computeSaved = Counter(label: Names.computeSaved, dimensions: dimensions, factory: factory)
            self.purges = Counter(label: Names.purges, dimensions: dimensions, factory: factory)
            self.purgedEntries = Counter(label: Names.purgedEntries, dimensions: dimensions, factory: factory)
        }

        /// A hit of an entry that took `computeMicroseconds` to compute.
        func recordHit(computeMicroseconds: UInt64) {
            self.hits.increment()
            if computeMicroseconds > 0 { self.computeSaved.increment(by: Int64(clamping: computeMicroseconds)) }
        }

        func recordMiss() { self.misses.increment() }

        /// Removes the series from the factory (for counters that were made but not kept).
        func destroy() {
            for counter in [self.hits, self.misses, self.stores, self.computeSaved, self.purges, self.purgedEntries] {
                counter.destroy()
            }
        }
    }

    private struct FunctionTable {
        var byName: [String: FunctionMetrics] = [:]
        var other: FunctionMetrics?
    }

    /// Whether recording does anything (false with a no-op factory).
    let isEnabled: Bool
    /// At most this many function names get series of their own.
    public let maximumFunctions: Int

    let factory: any MetricsFactory
    /// Indexed by the request type's wire number (1 to 7); index 0 counts undecodable requests.
    private let requestsByType: [Counter]
    /// Indexed by the error code's wire number (1 to 13); index 0 counts codes this build does not know.
    private let errorsByCode: [Counter]
    private let connections: Meter
    private let connectionsAccepted: Counter
    private let droppedStores: Counter
    private let lookupDuration: Metrics.Timer
    private let redisCommandDuration: Metrics.Timer
    private let backendErrors: [Counter]
    private let corruptEntries: Counter
    private let backendConnectSuccesses: Counter
    private let backendConnectFailures: Counter
    private let backendReconnects: Counter
    private let backendDisconnects: Counter
    private let backendConnections: Gauge
    private let nearCacheHits: Counter
    private let nearCacheInvalidationMessages: Counter
    private let nearCacheInvalidatedEntries: Counter
    private let nearCacheFlushes: Counter
    private let nearCacheEntries: Gauge
    private let nearCacheBytes: Gauge
    private let functions = Mutex(FunctionTable())
    /// Handed out for every function when metrics are off, so that nothing is looked up.
    private let disabledFunction: FunctionMetrics

    /// Makes every metric that does not depend on a function name through `factory`.
    ///
    /// - Parameters:
    ///   - factory: where the metrics go; `MetricsSystem.factory` by default.
    ///   - maximumFunctions: how many function names get series of their own
    ///     (6 counters each); the rest are counted under `_other`.
    public init(factory: any MetricsFactory = MetricsSystem.factory, maximumFunctions: Int = GatewayMetrics.defaultMaximumFunctions) {
        self.factory = factory
        self.isEnabled = !(factory is NOOPMetricsHandler)
        self.maximumFunctions = max(0, maximumFunctions)
        // Indexed by the request's type number (0 counts invalid requests).
        let requestTypes = ["invalid", "hello", "ping", "lookup", "store", "register", "invalidate", "stats", "functions"]
        self.requestsByType = requestTypes.map { Counter(label: Names.requests, dimensions: [("type", $0)], factory: factory) }
        self.errorsByCode = (0...13).map { code in
            let name = code == 0 ? "other" : "\(ErrorCode(rawValue: UInt64(code)))"
            return Counter(label: Names.errors, dimensions: [("code", name)], factory: factory)
        }
        self.connections = Meter(label: Names.connections, factory: factory)
        self.connectionsAccepted = Counter(label: Names.connectionsAccepted, factory: factory)
        self.droppedStores = Counter(label: Names.droppedStores, factory: factory)
        self.lookupDuration = Metrics.Timer(label: Names.lookupDuration, factory: factory)
        self.redisCommandDuration = Metrics.Timer(label: Names.redisCommandDuration, factory: factory)
        self.backendErrors = BackendOperation.allCases.map {
            Counter(label: Names.backendErrors, dimensions: [("operation", $0.label)], factory: factory)
        }
        self.corruptEntries = Counter(label: Names.corruptEntries, factory: factory)
        self.backendConnectSuccesses = Counter(label: Names.backendConnects, dimensions: [("result", "success")], factory: factory)
        self.backendConnectFailures = Counter(label: Names.backendConnects, dimensions: [("result", "failure")], factory: factory)
        self.backendReconnects = Counter(label: Names.backendReconnects, factory: factory)
        self.backendDisconnects = Counter(label: Names.backendDisconnects, factory: factory)
        self.backendConnections = Gauge(label: Names.backendConnections, factory: factory)
        self.nearCacheHits = Counter(label: Names.nearCacheHits, factory: factory)
        self.nearCacheInvalidationMessages = Counter(label: Names.nearCacheInvalidationMessages, factory: factory)
        self.nearCacheInvalidatedEntries = Counter(label: Names.nearCacheInvalidatedEntries, factory: factory)
        self.nearCacheFlushes = Counter(label: Names.nearCacheFlushes, factory: factory)
        self.nearCacheEntries = Gauge(label: Names.nearCacheEntries, factory: factory)
        self.nearCacheBytes = Gauge(label: Names.nearCacheBytes, factory: factory)
        self.disabledFunction = FunctionMetrics(function: Self.otherFunction, factory: NOOPMetricsHandler.instance)
    }

    // MARK: Requests

    /// Counts a request by type; nil for a request that could not be decoded.
    func recordRequest(_ type: MessageType?) {
        guard self.isEnabled else { return }
        var index = type.map { $0.isRequest ? Int($0.rawValue) : 0 } ?? 0
        // A request type without a series of its own counts as invalid.
        if index >= self.requestsByType.count { index = 0 }
        self.requestsByType[index].increment()
    }

    /// Counts an error reply (or a connection closed for an error) by its wire code.
    func recordError(_ code: ErrorCode) {
        guard self.isEnabled else { return }
        let index = code.rawValue < UInt64(self.errorsByCode.count) ? Int(code.rawValue) : 0
        self.errorsByCode[index].increment()
    }

    /// The counters of `function`, made the first time it is seen (or `_other`
    /// once `maximumFunctions` names have their own).
    func function(_ function: String) -> FunctionMetrics {
        guard self.isEnabled else { return self.disabledFunction }
        enum Found {
            case known(FunctionMetrics)
            case new(label: String)
        }
        let found = self.functions.withLock { table -> Found in
            // A function that is itself called `_other` shares the overflow's series.
            if function != Self.otherFunction {
                if let known = table.byName[function] { return .known(known) }
                if table.byName.count < self.maximumFunctions { return .new(label: function) }
            }
            if let other = table.other { return .known(other) }
            return .new(label: Self.otherFunction)
        }
        guard case .new(let label) = found else {
            guard case .known(let metrics) = found else { preconditionFailure("unreachable") }
            return metrics
        }
        // Made outside the lock: a factory may take locks of its own. Two
        // connections racing for a new name both make counters (the factory
        // hands both the same series), and the first one in is kept.
        let made = FunctionMetrics(function: label, factory: self.factory)
        let kept = self.functions.withLock { table -> FunctionMetrics? in
            if label == Self.otherFunction {
                if table.other == nil { table.other = made }
                return table.other
            }
            if let known = table.byName[label] { return known }
            guard table.byName.count < self.maximumFunctions else { return nil }
            table.byName[label] = made
            return made
        }
        guard let kept else {
            // The bound was reached meanwhile: the name goes under `_other`.
            made.destroy()
            return self.function(function)
        }
        return kept
    }

    /// Counts a store: `stored` under its function, a dropped one globally.
    func recordStore(_ function: FunctionMetrics, stored: Bool) {
        guard self.isEnabled else { return }
        if stored {
            function.stores.increment()
        } else {
            self.droppedStores.increment()
        }
    }

    /// Records a purge of `function`'s entries that deleted `deleted` of them.
    ///
    /// The hook for every path that deletes entries on request: today the
    /// `invalidate` message; the registry's purging of versions nobody runs
    /// any more calls it too.
    public func recordPurge(function: String, deleted: UInt64) {
        guard self.isEnabled else { return }
        let metrics = self.function(function)
        metrics.purges.increment()
        if deleted > 0 { metrics.purgedEntries.increment(by: Int64(clamping: deleted)) }
    }

    // MARK: Latency

    /// A start time for `recordLookup(since:)`: the monotonic clock in
    /// nanoseconds, or 0 when metrics are off (so that the clock is not read).
    func startTime() -> UInt64 {
        self.isEnabled ? NIODeadline.now().uptimeNanoseconds : 0
    }

    /// `startTime()` at the caller's time (its event loop's `now`), without reading the clock.
    func startTime(at now: NIODeadline) -> UInt64 {
        self.isEnabled ? now.uptimeNanoseconds : 0
    }

    /// Records a lookup's time in the gateway, from `start` (from `startTime()`) until now.
    func recordLookup(since start: UInt64) {
        guard start != 0 else { return }
        self.lookupDuration.recordNanoseconds(Int64(clamping: NIODeadline.now().uptimeNanoseconds &- start))
    }

    /// Records a Redis command's round trip, from being queued to its reply.
    func recordRedisCommand(nanoseconds: Int64) {
        guard self.isEnabled else { return }
        self.redisCommandDuration.recordNanoseconds(nanoseconds)
    }

    // MARK: Connections

    /// A worker connection opened.
    func connectionOpened() {
        guard self.isEnabled else { return }
        self.connectionsAccepted.increment()
        self.connections.increment()
    }

    /// A worker connection closed.
    func connectionClosed() {
        guard self.isEnabled else { return }
        self.connections.decrement()
    }

    // MARK: Backend

    /// Counts a backend fault (a lookup or store that Redis did not serve, an index update it refused).
    func recordBackendError(_ operation: BackendOperation) {
        guard self.isEnabled else { return }
        self.backendErrors[operation.rawValue].increment()
    }

    /// Counts an entry that was not in the gateway's format, or did not verify.
    public func recordCorruptEntry() {
        guard self.isEnabled else { return }
        self.corruptEntries.increment()
    }

    /// A backend connection attempt ended; `reconnect` when it replaces a connection that was lost.
    func recordBackendConnect(succeeded: Bool, reconnect: Bool) {
        guard self.isEnabled else { return }
        if succeeded {
            self.backendConnectSuccesses.increment()
            if reconnect { self.backendReconnects.increment() }
        } else {
            self.backendConnectFailures.increment()
        }
    }

    /// A backend connection was lost while the pool ran.
    func recordBackendDisconnect() {
        guard self.isEnabled else { return }
        self.backendDisconnects.increment()
    }

    /// The number of backend connections up now.
    func recordBackendConnections(_ count: Int) {
        guard self.isEnabled else { return }
        self.backendConnections.record(count)
    }

    // MARK: Near-cache

    /// A lookup answered from the near-cache.
    func recordNearCacheHit() {
        guard self.isEnabled else { return }
        self.nearCacheHits.increment()
    }

    /// An invalidation message arrived; `removed` entries went.
    func recordNearCacheInvalidation(messages: Int, removed: Int) {
        guard self.isEnabled else { return }
        self.nearCacheInvalidationMessages.increment(by: messages)
        self.nearCacheInvalidatedEntries.increment(by: removed)
    }

    /// The near-cache dropped every entry.
    func recordNearCacheFlush() {
        guard self.isEnabled else { return }
        self.nearCacheFlushes.increment()
    }

    /// What the near-cache holds now.
    func recordNearCacheSize(entries: Int, bytes: Int) {
        guard self.isEnabled else { return }
        self.nearCacheEntries.record(entries)
        self.nearCacheBytes.record(bytes)
    }
}
