import NIOCore
import Synchronization

/// How a gateway with fill leases learns of another gateway's value: it
/// reads the entry again (`read`, the store's lookup) when the backend says
/// the entry or its lease changed (`changes`), and polls while it says
/// nothing (no near-cache, or its tracking is down).
struct FillRemoteReads: Sendable {
    /// Reads an entry from the backend.
    var read: @Sendable (StorageKey, any EventLoop) -> EventLoopFuture<StoreLookup>
    /// The backend's change notifications; nil when there are none.
    var changes: FillBackendChanges?
}

/// Relays the backend's change notifications (the near-cache's
/// invalidations: keys another gateway wrote, or nil for "anything may have
/// changed") to the fill coordinator, which subscribes once it exists.
final class FillBackendChanges: Sendable {
    private let handler = Mutex<(@Sendable ([String]?) -> Void)?>(nil)
    private let live: @Sendable () -> Bool

    /// `live` says whether notifications arrive now (the near-cache's tracking is complete).
    init(live: @escaping @Sendable () -> Bool) {
        self.live = live
    }

    /// Whether notifications arrive now; while not, waiting gateways poll.
    var isLive: Bool { self.live() }

    /// Sends every notification to `handler` from now on.
    func observe(_ handler: @escaping @Sendable ([String]?) -> Void) {
        self.handler.withLock { $0 = handler }
    }

    /// The backend says `names` changed; nil: any key may have.
    func changed(_ names: [String]?) {
        self.handler.withLock { $0 }?(names)
    }
}
