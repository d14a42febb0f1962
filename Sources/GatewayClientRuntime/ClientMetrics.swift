import CoreMetrics

/// The client's counters, made once per `CacheClient` from the configured
/// metrics factory, so that counting a lookup costs one increment and no
/// lookup of a label.
///
/// Every lookup is counted once, as `cache_gateway_client_lookups_total` with
/// the dimension `result`:
/// - `hit`, `miss`: the gateway answered;
/// - `bypass_unreachable`: no connection (the gateway is absent and the
///   client is backing off, or another call is connecting);
/// - `bypass_circuit_open`: the circuit breaker stopped asking;
/// - `bypass_timeout`: no reply within the lookup timeout;
/// - `bypass_declined`: the gateway answered "compute, do not store", or an error.
///
/// A worker whose calls all run uncached shows it here: every bypass is a call
/// that computed instead of hitting. Also `cache_gateway_client_stores_total`
/// (stores sent), `cache_gateway_client_stores_skipped_total` (results above
/// the gateway's value limit), `cache_gateway_client_connects_total` with
/// `result` `ok` or `failed`, and `cache_gateway_client_held_lookups_total`
/// (lookups sent again to be held because another worker was computing the
/// entry; their outcome is counted in `lookups_total` as usual), and
/// `cache_gateway_client_refreshes_total` with `result` `started` (hits
/// the gateway asked this client to refresh early, each a background
/// computation) or `failed` (such a computation threw, or its result could not
/// be encoded: nothing is stored, and the entry expires or another caller
/// refreshes it).
final class ClientMetrics: Sendable {
    /// Why a lookup ran its function uncached.
    enum Bypass: Sendable {
        case unreachable
        case circuitOpen
        case timeout
        case declined
    }

    let hits: Counter
    let misses: Counter
    let bypassUnreachable: Counter
    let bypassCircuitOpen: Counter
    let bypassTimeout: Counter
    let bypassDeclined: Counter
    let stores: Counter
    let storesSkipped: Counter
    let connects: Counter
    let connectFailures: Counter
    let held: Counter
    let refreshesStarted: Counter
    let refreshesFailed: Counter

    init(factory: any MetricsFactory) {
        func lookups(_ result: String) -> Counter {
            Counter(label: "cache_gateway_client_lookups_total", dimensions: [("result", result)], factory: factory)
        }
        self.hits = lookups("hit")
        self.misses = lookups("miss")
        self.bypassUnreachable = lookups("bypass_unreachable")
        self.bypassCircuitOpen = lookups("bypass_circuit_open")
        self.bypassTimeout = lookups("bypass_timeout")
        self.bypassDeclined = lookups("bypass_declined")
        self.stores = Counter(label: "cache_gateway_client_stores_total", factory: factory)
        self.storesSkipped = Counter(label: "cache_gateway_client_stores_skipped_total", factory: factory)
        self.connects = Counter(label: "cache_gateway_client_connects_total", dimensions: [("result", "ok")], factory: factory)
        self.connectFailures = Counter(label: "cache_gateway_client_connects_total", dimensions: [("result", "failed")], factory: factory)
        self.held = Counter(label: "cache_gateway_client_held_lookups_total", factory: factory)
        self.refreshesStarted = Counter(label: "cache_gateway_client_refreshes_total", dimensions: [("result", "started")], factory: factory)
        self.refreshesFailed = Counter(label: "cache_gateway_client_refreshes_total", dimensions: [("result", "failed")], factory: factory)
    }

    /// Counts one lookup that ran its function uncached.
    func bypassed(_ reason: Bypass) {
        switch reason {
        case .unreachable: self.bypassUnreachable.increment()
        case .circuitOpen: self.bypassCircuitOpen.increment()
        case .timeout: self.bypassTimeout.increment()
        case .declined: self.bypassDeclined.increment()
        }
    }
}
