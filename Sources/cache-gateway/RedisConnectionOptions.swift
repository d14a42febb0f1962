import ArgumentParser
import Gateway
import GatewayProtocol

/// The options that say how to reach Redis beyond its URL: TLS files and
/// name (`rediss://`, `rediss+cluster://`, `rediss+sentinel://`), and the
/// sentinels' credentials.
struct RedisConnectionOptions: ParsableArguments {
    @Option(help: "TLS to Redis: a PEM file of the CA certificates to trust (env CACHE_GATEWAY_REDIS_TLS_CA_FILE; default the system's trust store). Needs a rediss:// URL.")
    var redisTlsCaFile: String?

    @Option(help: "TLS to Redis: a PEM client certificate for mutual TLS (env CACHE_GATEWAY_REDIS_TLS_CERT_FILE); needs --redis-tls-key-file.")
    var redisTlsCertFile: String?

    @Option(help: "TLS to Redis: the PEM private key of --redis-tls-cert-file (env CACHE_GATEWAY_REDIS_TLS_KEY_FILE).")
    var redisTlsKeyFile: String?

    @Option(help: "TLS to Redis: the name to send (SNI) and to verify the server's certificate for (env CACHE_GATEWAY_REDIS_TLS_SERVER_NAME; default the URL's host, or the certificate's IP addresses for an address).")
    var redisTlsServerName: String?

    @Option(help: "Sentinel: the ACL username for the sentinels' AUTH (env CACHE_GATEWAY_REDIS_SENTINEL_USERNAME). The master's credentials go in the URL.")
    var redisSentinelUsername: String?

    @Option(help: "Sentinel: the sentinels' password (env CACHE_GATEWAY_REDIS_SENTINEL_PASSWORD, which keeps it out of the process list).")
    var redisSentinelPassword: String?

    /// The backend for `url` (`redis://`, `rediss://`, `unix://`, a Redis
    /// Cluster or a Sentinel URL) with these options; flags win over `environment`.
    /// Throws `GatewayError(.invalidConfiguration)`.
    func backend(url: String, configuration: RedisStore.Configuration, environment: [String: String]) throws -> GatewayApplication.Backend {
        let tlsOptions = RedisTLS(
            caFile: self.redisTlsCaFile ?? environment["CACHE_GATEWAY_REDIS_TLS_CA_FILE"],
            certificateFile: self.redisTlsCertFile ?? environment["CACHE_GATEWAY_REDIS_TLS_CERT_FILE"],
            keyFile: self.redisTlsKeyFile ?? environment["CACHE_GATEWAY_REDIS_TLS_KEY_FILE"],
            serverName: self.redisTlsServerName ?? environment["CACHE_GATEWAY_REDIS_TLS_SERVER_NAME"]
        )
        let sentinelUsername = self.redisSentinelUsername ?? environment["CACHE_GATEWAY_REDIS_SENTINEL_USERNAME"]
        let sentinelPassword = self.redisSentinelPassword ?? environment["CACHE_GATEWAY_REDIS_SENTINEL_PASSWORD"]
        func withTLS(_ tls: RedisTLS?) throws -> RedisTLS? {
            guard tls != nil else {
                guard tlsOptions == RedisTLS() else {
                    throw GatewayError(.invalidConfiguration, "the --redis-tls-* options need a TLS URL (rediss://, rediss+cluster:// or rediss+sentinel://)")
                }
                return nil
            }
            return tlsOptions
        }
        if RedisSentinelConfiguration.isSentinelURL(url) {
            var sentinel = try RedisSentinelConfiguration(url)
            sentinel.master.tls = try withTLS(sentinel.master.tls)
            sentinel.sentinelUsername = sentinelUsername
            sentinel.sentinelPassword = sentinelPassword
            return .sentinel(sentinel, configuration: configuration)
        }
        guard sentinelUsername == nil, sentinelPassword == nil else {
            throw GatewayError(.invalidConfiguration, "the --redis-sentinel-* options need a Sentinel URL (redis+sentinel:// or rediss+sentinel://)")
        }
        if RedisClusterURL.matches(url) {
            var cluster = try RedisClusterURL(url)
            let tls = try withTLS(cluster.seeds[0].tls)
            for index in cluster.seeds.indices { cluster.seeds[index].tls = tls }
            return .redisCluster(url: cluster, configuration: configuration)
        }
        var redisURL = try RedisURL(url)
        redisURL.tls = try withTLS(redisURL.tls)
        return .redis(url: redisURL, configuration: configuration)
    }
}
