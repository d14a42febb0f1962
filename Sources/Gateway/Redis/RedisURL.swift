import GatewayProtocol
import GatewaySystem

/// Where and how to reach one Redis server: its endpoint, the credentials for
/// `AUTH`, and the database for `SELECT`.
///
/// Two URL forms are accepted:
///
/// - `redis://[[username]:password@]host[:port][/database]`
///   - `host` is a name, an IPv4 address, or an IPv6 address in brackets
///     (`redis://[::1]:6380`); the port defaults to 6379, the database to 0.
///   - `redis://:secret@host` authenticates with a password only
///     (`AUTH secret`, the `default` user); `redis://app:secret@host` as the
///     ACL user `app` (`AUTH app secret`). A username with an empty password
///     (`redis://app:@host`) suits an ACL user marked `nopass`.
/// - `rediss://…`: the same as `redis://`, over TLS (`tls`, set to
///   `RedisTLS()`: the system's trust store and the host's name; the gateway's
///   `--redis-tls-*` options fill in the rest).
/// - `unix://[[username]:password@]/path/to/redis.sock[?db=N]`
///   - the socket path must be absolute; the database is given as the `db`
///     query parameter, the only one accepted.
///   - credentials go in the userinfo before the path, exactly as in the
///     `redis://` form (`unix://app:secret@/run/redis.sock?db=2`). A
///     `password=` query parameter is deliberately not supported: one place
///     for credentials is easier to audit and to redact.
///
/// The username, the password and the socket path are percent-decoded, so
/// reserved characters can be written as `%40` (`@`), `%3A` (`:`), `%2F`
/// (`/`) and so on. Anything else (another scheme, a query on `redis://`, a
/// fragment, a malformed port or database, a username without a password) is
/// refused with
/// `GatewayError(.invalidConfiguration)` and a message that says what is wrong.
///
/// `description` never shows the password.
public struct RedisURL: Sendable, Hashable {
    /// How to reach the server.
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        /// A TCP host (name or address, IPv6 without brackets) and port.
        case tcp(host: String, port: Int)
        /// A Unix domain socket at an absolute path.
        case unixSocket(path: String)

