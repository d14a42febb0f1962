import Foundation

/// The private redis-server that `make test` (scripts/with-redis.sh) starts for this run.
public enum TestRedis {
    /// The Unix socket path of the test redis-server.
    ///
    /// Tests that need Redis require it: run them through `make test`, which
    /// starts a server on a private socket and stops it afterwards.
    public static var socketPath: String {
        get throws {
            guard let path = ProcessInfo.processInfo.environment["CACHE_GATEWAY_TEST_REDIS_SOCKET"], !path.isEmpty else {
                throw TestRedisMissing()
            }
            return path
        }
    }

    public struct TestRedisMissing: Error, CustomStringConvertible {
        public var description: String {
            "CACHE_GATEWAY_TEST_REDIS_SOCKET is not set: run the tests with `make test` (scripts/with-redis.sh starts a private redis-server)"
        }
    }
}
