import NIOCore

/// A Redis Cluster error reply that tells a client to send a command
/// elsewhere or later, and what the router does about it.
///
/// - `MOVED slot host:port`: the slot has a new master for good; the map is
///   corrected and refreshed, and the command goes there.
/// - `ASK slot host:port`: the slot is being migrated and this key is
///   already on the importing node; the command goes there once, preceded by
///   `ASKING`, and the map is left as it is.
/// - `TRYAGAIN`: a multi-key command met a slot half migrated; retried shortly.
/// - `CLUSTERDOWN`: the cluster cannot serve the slot (a failover is under
///   way); retried shortly, and the map refreshed.
public enum ClusterRedirect: Sendable, Hashable {
    /// `MOVED`: the slot's master is `endpoint`.
    case moved(slot: ClusterSlot, endpoint: RedisURL.Endpoint)
    /// `ASK`: send this one command to `endpoint`, after `ASKING`.
    case ask(slot: ClusterSlot, endpoint: RedisURL.Endpoint)
    /// `TRYAGAIN`.
    case tryAgain
    /// `CLUSTERDOWN`.
    case clusterDown

    /// The redirect an error reply's message asks for, or nil for any other
    /// error. An endpoint given without a host (`:7001`, from a node that
    /// does not know its own address) takes `senderHost`.
    public init?(errorMessage message: String, senderHost: String) {
        if message.hasPrefix("TRYAGAIN") {
            self = .tryAgain
            return
        }
        if message.hasPrefix("CLUSTERDOWN") {
            self = .clusterDown
            return
        }
        let isMoved = message.hasPrefix("MOVED ")
        guard isMoved || message.hasPrefix("ASK ") else { return nil }
        let parts = message.split(separator: " ")
        guard parts.count >= 3, let slotNumber = Int(parts[1]), (0..<ClusterSlot.count).contains(slotNumber),
            let colon = parts[2].lastIndex(of: ":"),
            let port = Int(parts[2][parts[2].index(after: colon)...]), (1...65535).contains(port)
        else { return nil }
        var host = String(parts[2][..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host.isEmpty { host = senderHost }
        let slot = ClusterSlot(slotNumber)
        let endpoint = RedisURL.Endpoint.tcp(host: host, port: port)
        self = isMoved ? .moved(slot: slot, endpoint: endpoint) : .ask(slot: slot, endpoint: endpoint)
    }
}

/// What to do with commands that met a redirect: the decisions of the
/// router's redirect loop, without I/O.
public struct ClusterRedirectPolicy: Sendable, Hashable {
    /// The most redirects one command follows before its error reply is
    /// kept (a map that keeps pointing around in circles is a broken cluster).
    public var maximumRedirects: Int
    /// The wait before a command that met `TRYAGAIN` or `CLUSTERDOWN` is sent again.
    public var retryDelay: TimeAmount

    /// Five redirects; retries after 2 ms.
    public init(maximumRedirects: Int = 5, retryDelay: TimeAmount = .milliseconds(2)) {
        self.maximumRedirects = maximumRedirects
        self.retryDelay = retryDelay
    }

    /// The router's next step.
    public enum Decision: Sendable, Hashable {
        /// Send the commands to `endpoint` (after `ASKING` each when `asking`);
        /// with `updatesMap`, the slot map learns the slot's new master first and is refreshed.
        case resend(to: RedisURL.Endpoint, asking: Bool, updatesMap: Bool)
        /// Send the commands again to the slot's master after `delay`; with
        /// `refreshesMap`, the map is refreshed meanwhile.
        case retry(after: TimeAmount, refreshesMap: Bool)
        /// Keep the error replies: the caller fails open.
        case giveUp
    }

    /// The step for `redirect`, met after `redirectsSoFar` earlier ones, with
    /// `remaining` time before the command's deadline.
    public func decide(_ redirect: ClusterRedirect, redirectsSoFar: Int, remaining: TimeAmount) -> Decision {
        guard redirectsSoFar < self.maximumRedirects, remaining > .zero else { return .giveUp }
        switch redirect {
        case .moved(_, let endpoint):
            return .resend(to: endpoint, asking: false, updatesMap: true)
        case .ask(_, let endpoint):
            return .resend(to: endpoint, asking: true, updatesMap: false)
        case .tryAgain, .clusterDown:
            // A retry that could not be answered in time is not worth sending.
            guard remaining > self.retryDelay else { return .giveUp }
            return .retry(after: self.retryDelay, refreshesMap: redirect == .clusterDown)
        }
    }
}
