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

    /// Counter: fill leases this gateway took (`RedisFillLeases`).
    static let leasesTaken = "cache_gateway_fill_leases_taken_total"
    /// Counter: fill leases found held by another gateway.
    static let leasesHeldElsewhere = "cache_gateway_fill_leases_held_elsewhere_total"
    /// Counter: fill leases of this gateway that lapsed before its fill stored.
    static let leasesLost = "cache_gateway_fill_leases_lost_total"
    /// Counter: lease claims the backend did not answer in time (the gateway failed open).
    static let leaseFaults = "cache_gateway_fill_lease_faults_total"
    /// Counter: waiters told to compute because another gateway's lease lapsed without a value.
    static let leaseTakeovers = "cache_gateway_fill_lease_takeovers_total"
    /// Counter: fills that waited for another gateway's value.
    static let remoteWaits = "cache_gateway_fill_remote_waits_total"
    /// Counter: fills whose held lookups another gateway's value answered.
    static let remoteValues = "cache_gateway_fill_remote_values_total"
    /// Counter: reads of an entry for a fill waiting for another gateway (notified or polled).
    static let rereads = "cache_gateway_fill_rereads_total"
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
    let leasesTaken: Counter
    let leasesHeldElsewhere: Counter
    let leasesLost: Counter
    let leaseFaults: Counter
    let leaseTakeovers: Counter
    let remoteWaits: Counter
    let remoteValues: Counter
    let rereads: Counter
    let refreshes: Counter
    let refreshesDeclined: Counter

    init(factory: any MetricsFactory) {
        self.fills = Counter(label: Self.fills, factory: factory)
        self.waits = Counter(label: Self.waits, factory: factory)
        self.held = Counter(label: Self.held, factory: factory)
        self.waitTimeouts = Counter(label: Self.waitTimeouts, factory: factory)
        self.takeovers = Counter(label: Self.takeovers, factory: factory)
        self.leasesTaken = Counter(label: Self.leasesTaken, factory: factory)
        self.leasesHeldElsewhere = Counter(label: Self.leasesHeldElsewhere, factory: factory)
        self.leasesLost = Counter(label: Self.leasesLost, factory: factory)
        self.leaseFaults = Counter(label: Self.leaseFaults, factory: factory)
        self.leaseTakeovers = Counter(label: Self.leaseTakeovers, factory: factory)
        self.remoteWaits = Counter(label: Self.remoteWaits, factory: factory)
        self.remoteValues = Counter(label: Self.remoteValues, factory: factory)
        self.rereads = Counter(label: Self.rereads, factory: factory)
        self.refreshes = Counter(label: Self.refreshes, factory: factory)
        self.refreshesDeclined = Counter(label: Self.refreshesDeclined, factory: factory)
    }
}
