import Foundation

/// The Sentinel and TLS topologies that scripts/with-redis.sh starts once per
/// run (scripts/redis-sentinel.sh, scripts/redis-tls.sh) and exports.
public enum TestRedisTopologies {
    private static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Whether the Sentinel topology runs (for `.enabled(if:)`).
    public static var hasSentinel: Bool { environment["CACHE_GATEWAY_TEST_REDIS_SENTINELS"]?.isEmpty == false }
    /// Whether the TLS servers run (for `.enabled(if:)`).
    public static var hasTLS: Bool { environment["CACHE_GATEWAY_TEST_REDIS_TLS_DIR"]?.isEmpty == false }
    /// Why a test that needs a topology did not run.
    public static let missingMessage = "needs the Sentinel and TLS topologies: run the tests through scripts/with-redis.sh (make test)"

    /// `host:port,host:port,host:port`: the three sentinels.
    public static var sentinels: String { environment["CACHE_GATEWAY_TEST_REDIS_SENTINELS"] ?? "" }
    /// The ports of the sentinels.
    public static var sentinelPorts: [Int] {
        sentinels.split(separator: ",").compactMap { $0.split(separator: ":").last.flatMap { Int($0) } }
    }
    /// The name the sentinels monitor the master under.
    public static var sentinelMaster: String { environment["CACHE_GATEWAY_TEST_REDIS_SENTINEL_MASTER"] ?? "" }
    /// Where the data nodes' configurations (node-PORT.conf) and pid files (node-PORT.pid) are.
    public static var sentinelDirectory: String { environment["CACHE_GATEWAY_TEST_REDIS_SENTINEL_DIR"] ?? "" }

    /// The TLS directory: ca.crt, client.crt, client.key, other-ca.crt.
    public static var tlsDirectory: String { environment["CACHE_GATEWAY_TEST_REDIS_TLS_DIR"] ?? "" }
    /// A file of the TLS directory.
    public static func tlsFile(_ name: String) -> String { tlsDirectory + "/" + name }
    /// The TLS server whose client certificates are optional.
    public static var tlsPort: Int { Int(environment["CACHE_GATEWAY_TEST_REDIS_TLS_PORT"] ?? "") ?? 0 }
    /// The TLS server that requires a client certificate.
    public static var mutualTLSPort: Int { Int(environment["CACHE_GATEWAY_TEST_REDIS_TLS_MTLS_PORT"] ?? "") ?? 0 }
    /// The TLS server whose certificate is for wrong-name.example.
    public static var wrongNameTLSPort: Int { Int(environment["CACHE_GATEWAY_TEST_REDIS_TLS_WRONG_NAME_PORT"] ?? "") ?? 0 }

    /// Runs redis-cli with `arguments` and returns its output, trimmed (`--raw`).
    public static func redisCLI(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["redis-cli", "--raw"] + arguments
        let (status, text) = try process.runToEnd()
        guard status == 0 else { throw TestFailure("redis-cli \(arguments) exited \(status): \(text)") }
        return text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// redis-cli arguments that reach the TLS server on `port` as a trusted client.
    public static func tlsCLIArguments(port: Int) -> [String] {
        ["--tls", "--cacert", tlsFile("ca.crt"), "--cert", tlsFile("client.crt"), "--key", tlsFile("client.key"), "-h", "127.0.0.1", "-p", "\(port)", "--sni", "localhost"]
    }
}
