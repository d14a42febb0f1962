import GatewayProtocol
import Synchronization

/// The gateway's counters, shared by every connection without locks.
public final class GatewayStatistics: Sendable {
    let hits = Atomic<UInt64>(0)
    let misses = Atomic<UInt64>(0)
    let stores = Atomic<UInt64>(0)
    let droppedStores = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let connections = Atomic<UInt64>(0)
    let connectionsAccepted = Atomic<UInt64>(0)
    let requests = Atomic<UInt64>(0)
    let connectionsDenied = Atomic<UInt64>(0)

    /// Creates zeroed counters.
    public init() {}

    /// The counters, by name (atomics cannot be reached through key paths).
    enum Counter {
        case hits, misses, stores, droppedStores, errors, connections, connectionsAccepted, requests
        case connectionsDenied
    }

    func add(_ counter: Counter, _ amount: UInt64 = 1) {
        switch counter {
        case .hits: self.hits.wrappingAdd(amount, ordering: .relaxed)
        case .misses: self.misses.wrappingAdd(amount, ordering: .relaxed)
        case .stores: self.stores.wrappingAdd(amount, ordering: .relaxed)
        case .droppedStores: self.droppedStores.wrappingAdd(amount, ordering: .relaxed)
        case .errors: self.errors.wrappingAdd(amount, ordering: .relaxed)
        case .connections: self.connections.wrappingAdd(amount, ordering: .relaxed)
        case .connectionsAccepted: self.connectionsAccepted.wrappingAdd(amount, ordering: .relaxed)
        case .requests: self.requests.wrappingAdd(amount, ordering: .relaxed)
        case .connectionsDenied: self.connectionsDenied.wrappingAdd(amount, ordering: .relaxed)
        }
    }

    func increment(_ counter: Counter) { self.add(counter) }

    func decrement(_ counter: Counter) { self.add(counter, UInt64.max) }

    /// The counters as a stats reply, with the store's kind and health.
    func snapshot(store: any CacheStore) -> Stats {
        var stats = Stats(values: [
            "hits": .count(self.hits.load(ordering: .relaxed)),
            "misses": .count(self.misses.load(ordering: .relaxed)),
            "stores": .count(self.stores.load(ordering: .relaxed)),
            "droppedStores": .count(self.droppedStores.load(ordering: .relaxed)),
            "errors": .count(self.errors.load(ordering: .relaxed)),
            "connections": .count(self.connections.load(ordering: .relaxed)),
            "connectionsAccepted": .count(self.connectionsAccepted.load(ordering: .relaxed)),
            "requests": .count(self.requests.load(ordering: .relaxed)),
            "connectionsDenied": .count(self.connectionsDenied.load(ordering: .relaxed)),
            "backend": .text(store.kind),
            "backendHealth": .text(store.isHealthy ? "up" : "down"),
        ])
        stats.values.merge(store.statistics) { ours, _ in ours }
        return stats
    }
}
