#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol
import GatewaySystem

/// Where the metrics endpoint listens: a loopback TCP address, or a Unix socket.
///
/// Only loopback addresses are accepted. The endpoint has no authentication,
/// and what it shows (function names, traffic, backend faults) is not for the
/// network; a scraper on another host goes through something that runs on
/// this one (a reverse proxy with its own access control, or an agent that
/// scrapes locally and forwards).
public struct MetricsEndpoint: Sendable, Hashable, CustomStringConvertible {
    enum Base: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    let base: Base

    /// Parses `HOST:PORT` (an IPv4 loopback address, `localhost` or `[::1]`;
    /// port 0 picks a free port) or `unix:/path/to/metrics.sock` (also
    /// `unix:///path`). Throws `.invalidConfiguration` for anything else.
    public init(_ text: String) throws {
        func fail(_ problem: String) -> GatewayError {
            GatewayError(.invalidConfiguration, "--metrics \(text): \(problem); expected 127.0.0.1:PORT, [::1]:PORT, localhost:PORT or unix:/path")
        }
        if text.hasPrefix("unix:") {
            var path = Substring(text.dropFirst("unix:".count))
            if path.hasPrefix("//") { path = path.dropFirst(2) }
            guard path.hasPrefix("/") else { throw fail("the socket path must be absolute") }
            guard path.utf8.count <= UnixSocketAddress.maximumPathLength else {
                throw fail("the socket path is longer than \(UnixSocketAddress.maximumPathLength) bytes")
            }
            self.base = .unixSocket(path: String(path))
            return
        }
        guard let colon = text.lastIndex(of: ":") else { throw fail("no port") }
        var host = String(text[..<colon])
        guard let port = Int(text[text.index(after: colon)...]), (0...65_535).contains(port) else {
            throw fail("the port must be a number from 0 to 65535")
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // A fixed address rather than a name to resolve: "localhost" may
        // resolve to something else, or to both families.
        if host == "localhost" { host = "127.0.0.1" }
        guard Self.isLoopback(host) else {
            throw fail("\(host) is not a loopback address (the endpoint has no authentication)")
        }
        self.base = .tcp(host: host, port: port)
    }

    /// `127.0.0.1:9464`, `[::1]:9464` or `unix:/run/cache-gateway/metrics.sock`.
    public var description: String {
        switch self.base {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unixSocket(let path): "unix:\(path)"
        }
    }

    /// Whether `host` is a numeric IPv4 address in 127.0.0.0/8 or the IPv6 `::1`.
    static func isLoopback(_ host: String) -> Bool {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { bytes in bytes.dropLast().allSatisfy { $0 == 0 } && bytes.last == 1 }
        }
        return false
    }
}
