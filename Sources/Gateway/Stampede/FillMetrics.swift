import Metrics

/// The single-flight counters, as metrics (docs/OPERATIONS.md names them).
struct FillMetrics: Sendable {
    /// Counter: fills started (a lookup told to compute while others of the key would wait).
    static let fills = "cache_gateway_fills_total"
    /// Counter: lookups answered status 3 (`wait`).
    static let waits = "cache_gateway_fill_waits_total"
    /// Counter: held lookups.
    static let held = "cache_gateway_lookups_held_total"
    /// Counter: held lookups told to compute because a wait bound passed.
    static let waitTimeouts = "cache_gateway_fill_wait_timeouts_total"
    /// Counter: held lookups told to compute because the computing worker's connection closed.
    static let takeovers = "cache_gateway_fill_takeovers_total"

    /// Counter: hits answered status 4 (the caller refreshes the entry early).
    static let refreshes = "cache_gateway_early_refreshes_total"
    /// Counter: hits due for an early refresh that were answered as plain
    /// hits because another gateway held the entry's fill lease (or the
    /// lease could not be read).
    static let refreshesDeclined = "cache_gateway_early_refreshes_declined_total"

    let fills: Counter
    let waits: Counter
    let held: Counter
    let waitTimeouts: Counter
    let takeovers: Counter
    let refreshes: Counter
    let refreshesDeclined: Counter

    init(factory: any MetricsFactory) {
        self.fills = Counter(label: Self.fills, factory: factory)
        self.waits = Counter(label: Self.waits, factory: factory)
        self.held = Counter(label: Self.held, factory: factory)
        self.waitTimeouts = Counter(label: Self.waitTimeouts, factory: factory)
        self.takeovers = Counter(label: Self.takeovers, factory: factory)
        self.refreshes = Counter(label: Self.refreshes, factory: factory)
        self.refreshesDeclined = Counter(label: Self.refreshesDeclined, factory: factory)
    }
}
