import GatewayProtocol

/// How to speak TLS to Redis: what `rediss://` (and `rediss+sentinel://`)
/// turns on, with the files and the name the certificate is checked against.
///
/// It is part of `RedisURL`, so that every URL derived from another by
/// replacing its endpoint (a Sentinel's master, a cluster's nodes) keeps it.
///
/// The server's certificate is always verified: against the CA certificates
/// in `caFile`, or the system's trust store without it, and for the name
/// `serverName`, or the URL's host when it is a name (an IP address is
/// checked against the certificate's IP addresses, and sends no SNI). A
/// certificate that does not verify fails the connect, exactly as a refused
/// `AUTH` does: the backend stays down and lookups fail open.
///
/// The files are read at every connect, so a renewed certificate is used by
/// the next connection without a restart; `validate()` reads them once up front,
/// so that a missing or malformed file stops the gateway from starting.
public struct RedisTLS: Sendable, Hashable {
    /// A PEM file of the CA certificates to trust; nil for the system's trust store.
    public var caFile: String?
    /// A PEM certificate (chain) to present to Redis (mutual TLS, `tls-auth-clients yes`); needs `keyFile`.
    public var certificateFile: String?
    /// The PEM private key of `certificateFile`.
    public var keyFile: String?
    /// The name to send as SNI and to verify the certificate for; nil for the URL's host.
    public var serverName: String?

    /// TLS with the given files; every argument defaults to nil.
    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil, serverName: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.serverName = serverName
    }

    /// Checks that a client certificate comes with its key, that the server
    /// name can be sent, and that every file loads; throws
    /// `GatewayError(.invalidConfiguration)` saying which does not.
    public func validate() throws {
        _ = try RedisTLSContext.makeContext(self)
        if let serverName {
            _ = try RedisTLSContext.serverHostname(for: serverName, configured: serverName)
        }
    }

    /// `tls`, with the files given (`ca=…`, `cert=…`, `server-name=…`); safe for logs.
    var summary: String {
        var parts = ["tls"]
        if let caFile { parts.append("ca=\(caFile)") }
        if let certificateFile { parts.append("cert=\(certificateFile)") }
        if let serverName { parts.append("server-name=\(serverName)") }
        return parts.joined(separator: " ")
    }
}
