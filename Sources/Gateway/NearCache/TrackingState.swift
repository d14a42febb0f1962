/// Whether Redis tracks every key this gateway reads, as a value type with no
/// I/O: the invalidation listener's connection and each data connection's
/// `CLIENT TRACKING` state. The near-cache fills only while `isComplete`.
///
/// Redis (RESP2) tracks keys per client: each data connection enables
/// tracking with `CLIENT TRACKING on REDIRECT <id> NOLOOP`, where `<id>` is the
/// listener's client id, and Redis then sends the invalidations for the keys
/// that connection read to the listener, which is subscribed to
/// `__redis__:invalidate`. So tracking is complete when the listener is
/// subscribed and every data connection has confirmed tracking to it. A new
/// listener (after a reconnect) has a new id, and every data connection
/// enables tracking again.
struct TrackingState<ConnectionID: Hashable & Sendable>: Sendable {
    /// One data connection's tracking.
    enum Connection: Equatable, Sendable {
        /// Tracking is not on (or redirects to a listener that is gone).
        case untracked
        /// `CLIENT TRACKING` is sent, redirecting to this listener id.
        case enabling(redirect: Int64)
        /// Redis confirmed tracking, redirecting to this listener id.
        case tracked(redirect: Int64)
    }

    /// What the caller is to do.
    enum Action: Equatable, Sendable {
        /// Send `CLIENT TRACKING on REDIRECT <redirect> NOLOOP` on this connection.
        case enableTracking(ConnectionID, redirect: Int64)
    }

    /// The subscribed listener's client id, or nil.
    private(set) var listener: Int64?
    private(set) var connections: [ConnectionID: Connection] = [:]

    /// Whether every data connection (and there is one) tracks to the subscribed listener.
    var isComplete: Bool {
        guard let listener, !self.connections.isEmpty else { return false }
        return self.connections.values.allSatisfy { $0 == .tracked(redirect: listener) }
    }

    /// The listener subscribed with client id `id`.
    mutating func listenerSubscribed(id: Int64) -> [Action] {
        self.listener = id
        var actions: [Action] = []
        for (connection, state) in self.connections where state != .tracked(redirect: id) {
            self.connections[connection] = .enabling(redirect: id)
            actions.append(.enableTracking(connection, redirect: id))
        }
        return actions
    }

    /// The listener's connection is gone: invalidations are lost from now on.
    mutating func listenerLost() {
        self.listener = nil
        for connection in self.connections.keys { self.connections[connection] = .untracked }
    }

    /// A data connection opened (before it serves any command).
    mutating func connectionOpened(_ connection: ConnectionID) -> [Action] {
        guard let listener else {
            self.connections[connection] = .untracked
            return []
        }
        self.connections[connection] = .enabling(redirect: listener)
        return [.enableTracking(connection, redirect: listener)]
    }

    /// A data connection closed: Redis forgets the keys it tracked for it.
    mutating func connectionClosed(_ connection: ConnectionID) {
        self.connections[connection] = nil
    }

    /// Redis confirmed `CLIENT TRACKING` on `connection` to `redirect`.
    mutating func trackingEnabled(_ connection: ConnectionID, redirect: Int64) {
        guard self.connections[connection] == .enabling(redirect: redirect), self.listener == redirect else { return }
        self.connections[connection] = .tracked(redirect: redirect)
    }

    /// `CLIENT TRACKING` failed on `connection` (refused, or not answered):
    /// it stays untracked, and the near-cache stays off until it closes or
    /// the listener subscribes again.
    mutating func trackingFailed(_ connection: ConnectionID, redirect: Int64) {
        guard self.connections[connection] == .enabling(redirect: redirect) else { return }
        self.connections[connection] = .untracked
    }
}