        /// `host:port`, `[v6]:port`, or `unix:/path`.
        public var description: String {
            switch self {
            case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case .unixSocket(let path): "unix:\(path)"
            }
        }
    }

    /// Redis's default TCP port.
    public static let defaultPort = 6379
    /// The longest Unix socket path the kernel accepts
    /// (`UnixSocketAddress.maximumPathLength`: 107 bytes on Linux, 103 on macOS).
    public static let maximumSocketPathLength = UnixSocketAddress.maximumPathLength

    /// The server's address.
    public var endpoint: Endpoint
    /// The ACL username for `AUTH`, or nil for the `default` user.
    public var username: String?
    /// The password for `AUTH`, or nil to skip `AUTH`.
    public var password: String?
    /// The database index for `SELECT` (0 is Redis's default and is not selected explicitly).
    public var database: Int
    /// TLS settings (`rediss://`), or nil for a plain connection.
    public var tls: RedisTLS?

    /// A URL from its parts, without validation.
    public init(endpoint: Endpoint, username: String? = nil, password: String? = nil, database: Int = 0, tls: RedisTLS? = nil) {
        self.endpoint = endpoint
        self.username = username
        self.password = password
        self.database = database
        self.tls = tls
    }

    /// Parses a `redis://` or `unix://` URL; see the type's documentation for
    /// the grammar. Throws `GatewayError(.invalidConfiguration)`.
    public init(_ string: String) throws {
        guard let separator = Self.schemeSeparator(in: string) else {
            throw Self.invalid(string, "it has no scheme; expected redis://host:port/db or unix:///path/to/redis.sock")
        }
        let scheme = string[..<separator.lowerBound].lowercased()
        let rest = string[separator.upperBound...]
        if rest.contains("#") {
            throw Self.invalid(string, "fragments ('#') are not allowed; percent-encode '#' as %23")
        }
        if let bad = rest.unicodeScalars.first(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw Self.invalid(string, "it contains the character U+\(String(bad.value, radix: 16, uppercase: true)); percent-encode it")
        }
        switch scheme {
        case "redis":
            self = try Self.parseTCP(rest, url: string)
        case "unix":
            self = try Self.parseUnix(rest, url: string)
        case "rediss":
            self = try Self.parseTCP(rest, url: string)
            self.tls = RedisTLS()
        default:
            throw Self.invalid(string, "the scheme '\(scheme)' is not supported; use redis://, rediss://, redis+sentinel://, rediss+sentinel:// or unix://")
        }
    }

    // MARK: Parsing

    private static func parseTCP(_ rest: Substring, url: String) throws -> RedisURL {
        if rest.contains("?") {
            throw invalid(url, "redis:// and rediss:// URLs take no query parameters; give the database as the path (redis://host:6379/2)")
        }
        let authority: Substring
        let path: Substring
        if let slash = rest.firstIndex(of: "/") {
            authority = rest[..<slash]
            path = rest[rest.index(after: slash)...]
        } else {
            authority = rest
            path = ""
        }
        let (username, password, hostPort) = try splitUserinfo(authority, url: url)
        let (host, port) = try parseHostPort(hostPort, url: url)
        let database = path.isEmpty ? 0 : try parseDatabase(path, url: url)
        return RedisURL(endpoint: .tcp(host: host, port: port), username: username, password: password, database: database)
    }

    private static func parseUnix(_ rest: Substring, url: String) throws -> RedisURL {
        guard let slash = rest.firstIndex(of: "/") else {
            throw invalid(url, "it has no socket path; expected unix:///path/to/redis.sock")
        }
        let authority = rest[..<slash]
        var username: String? = nil
        var password: String? = nil
        if !authority.isEmpty {
            guard authority.last == "@" else {
                throw invalid(url, "unix:// URLs take no host; write unix:///path/to/redis.sock (three slashes)")
            }
            let parsed = try splitUserinfo(authority, url: url)
            (username, password) = (parsed.username, parsed.password)
        }
        let pathAndQuery = rest[slash...]
        let rawPath: Substring
        var database = 0
        if let question = pathAndQuery.firstIndex(of: "?") {
            rawPath = pathAndQuery[..<question]
            database = try parseUnixQuery(pathAndQuery[pathAndQuery.index(after: question)...], url: url)
        } else {
            rawPath = pathAndQuery
        }
        let path = try percentDecode(rawPath, what: "socket path", url: url)
        guard path.count > 1, path.last != "/" else {
            throw invalid(url, "the socket path '\(path)' does not name a file")
        }
        guard path.utf8.count <= maximumSocketPathLength else {
            throw invalid(url, "the socket path is \(path.utf8.count) bytes long; the limit is \(maximumSocketPathLength)")
        }
        guard !path.utf8.contains(0) else {
            throw invalid(url, "the socket path contains a NUL byte")
        }
        return RedisURL(endpoint: .unixSocket(path: path), username: username, password: password, database: database)
    }

    /// Splits `[userinfo@]rest`, decoding the credentials. The last `@`
    /// separates them, so an unencoded `@` in a password still parses.
    static func splitUserinfo(
        _ authority: Substring,
        url: String
    ) throws -> (username: String?, password: String?, rest: Substring) {
        guard let at = authority.lastIndex(of: "@") else { return (nil, nil, authority) }
        let userinfo = authority[..<at]
        let rest = authority[authority.index(after: at)...]
        guard let colon = userinfo.firstIndex(of: ":") else {
            throw invalid(
                url,
                "'name@' is ambiguous: write ':password@' to authenticate with a password, or 'user:password@' for an ACL user"
            )
        }
        let username = try percentDecode(userinfo[..<colon], what: "username", url: url)
        let password = try percentDecode(userinfo[userinfo.index(after: colon)...], what: "password", url: url)
        if username.isEmpty && password.isEmpty {
            throw invalid(url, "it has an empty password; remove ':@' to connect without AUTH")
        }
        return (username.isEmpty ? nil : username, password, rest)
    }

    static func parseHostPort(_ hostPort: Substring, url: String) throws -> (String, Int) {
        let host: Substring
        let portText: Substring?
        if hostPort.first == "[" {
            guard let close = hostPort.firstIndex(of: "]") else {
                throw invalid(url, "the IPv6 address has no closing ']'")
            }
            host = hostPort[hostPort.index(after: hostPort.startIndex)..<close]
            let after = hostPort[hostPort.index(after: close)...]
            if after.isEmpty {
                portText = nil
            } else if after.first == ":" {
                portText = after.dropFirst()
            } else {
                throw invalid(url, "unexpected '\(after)' after the IPv6 address")
            }
            guard !host.isEmpty, host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                throw invalid(url, "'[\(host)]' is not an IPv6 address")
            }
        } else {
            if hostPort.count(where: { $0 == ":" }) > 1 {
                throw invalid(url, "'\(hostPort)' is not a valid host and port (IPv6 addresses go in brackets: [::1]:6379)")
            }
            if let colon = hostPort.firstIndex(of: ":") {
                host = hostPort[..<colon]
                portText = hostPort[hostPort.index(after: colon)...]
            } else {
                host = hostPort
                portText = nil
            }
            guard !host.isEmpty else {
                throw invalid(url, "it has no host")
            }
            guard host.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0) || $0 == "-" || $0 == "." || $0 == "_") }) else {
                throw invalid(url, "'\(host)' is not a valid host name (IPv6 addresses go in brackets)")
            }
        }
        guard let portText else { return (String(host), defaultPort) }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy(\.isASCIIDigit),
            let port = Int(portText), (1...65535).contains(port)
        else {
            throw invalid(url, "the port '\(portText)' is not a number from 1 to 65535")
        }
        return (String(host), port)
    }

    static func parseDatabase(_ text: Substring, url: String) throws -> Int {
        guard !text.isEmpty, text.count <= 9, text.allSatisfy(\.isASCIIDigit), let database = Int(text) else {
            throw invalid(url, "the database '\(text)' is not a non-negative integer (below 10^9)")
        }
        return database
    }

    private static func parseUnixQuery(_ query: Substring, url: String) throws -> Int {
        var database: Int? = nil
        for parameter in query.split(separator: "&", omittingEmptySubsequences: false) {
            let parts = parameter.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            switch parts[0] {
            case "db" where parts.count == 2:
                guard database == nil else { throw invalid(url, "the db parameter is given twice") }
                database = try parseDatabase(parts[1], url: url)
            case "password", "user", "username":
                throw invalid(url, "credentials go before the path (unix://user:password@/path), not in the query")
            default:
                throw invalid(url, "the query parameter '\(parameter)' is not supported; only db=N is")
            }
        }
        return database ?? 0
    }

    /// The `://` after the scheme (the text before the first `:`).
    static func schemeSeparator(in url: String) -> Range<String.Index>? {
        guard let colon = url.firstIndex(of: ":"), url[colon...].hasPrefix("://") else { return nil }
        return colon..<url.index(colon, offsetBy: 3)
    }

    /// Decodes `%XX` escapes; the result must be valid UTF-8.
    static func percentDecode(_ text: Substring, what: String, url: String) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(hexValue), let low = iterator.next().flatMap(hexValue) else {
                throw invalid(url, "the \(what) has a malformed percent escape (expected %XX)")
            }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw invalid(url, "the \(what) is not valid UTF-8 after percent-decoding")
        }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// The error for a URL that cannot be used. The URL is shown redacted: a
    /// malformed URL may still hold a real password.
    static func invalid(_ url: String, _ reason: String) -> GatewayError {
        GatewayError(.invalidConfiguration, "invalid Redis URL '\(redact(url))': \(reason)")
    }

    /// `url` with everything between `://` and the last `@` before the path
    /// replaced by `***`, when there is such an `@`.
    private static func redact(_ url: String) -> String {
        guard let separator = schemeSeparator(in: url) else { return url }
        let rest = url[separator.upperBound...]
        let authorityEnd: String.Index
        if url[..<separator.lowerBound].lowercased() == "unix" {
            authorityEnd = rest.firstIndex(of: "/") ?? rest.endIndex
        } else {
            authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        }
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        return String(url[..<separator.upperBound]) + "***" + String(rest[at...])
    }
}

extension RedisURL: CustomStringConvertible {
    /// The URL with the password replaced by `***`; safe for logs.
    public var description: String {
        var credentials = ""
        if self.password != nil {
            credentials = (self.username.map(Self.encodeUserinfo) ?? "") + ":***@"
        }
        switch self.endpoint {
        case .tcp:
            return "\(self.tls == nil ? "redis" : "rediss")://\(credentials)\(self.endpoint)/\(self.database)"
        case .unixSocket(let path):
            return "unix://\(credentials)\(path)" + (self.database == 0 ? "" : "?db=\(self.database)")
        }
    }

    static func encodeUserinfo(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            let scalar = Unicode.Scalar(byte)
            if scalar.isASCII, scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "-._~".unicodeScalars.contains(scalar) {
                out.unicodeScalars.append(scalar)
            } else {
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { self.isASCII && self.isNumber }
}
