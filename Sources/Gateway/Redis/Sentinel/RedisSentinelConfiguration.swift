import GatewayProtocol
import NIOCore

/// A Redis master found through Sentinel: the sentinels to ask, the master's
/// name, and how to talk to the master once found.
///
/// **URL form.**
/// `redis+sentinel://[[username]:password@]host1[:port1][,host2[:port2]…]/master-name[?db=N]`,
/// and `rediss+sentinel://…` for TLS to the sentinels and to the master.
/// - each host is a name, an IPv4 address or an IPv6 address in brackets;
///   the port defaults to 26379, Sentinel's;
/// - the credentials in the URL are the **master's** (`AUTH` on every data
///   connection), as in `redis://`: the URL names the data, and a gateway
///   whose sentinels need no password (the common case) writes nothing else;
/// - the sentinels' own credentials, when they have `requirepass` or ACL
///   users, are given apart (`sentinelUsername`, `sentinelPassword`: the
///   gateway's `--redis-sentinel-username`/`--redis-sentinel-password` or
///   `CACHE_GATEWAY_REDIS_SENTINEL_USERNAME`/`…_PASSWORD`), so that each
///   secret has exactly one place and neither is guessed from the other;
/// - `db=N` selects the master's database (Sentinel itself has none); no
///   other query parameter is accepted.
///
/// `description` never shows a password.
public struct RedisSentinelConfiguration: Sendable, Hashable, CustomStringConvertible {
    /// Sentinel's default port.
    public static let defaultPort = 26379

    /// The sentinels, in the order they are tried first.
    public var sentinels: [RedisURL.Endpoint]
    /// The name the sentinels monitor the master under.
    public var masterName: String
    /// How to talk to the master: credentials, database and TLS. Its
    /// endpoint is replaced by the one the sentinels give.
    public var master: RedisURL
    /// The ACL username for the sentinels' `AUTH`, or nil for `default`.
    public var sentinelUsername: String?
    /// The sentinels' password, or nil when they require none.
    public var sentinelPassword: String?
    /// How long one sentinel may take to connect and to answer, before the
    /// next is asked. Default 250 ms.
    public var sentinelTimeout: TimeAmount

    /// A configuration from its parts, without validation.
    public init(
        sentinels: [RedisURL.Endpoint],
        masterName: String,
        master: RedisURL,
        sentinelUsername: String? = nil,
        sentinelPassword: String? = nil,
        sentinelTimeout: TimeAmount = .milliseconds(250)
    ) {
        self.sentinels = sentinels
        self.masterName = masterName
        self.master = master
        self.sentinelUsername = sentinelUsername
        self.sentinelPassword = sentinelPassword
        self.sentinelTimeout = sentinelTimeout
    }

    /// Whether `string` is a Sentinel URL (`redis+sentinel://`, `rediss+sentinel://`).
    public static func isSentinelURL(_ string: String) -> Bool {
        let lowered = string.lowercased()
        return lowered.hasPrefix("redis+sentinel://") || lowered.hasPrefix("rediss+sentinel://")
    }

