import NIOCore

/// Where a `RedisConnectionPool` (and the near-cache's listener) connects:
/// asked before every connect, so that a server that moves (a Sentinel
/// failover) is followed.
///
/// A source that learns of a move by itself (Sentinel's `+switch-master`)
/// tells its observers at once, and a pool then replaces every connection to
/// the old address instead of waiting for each to fail.
public protocol RedisEndpointSource: Sendable, CustomStringConvertible {
    /// The URL the next connection is made to: credentials, database and TLS,
    /// with the endpoint found now. Fails with `GatewayError(.unavailable)`
    /// when it cannot be found.
    func resolve(on eventLoop: any EventLoop) -> EventLoopFuture<RedisURL>
    /// The endpoint connections should be to now, or nil when none is known
    /// yet; a connection to another one is stale.
    var currentEndpoint: RedisURL.Endpoint? { get }
    /// The URL of the current endpoint (for logs and for what it shares with
    /// every endpoint: credentials, database, TLS).
    var currentURL: RedisURL { get }
    /// Whether a connection must confirm with `ROLE` that the server is a master.
    var requiresMaster: Bool { get }
    /// Calls `observer` each time the endpoint changes, with the new one.
    func observeChanges(_ observer: @escaping @Sendable (RedisURL.Endpoint) -> Void)
    /// Starts whatever the source runs in the background (a subscription).
    func start()
    /// Stops it.
    func shutdown() async
}

/// A source that is always the same URL: `redis://`, `rediss://` and `unix://`.
public struct FixedRedisEndpoint: RedisEndpointSource {
    /// The server.
    public let url: RedisURL

    /// Always `url`.
    public init(_ url: RedisURL) {
        self.url = url
    }

    /// `url`, at once.
    public func resolve(on eventLoop: any EventLoop) -> EventLoopFuture<RedisURL> {
        eventLoop.makeSucceededFuture(self.url)
    }

    /// The URL.
    public var currentURL: RedisURL { self.url }
    /// The URL's endpoint.
    public var currentEndpoint: RedisURL.Endpoint? { self.url.endpoint }
    /// No: any server at the address is used.
    public var requiresMaster: Bool { false }
    /// Never calls `observer`: the endpoint never changes.
    public func observeChanges(_ observer: @escaping @Sendable (RedisURL.Endpoint) -> Void) {}
    /// Nothing to start.
    public func start() {}
    /// Nothing to stop.
    public func shutdown() async {}
    /// The endpoint (`host:port` or `unix:/path`).
    public var description: String { "\(self.url.endpoint)" }
}
