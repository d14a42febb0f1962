import Dispatch
import GatewayProtocol
import NIOConcurrencyHelpers

/// Identical concurrent calls within one process run the function once.
///
/// The first call for a key (the leader) computes; calls that arrive while it
/// runs wait for its outcome. Followers receive the leader's *encoded* result
/// and decode it themselves, so results need not be `Sendable`. When the leader
/// fails (its function threw, or its result cannot be encoded), each follower
/// runs the function itself: errors are never shared or cached.
final class SingleFlight: Sendable {
    private enum Waiter {
        case task(CheckedContinuation<[UInt8]?, Never>)
        case thread(BlockingWaiter)
    }

    private struct Flight {
        var waiters: [Waiter] = []
    }

    /// A thread blocked in `joinBlocking` until the leader finishes.
    private final class BlockingWaiter: @unchecked Sendable {
        // Written once by `finish` before the semaphore is signalled, read after the wait.
        var result: [UInt8]?
        let semaphore = DispatchSemaphore(value: 0)
    }

    private let flights = NIOLockedValueBox<[FlightKey: Flight]>([:])

    /// Identifies one call: function, version and argument key.
    struct FlightKey: Hashable, Sendable {
        var function: String
        var version: String
        var key: CacheKey
    }

    enum Role {
        /// Compute, then call `finish`.
        case leader
        /// The leader's encoded result, or nil when it failed.
        case follower([UInt8]?)
    }

    /// Joins the flight for `key`: the first caller leads; later ones wait.
    func join(_ key: FlightKey, isolation: isolated (any Actor)? = #isolation) async -> Role {
        let isLeader: Bool = self.flights.withLockedValue { flights in
            if flights[key] == nil {
                flights[key] = Flight()
                return true
            }
            return false
        }
        if isLeader { return .leader }
        let result = await withCheckedContinuation(isolation: isolation) { (continuation: CheckedContinuation<[UInt8]?, Never>) in
            let joined = self.flights.withLockedValue { flights -> Bool in
                guard flights[key] != nil else { return false }
                flights[key]!.waiters.append(.task(continuation))
                return true
            }
            // The leader finished between the two steps: compute alone.
            if !joined { continuation.resume(returning: nil) }
        }
        return .follower(result)
    }

    /// Joins the flight for `key` from synchronous code, blocking the thread
    /// while another call leads.
    func joinBlocking(_ key: FlightKey) -> Role {
        let waiter = BlockingWaiter()
        let isLeader: Bool = self.flights.withLockedValue { flights in
            if flights[key] == nil {
                flights[key] = Flight()
                return true
            }
            flights[key]!.waiters.append(.thread(waiter))
            return false
        }
        if isLeader { return .leader }
        waiter.semaphore.wait()
        return .follower(waiter.result)
    }

    /// How many calls wait for a leader now, over every flight (for tests
    /// and diagnostics).
    var waiterCount: Int {
        self.flights.withLockedValue { flights in flights.values.reduce(0) { $0 + $1.waiters.count } }
    }

    /// Ends the flight for `key`, handing `encoded` (nil on failure) to every follower.
    func finish(_ key: FlightKey, encoded: [UInt8]?) {
        let waiters = self.flights.withLockedValue { $0.removeValue(forKey: key)?.waiters ?? [] }
        for waiter in waiters {
            switch waiter {
            case .task(let continuation):
                continuation.resume(returning: encoded)
            case .thread(let blocked):
                blocked.result = encoded
                blocked.semaphore.signal()
            }
        }
    }
}
