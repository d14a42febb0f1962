import ServiceLifecycle

/// Runs the gateway's store for as long as the gateway runs.
///
/// It starts the store (a Redis store's pool makes its first attempts to
/// connect), opens `started` so that the services that use the store begin
/// (the server then reports ready with Redis connected when Redis is up),
/// waits for graceful shutdown or cancellation, and shuts the store down.
/// Listed first in the
/// service group, it stops last: after the server has drained and the registry
/// has released its leases.
struct StoreService: Service {
    /// The store the other parts use (a wrapper such as `IntegrityStore` included).
    let store: any CacheStore
    /// Opened once the store has started.
    let started: StartGate
    /// Starts the store's background work and returns once the store is
    /// ready for use; nothing for a store that has none.
    let start: @Sendable () async -> Void

    func run() async throws {
        await self.start()
        self.started.open()
        // Returns on graceful shutdown and on cancellation alike.
        try? await gracefulShutdown()
        await self.store.shutdown()
    }
}
