import GatewayProtocol
import NIOConcurrencyHelpers
import Synchronization

/// One function's counters on this gateway.
struct FunctionCounters: Sendable, Equatable {
    var hits: UInt64 = 0
    var misses: UInt64 = 0
    /// The recorded compute times of the entries served as hits, in microseconds.
    var computeSavedMicroseconds: UInt64 = 0
}

/// The gateway's counters, shared by every connection without locks.
public final class GatewayStatistics: Sendable {
    let hits = Atomic<UInt64>(0)
    let misses = Atomic<UInt64>(0)
    let stores = Atomic<UInt64>(0)
    let droppedStores = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    /// Connections that the peer reset or broke off (not counted as errors).
    let disconnects = Atomic<UInt64>(0)
    /// Times accepting paused because the process had no file descriptor
    /// left (EMFILE, ENFILE); see `AcceptGate`.
    let acceptBackoffs = Atomic<UInt64>(0)
    let connections = Atomic<UInt64>(0)
    let connectionsAccepted = Atomic<UInt64>(0)
    let requests = Atomic<UInt64>(0)
    let purges = Atomic<UInt64>(0)
    let purgedEntries = Atomic<UInt64>(0)
    let registryFaults = Atomic<UInt64>(0)
    let registrySweeps = Atomic<UInt64>(0)
    let computeSavedMicroseconds = Atomic<UInt64>(0)

    private struct FunctionID: Hashable, Sendable {
        var namespace: String
        var function: String
    }

    /// One function's counters, shared by every connection that looks it up.
    ///
    /// A connection resolves a function's cell once (`cell(namespace:function:)`)
    /// and keeps it, so that counting a lookup is three relaxed atomic adds,
    /// with no lock and no hashing of names on the hit path.
    final class FunctionCell: Sendable {
        let hits = Atomic<UInt64>(0)
        let misses = Atomic<UInt64>(0)
        let computeSavedMicroseconds = Atomic<UInt64>(0)

        var counters: FunctionCounters {
            FunctionCounters(
                hits: self.hits.load(ordering: .relaxed),
                misses: self.misses.load(ordering: .relaxed),
                computeSavedMicroseconds: self.computeSavedMicroseconds.load(ordering: .relaxed)
            )
        }
    }

    /// Per-function counters. Bounded: past `maximumFunctions` functions, new
    /// ones are counted only in the totals (a worker cannot grow this without end).
    private let functions = NIOLockedValueBox<[FunctionID: FunctionCell]>([:])
    static let maximumFunctions = 10_000
    let connectionsDenied = Atomic<UInt64>(0)

    /// Creates zeroed counters.
    public init() {}

    /// The counters, by name (atomics cannot be reached through key paths).
    enum Counter {
        case hits, misses, stores, droppedStores, errors, connections, connectionsAccepted, requests
        case purges, purgedEntries, registryFaults, registrySweeps
        case connectionsDenied, disconnects, acceptBackoffs
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
        case .disconnects: self.disconnects.wrappingAdd(amount, ordering: .relaxed)
        case .acceptBackoffs: self.acceptBackoffs.wrappingAdd(amount, ordering: .relaxed)
        case .purges: self.purges.wrappingAdd(amount, ordering: .relaxed)
        case .purgedEntries: self.purgedEntries.wrappingAdd(amount, ordering: .relaxed)
        case .registryFaults: self.registryFaults.wrappingAdd(amount, ordering: .relaxed)
        case .registrySweeps: self.registrySweeps.wrappingAdd(amount, ordering: .relaxed)
        }
    }

    /// The cell that counts `function`'s lookups in `namespace`; nil once
    /// `maximumFunctions` functions have cells (then only the totals count it).
    func cell(namespace: String, function: String) -> FunctionCell? {
        let id = FunctionID(namespace: namespace, function: function)
        return self.functions.withLockedValue { functions in
            if let cell = functions[id] { return cell }
            guard functions.count < Self.maximumFunctions else { return nil }
            let cell = FunctionCell()
            functions[id] = cell
            return cell
        }
    }

    /// Counts a lookup: a hit (saving `computeMicroseconds`) or a miss, in the
    /// totals and in the function's `cell`.
    func recordLookup(_ cell: FunctionCell?, hit: Bool, computeMicroseconds: UInt64) {
        if hit {
            self.hits.wrappingAdd(1, ordering: .relaxed)
            self.computeSavedMicroseconds.wrappingAdd(computeMicroseconds, ordering: .relaxed)
            cell?.hits.wrappingAdd(1, ordering: .relaxed)
            cell?.computeSavedMicroseconds.wrappingAdd(computeMicroseconds, ordering: .relaxed)
        } else {
            self.misses.wrappingAdd(1, ordering: .relaxed)
            cell?.misses.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// The counters of the functions looked up in `namespace`, by name.
    func functionCounters(namespace: String) -> [String: FunctionCounters] {
        self.functions.withLockedValue { functions in
            var result: [String: FunctionCounters] = [:]
            for (id, cell) in functions where id.namespace == namespace { result[id.function] = cell.counters }
            return result
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
            "disconnects": .count(self.disconnects.load(ordering: .relaxed)),
            "acceptBackoffs": .count(self.acceptBackoffs.load(ordering: .relaxed)),
            "connections": .count(self.connections.load(ordering: .relaxed)),
            "connectionsAccepted": .count(self.connectionsAccepted.load(ordering: .relaxed)),
            "requests": .count(self.requests.load(ordering: .relaxed)),
            "computeSavedMicroseconds": .count(self.computeSavedMicroseconds.load(ordering: .relaxed)),
            "purges": .count(self.purges.load(ordering: .relaxed)),
            "purgedEntries": .count(self.purgedEntries.load(ordering: .relaxed)),
            "registryFaults": .count(self.registryFaults.load(ordering: .relaxed)),
            "registrySweeps": .count(self.registrySweeps.load(ordering: .relaxed)),
            "connectionsDenied": .count(self.connectionsDenied.load(ordering: .relaxed)),
            "backend": .text(store.kind),
            "backendHealth": .text(store.isHealthy ? "up" : "down"),
        ])
        stats.values.merge(store.statistics) { ours, _ in ours }
        return stats
    }
}
