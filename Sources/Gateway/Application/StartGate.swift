import ServiceLifecycle
import Synchronization

/// A one-way gate: tasks wait until it is opened, and once open it stays open.
///
/// The application's services start together; the ones that use the store
/// wait here until `StoreService` has started it.
final class StartGate: Sendable {
    private struct State {
        var isOpen = false
        var nextID = 0
        var waiters: [Int: CheckedContinuation<Void, Never>] = [:]
    }

    private let state = Mutex(State())

    /// Opens the gate and lets every waiting task go on.
    func open() {
        let waiters = self.state.withLock { state in
            state.isOpen = true
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once the gate is open, or at once when the task is cancelled
    /// (the caller checks `Task.isCancelled`).
    func wait() async {
        let id = self.state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = self.state.withLock { state -> Bool in
                    if state.isOpen || Task.isCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = self.state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume()
        }
    }
}

/// A service that begins once `gate` is open; when its task is cancelled
/// first, it returns without running the service.
struct GatedService: Service, CustomStringConvertible {
    /// The service run once the gate opens.
    let service: any Service
    /// What it waits for.
    let gate: StartGate

    /// The wrapped service's description, for the service group's logs.
    var description: String { "\(self.service)" }

    func run() async throws {
        await self.gate.wait()
        guard !Task.isCancelled else { return }
        try await self.service.run()
    }
}
