import GatewayProtocol

/// Where and how to reach a Redis Cluster: one or more seed nodes and the
/// credentials every node shares.
///
/// The form is `redis+cluster://[[username]:password@]host1:port1[,host2:port2...]`,
/// for example `redis+cluster://app:secret@10.0.0.1:7000,10.0.0.2:7000`;
/// `rediss+cluster://` is the same over TLS (every node's connection is a
/// `rediss://` one, and the nodes' TLS ports are read from `CLUSTER SHARDS`).
/// Each seed is a host and port as in a `redis://` URL (IPv6 in brackets,
/// port 6379 by default); the credentials are written once, before the first
/// seed, and are percent-decoded as in `RedisURL`. A cluster has only
/// database 0, so no path (or `/0`) is accepted; nor a query or a fragment.
/// The seeds are only where the gateway first asks for the topology: the
/// cluster's masters are then learned from `CLUSTER SHARDS`.
///
/// Every node's connection settings come from `seed` with only the endpoint
/// replaced (`nodeURL(_:)`), so whatever else a `RedisURL` carries
/// (credentials, and any transport setting) applies to every node alike.
public struct RedisClusterURL: Sendable, Hashable, CustomStringConvertible {
    /// The scheme of the form.
    public static let scheme = "redis+cluster"
    /// The scheme of the form over TLS.
    public static let tlsScheme = "rediss+cluster"

    /// The seed nodes, in the order given; at least one.
    public var seeds: [RedisURL]

    /// A URL from its seeds (each with the credentials), without validation.
    public init(seeds: [RedisURL]) {
        self.seeds = seeds
    }

    /// Whether `string` is written in this form (its scheme is `redis+cluster` or `rediss+cluster`).
    public static func matches(_ string: String) -> Bool {
        let lowercased = string.lowercased()
        return lowercased.hasPrefix(Self.scheme + "://") || lowercased.hasPrefix(Self.tlsScheme + "://")
    }

    /// Whether the nodes are reached over TLS (`rediss+cluster://`).
    public var usesTLS: Bool { self.seeds.first?.tls != nil }

    /// Parses a `redis+cluster://` URL; throws `GatewayError(.invalidConfiguration)`
    /// with a message that says what is wrong (never showing the password).
    public init(_ string: String) throws {
        guard Self.matches(string) else {
            throw GatewayError(.invalidConfiguration, "invalid Redis Cluster URL: expected redis+cluster://host1:port1,host2:port2")
        }
        let tls = string.lowercased().hasPrefix(Self.tlsScheme + "://")
        var rest = Substring(string.dropFirst((tls ? Self.tlsScheme : Self.scheme).count + 3))
        if rest.hasSuffix("/0") { rest = rest.dropLast(2) } else if rest.hasSuffix("/") { rest = rest.dropLast() }
        let atIndex = rest.lastIndex(of: "@")
        let hostList = atIndex.map { rest[rest.index(after: $0)...] } ?? rest
        if hostList.contains("/") {
            throw GatewayError(.invalidConfiguration, "invalid Redis Cluster URL: a cluster has only database 0; remove the path")
        }
        let userinfo = atIndex.map { String(rest[...$0]) } ?? ""
        let hosts = hostList.split(separator: ",", omittingEmptySubsequences: false)
        guard !hosts.isEmpty, hosts.allSatisfy({ !$0.isEmpty }) else {
            throw GatewayError(.invalidConfiguration, "invalid Redis Cluster URL: it needs at least one seed, and no empty one between commas")
        }
        // Each seed is parsed as a redis:// URL with the shared credentials,
        // so the grammar (and its error messages) is RedisURL's own.
        self.seeds = try hosts.map { host in try RedisURL("\(tls ? "rediss" : "redis")://\(userinfo)\(host)") }
    }

    /// The connection settings for `endpoint`: the first seed's, with only the endpoint replaced.
    public func nodeURL(_ endpoint: RedisURL.Endpoint) -> RedisURL {
        var url = self.seeds[0]
        url.endpoint = endpoint
        return url
    }

    /// `redis+cluster://` (or `rediss+cluster://`) and the seeds, never the password.
    public var description: String {
        let credentials = self.seeds[0].password == nil ? "" : "\(self.seeds[0].username ?? ""):***@"
        return "\(self.usesTLS ? Self.tlsScheme : Self.scheme)://\(credentials)" + self.seeds.map { "\($0.endpoint)" }.joined(separator: ",")
    }
}
