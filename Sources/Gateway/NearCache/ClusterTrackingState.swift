/// Whether every node of a Redis Cluster tracks every key this gateway reads
/// from it, as a value type with no I/O: a `TrackingState` per node (each
/// master has its own invalidation listener, and each connection to a master
/// redirects its tracking to that master's listener, since `CLIENT TRACKING
/// REDIRECT` names a client of the same server). The near-cache fills only
/// while `isComplete`.
///
/// **One gate for the whole cluster.** The near-cache fills only while the
/// tracking of *every* master is known good, not per node: a fill's key may
/// be read from another node than the one the map names (an `ASK` or `MOVED`
/// redirect), and an entry's node can change under it (a failover, a
/// resharding); a single gate over every node makes "its node tracks it"
/// true whichever node that is, without knowing which node served a read.
/// The cost is that one node's trouble turns the near-cache off for all keys
/// until that node's tracking is back, which the operator sees in
/// `nearCacheFilling` and `nearCacheTrackingClientIDs`.
///
/// **Nodes.** The masters of the slot map (`mastersChanged`), and any other
/// node a connection opened to (an `ASK` target not yet in the map), which is
/// forgotten when it is not a master and has no connection left.
struct ClusterTrackingState<Node: Hashable & Sendable, ConnectionID: Hashable & Sendable>: Sendable {
    /// What the caller is to do.
    enum Action: Equatable, Sendable {
        /// Send `CLIENT TRACKING on REDIRECT <redirect> NOLOOP` on this connection of `node`.
        case enableTracking(Node, ConnectionID, redirect: Int64)
    }

    /// The masters of the slot map, as last told.
    private(set) var masters: Set<Node> = []
    /// Each node's tracking.
    private(set) var nodes: [Node: TrackingState<ConnectionID>] = [:]

    /// Whether there is a master and every node tracks to its subscribed
    /// listener on every connection (see the type's documentation).
    var isComplete: Bool {
        guard !self.masters.isEmpty else { return false }
        for master in self.masters where self.nodes[master]?.isComplete != true { return false }
        return self.nodes.values.allSatisfy(\.isComplete)
    }

    /// The slot map's masters are now `masters`. Returns the nodes that are
    /// new (each needs a listener) and the nodes forgotten (their listeners
    /// are to stop).
    mutating func mastersChanged(_ masters: some Sequence<Node>) -> (added: [Node], removed: [Node]) {
        self.masters = Set(masters)
        var added: [Node] = []
        for master in self.masters where self.nodes[master] == nil {
            self.nodes[master] = TrackingState()
            added.append(master)
        }
        let removed = self.nodes.keys.filter { !self.masters.contains($0) && self.nodes[$0]?.connections.isEmpty != false }
        for node in removed { self.nodes[node] = nil }
        return (added, removed)
    }

    /// Whether `node` is known (has a listener).
    func knows(_ node: Node) -> Bool { self.nodes[node] != nil }

    /// `node`'s listener subscribed with client id `id`.
    mutating func listenerSubscribed(node: Node, id: Int64) -> [Action] {
        guard self.nodes[node] != nil else { return [] }
        return self.nodes[node]!.listenerSubscribed(id: id).map { action in
            switch action {
            case .enableTracking(let connection, let redirect): .enableTracking(node, connection, redirect: redirect)
            }
        }
    }

    /// `node`'s listener's connection is gone.
    mutating func listenerLost(node: Node) {
        self.nodes[node]?.listenerLost()
    }

    /// A connection to `node` opened. Returns the actions, and whether the
    /// node is new (it needs a listener).
    mutating func connectionOpened(node: Node, _ connection: ConnectionID) -> (actions: [Action], isNewNode: Bool) {
        let isNew = self.nodes[node] == nil
        if isNew { self.nodes[node] = TrackingState() }
        let actions = self.nodes[node]!.connectionOpened(connection).map { action in
            switch action {
            case .enableTracking(let connection, let redirect): Action.enableTracking(node, connection, redirect: redirect)
            }
        }
        return (actions, isNew)
    }

    /// A connection to `node` closed. Returns whether the node is forgotten
    /// (not a master, and no connection left): its listener is to stop.
    mutating func connectionClosed(node: Node, _ connection: ConnectionID) -> Bool {
        guard self.nodes[node] != nil else { return false }
        self.nodes[node]!.connectionClosed(connection)
        guard !self.masters.contains(node), self.nodes[node]!.connections.isEmpty else { return false }
        self.nodes[node] = nil
        return true
    }

    /// Redis confirmed tracking on `connection` of `node`.
    mutating func trackingEnabled(node: Node, _ connection: ConnectionID, redirect: Int64) {
        self.nodes[node]?.trackingEnabled(connection, redirect: redirect)
    }

    /// `CLIENT TRACKING` failed on `connection` of `node`.
    mutating func trackingFailed(node: Node, _ connection: ConnectionID, redirect: Int64) {
        self.nodes[node]?.trackingFailed(connection, redirect: redirect)
    }

    /// Each node's subscribed listener client id (nodes without one left out).
    var listenerIDs: [Node: Int64] {
        self.nodes.compactMapValues(\.listener)
    }
}
