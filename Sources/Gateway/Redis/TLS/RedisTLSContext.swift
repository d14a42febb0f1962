import GatewayProtocol
import NIOCore
import NIOSSL

/// Builds the TLS client side of a Redis connection from `RedisTLS`: the
/// swift-nio-ssl context and the handlers that go first in the pipeline.
///
/// Only a channel to a `rediss://` URL gets them: a plain connection's
/// pipeline has no TLS handler at all, so the plain hot path pays nothing.
enum RedisTLSContext {
    /// A client context that verifies the server fully, trusting `tls.caFile`
    /// (or the system's roots) and presenting the client certificate, if any.
    /// Throws `GatewayError(.invalidConfiguration)` when a file cannot be used.
    static func makeContext(_ tls: RedisTLS) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        if let caFile = tls.caFile {
            configuration.trustRoots = .file(caFile)
        }
        switch (tls.certificateFile, tls.keyFile) {
        case (nil, nil):
            break
        case (let certificateFile?, let keyFile?):
            do {
                configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            } catch {
                throw GatewayError(.invalidConfiguration, "cannot read the Redis TLS client certificate \(certificateFile): \(error)")
            }
            do {
                configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw GatewayError(.invalidConfiguration, "cannot read the Redis TLS client key \(keyFile): \(error)")
            }
        case (_?, nil):
            throw GatewayError(.invalidConfiguration, "a Redis TLS client certificate needs its key (--redis-tls-key-file)")
        case (nil, _?):
            throw GatewayError(.invalidConfiguration, "a Redis TLS client key needs its certificate (--redis-tls-cert-file)")
        }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            let what = tls.caFile.map { "the Redis TLS CA file \($0)" } ?? "the system's trust store"
            throw GatewayError(.invalidConfiguration, "cannot set up TLS to Redis with \(what): \(error)")
        }
    }

    /// The name sent as SNI and verified: the configured one, or `host` when
    /// it is a name; nil for an IP address (verified against the
    /// certificate's IP addresses instead, since SNI cannot carry one).
    static func serverHostname(for host: String, configured: String?) throws -> String? {
        let name = configured ?? host
        do {
            try name.validateSNIServerNameForRedis()
            return name
        } catch {
            if configured != nil {
                throw GatewayError(.invalidConfiguration, "the Redis TLS server name '\(name)' cannot be sent as SNI (an IP address, empty, or longer than 255 bytes)")
            }
            return nil
        }
    }

    /// The TLS handlers for a connection to `host`, in pipeline order: the
    /// TLS client and `RedisTLSHandshakeHandler`, which reports the
    /// handshake's outcome with the name checked.
    static func makeHandlers(_ tls: RedisTLS, host: String, endpoint: String, timeout: TimeAmount) throws -> [any ChannelHandler] {
        let context = try Self.makeContext(tls)
        let hostname = try Self.serverHostname(for: host, configured: tls.serverName)
        let client: NIOSSLClientHandler
        do {
            client = try NIOSSLClientHandler(context: context, serverHostname: hostname)
        } catch {
            throw GatewayError(.invalidConfiguration, "cannot start TLS to Redis at \(endpoint): \(error)")
        }
        return [client, RedisTLSHandshakeHandler(endpoint: endpoint, serverName: hostname, timeout: timeout)]
    }
}

extension String {
    /// Throws when the string cannot be an SNI name: an IP address, empty,
    /// longer than 255 bytes, or containing a NUL (swift-nio-ssl's rule).
    fileprivate func validateSNIServerNameForRedis() throws {
        struct NotAName: Error {}
        guard !self.isEmpty, self.utf8.count <= 255, !self.utf8.contains(0) else { throw NotAName() }
        if (try? SocketAddress(ipAddress: self, port: 0)) != nil { throw NotAName() }
    }
}