    /// Parses a Sentinel URL; see the type's documentation. Throws
    /// `GatewayError(.invalidConfiguration)` saying what is wrong.
    public init(_ string: String) throws {
        guard let separator = RedisURL.schemeSeparator(in: string) else {
            throw RedisURL.invalid(string, "it has no scheme; expected redis+sentinel://host:26379,host:26379/master-name")
        }
        let scheme = string[..<separator.lowerBound].lowercased()
        guard scheme == "redis+sentinel" || scheme == "rediss+sentinel" else {
            throw RedisURL.invalid(string, "the scheme '\(scheme)' is not a Sentinel scheme (redis+sentinel:// or rediss+sentinel://)")
        }
        let rest = string[separator.upperBound...]
        if rest.contains("#") {
            throw RedisURL.invalid(string, "fragments ('#') are not allowed; percent-encode '#' as %23")
        }
        if let bad = rest.unicodeScalars.first(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw RedisURL.invalid(string, "it contains the character U+\(String(bad.value, radix: 16, uppercase: true)); percent-encode it")
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw RedisURL.invalid(string, "it names no master; expected redis+sentinel://host:26379/master-name")
        }
        let (username, password, hosts) = try RedisURL.splitUserinfo(rest[..<slash], url: string)
        var sentinels: [RedisURL.Endpoint] = []
        for hostPort in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            guard !hostPort.isEmpty else { throw RedisURL.invalid(string, "its list of sentinels has an empty entry") }
            // A missing port is Sentinel's, not Redis's.
            let hasPort = hostPort.hasPrefix("[") ? hostPort.contains("]:") : hostPort.contains(":")
            let text: Substring = hasPort ? hostPort : Substring(hostPort + ":\(Self.defaultPort)")
            let (host, port) = try RedisURL.parseHostPort(text, url: string)
            sentinels.append(.tcp(host: host, port: port))
        }
        guard !sentinels.isEmpty else { throw RedisURL.invalid(string, "it names no sentinel") }
        var pathAndQuery = rest[rest.index(after: slash)...]
        var database = 0
        if let question = pathAndQuery.firstIndex(of: "?") {
            for parameter in pathAndQuery[pathAndQuery.index(after: question)...].split(separator: "&", omittingEmptySubsequences: false) {
                let parts = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                switch parts[0] {
                case "db" where parts.count == 2:
                    database = try RedisURL.parseDatabase(parts[1], url: string)
                case "password", "user", "username", "sentinel_password", "sentinelPassword":
                    throw RedisURL.invalid(string, "credentials do not go in the query: the master's go before the hosts (user:password@), the sentinels' in --redis-sentinel-password")
                default:
                    throw RedisURL.invalid(string, "the query parameter '\(parameter)' is not supported; only db=N is")
                }
            }
            pathAndQuery = pathAndQuery[..<question]
        }
        let masterName = try RedisURL.percentDecode(pathAndQuery, what: "master name", url: string)
        guard !masterName.isEmpty, !masterName.contains("/"), masterName.allSatisfy({ !$0.isWhitespace }) else {
            throw RedisURL.invalid(string, "the master name '\(masterName)' is empty or contains '/' or spaces")
        }
        self.init(
            sentinels: sentinels,
            masterName: masterName,
            master: RedisURL(
                endpoint: sentinels[0],
                username: username,
                password: password,
                database: database,
                tls: scheme == "rediss+sentinel" ? RedisTLS() : nil
            )
        )
    }

    /// How to reach sentinel `index`: its endpoint, the sentinels'
    /// credentials and the master's TLS settings (a TLS deployment runs its
    /// sentinels on TLS too).
    func sentinelURL(_ index: Int) -> RedisURL {
        RedisURL(endpoint: self.sentinels[index], username: self.sentinelUsername, password: self.sentinelPassword, database: 0, tls: self.master.tls)
    }

    /// Throws `GatewayError(.invalidConfiguration)` for a configuration that cannot work.
    public func validate() throws {
        guard !self.sentinels.isEmpty else { throw GatewayError(.invalidConfiguration, "a Sentinel configuration needs at least one sentinel") }
        guard !self.masterName.isEmpty else { throw GatewayError(.invalidConfiguration, "a Sentinel configuration needs the master's name") }
        guard self.sentinelTimeout > .zero else { throw GatewayError(.invalidConfiguration, "the Sentinel timeout must be positive") }
        if self.sentinelUsername != nil && self.sentinelPassword == nil {
            throw GatewayError(.invalidConfiguration, "a Sentinel username needs a password (--redis-sentinel-password)")
        }
        try self.master.tls?.validate()
    }

    /// The URL with `***` for the master's password (the sentinels' is never shown).
    public var description: String {
        var credentials = ""
        if self.master.password != nil {
            credentials = (self.master.username.map(RedisURL.encodeUserinfo) ?? "") + ":***@"
        }
        let hosts = self.sentinels.map(\.description).joined(separator: ",")
        let query = self.master.database == 0 ? "" : "?db=\(self.master.database)"
        let scheme = self.master.tls == nil ? "redis+sentinel" : "rediss+sentinel"
        return "\(scheme)://\(credentials)\(hosts)/\(self.masterName)\(query)"
    }
}
