import ServiceLifecycle

/// Runs the gateway's store for as long as the gateway runs.
///
/// It starts the store (a Redis store's pool begins connecting), opens
/// `started` so that the services that use the store begin, waits for graceful
/// shutdown or cancellation, and shuts the store down. Listed first in the
/// service group, it stops last: after the server has drained and the registry
/// has released its leases.
struct StoreService: Service {
    /// The store the other parts use (a wrapper such as `IntegrityStore` included).
    let store: any CacheStore
    /// Starts the store's background work; nothing for a store that has none.
    let start: @Sendable () -> Void
    /// Opened once the store has started.
    let started: StartGate

    func run() async throws {
        self.start()
        self.started.open()
        // Returns on graceful shutdown and on cancellation alike.
        try? await gracefulShutdown()
        await self.store.shutdown()
    }
}
