import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

extension IntegrationTests {
    /// Real gateways against the TLS-only redis-servers of scripts/redis-tls.sh.
    @Suite(.serialized, .enabled(if: TestRedisTopologies.hasTLS, Comment(rawValue: TestRedisTopologies.missingMessage)))
    struct GatewayTLSTests {
        static let function = FunctionVersion(function: "Tests.tls(x:)", version: "v1")

        static func stat(_ connection: GatewayConnection, _ name: String) async throws -> UInt64 {
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            return stats[count: name] ?? 0
        }

        static func tlsArguments(port: Int, ca: String = "ca.crt", clientCertificate: Bool = false, extra: [String] = []) -> [String] {
            var arguments = ["--redis", "rediss://localhost:\(port)", "--redis-tls-ca-file", TestRedisTopologies.tlsFile(ca), "--namespace", "tls-\(UUID().uuidString.prefix(8))"]
            if clientCertificate {
                arguments += ["--redis-tls-cert-file", TestRedisTopologies.tlsFile("client.crt"), "--redis-tls-key-file", TestRedisTopologies.tlsFile("client.key")]
            }
            return arguments + extra
        }

        /// Stores through `writer`, then finds the value through `reader`
        /// (another gateway, so that the value came from Redis).
        static func storeAndFind(writer: GatewayProcess, reader: GatewayProcess, label: String) async throws {
            let key = try CacheKey(hashing: "tls-\(label)-\(UUID().uuidString)")
            let value = ByteBuffer(string: "over TLS: \(label)")
            let writing = try await writer.connect(name: "writer")
            let reading = try await reader.connect(name: "reader")
            #expect(try await reading.request(.lookup(Lookup(function: Self.function, key: key))) == .lookupReply(.miss))
            let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 10, value: value)
            #expect(try await writing.request(.store(store)) == .storeReply(stored: true))
            #expect(try await reading.request(.lookup(Lookup(function: Self.function, key: key))) == .lookupReply(.hit(value)))
            await writing.close()
            await reading.close()
        }

        /// A gateway whose TLS handshake fails: it serves, lookups fail open,
        /// the log says why once (rate-limited), and it never crashes.
        static func expectBackendDown(_ arguments: [String], logMentions expected: [String]) async throws {
            let gateway = try GatewayProcess(arguments: arguments)
            let connection = try await gateway.connect()
            let key = try CacheKey(hashing: "tls-down")
            // Enough lookups, over enough reconnect attempts (20 ms backoff
            // doubling to 500 ms), to show that the line is not repeated.
            let clock = ContinuousClock()
            let started = clock.now
            var lookups = 0
            while clock.now - started < .seconds(2) {
                #expect(try await connection.request(.lookup(Lookup(function: Self.function, key: key))) == .lookupReply(.missDoNotStore))
                lookups += 1
            }
            #expect(try await Self.stat(connection, "backendConnections") == 0)
            #expect(try await Self.stat(connection, "backendLookupFaults") >= UInt64(lookups))
            let log = gateway.log
            let lines = log.split(separator: "\n").filter { $0.contains("cannot connect to Redis") }
            #expect(lines.count == 1, "one line per 10 s for all the failed connects; the log:\n\(log)")
            for text in expected {
                #expect(lines.first?.contains(text) == true, "the line should say \(text): \(lines.first ?? "none")")
            }
            #expect(!log.contains("Fatal error"), "the gateway crashed:\n\(log)")
            await connection.close()
            #expect(gateway.stop() == 0)
        }

        @Test func aLookupAndAStoreGoThroughRediss() async throws {
            // Near-cache on: its invalidation listener connects over TLS too.
            let arguments = Self.tlsArguments(port: TestRedisTopologies.tlsPort)
            // With TLS, the default is SwiftNIO's loops; the second gateway
            // is on its own loops all the same, its TLS connections on SwiftNIO's.
            let first = try GatewayProcess(arguments: arguments)
            let second = try GatewayProcess(arguments: arguments + ["--event-loops", "gateway"])
            for gateway in [first, second] {
                // Logged before READY=1, read from its standard error in the background.
                _ = await RedisTestSupport.waitUntil { gateway.log.contains("listening") }
            }
            #expect(!first.log.contains("loops=gateway"), "\(first.log)")
            #expect(second.log.contains("loops=gateway"), "\(second.log)")
            try await Self.storeAndFind(writer: first, reader: second, label: "plain")
            let admin = try await second.connect(name: "admin")
            let filling = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                try await Self.stat(admin, "nearCacheFilling") == 1
            }
            #expect(filling, "the near-cache's tracking never completed over TLS")
            #expect(try await Self.stat(admin, "backendConnections") >= 2)
            await admin.close()
            // The server saw TLS clients only (it has no plain port): the gateways' connections.
            let clients = try TestRedisTopologies.redisCLI(TestRedisTopologies.tlsCLIArguments(port: TestRedisTopologies.tlsPort) + ["client", "list"])
            #expect(clients.contains("name=cache-gateway-invalidations"))
            #expect(first.stop() == 0)
            #expect(second.stop() == 0)
            // Redis answers a TLS close without close_notify: no news at shutdown.
            #expect(!first.log.contains("closing the Redis connection"), "\(first.log)")
        }

        @Test func mutualTLSWithAClientCertificateStoresAndFinds() async throws {
            let arguments = Self.tlsArguments(port: TestRedisTopologies.mutualTLSPort, clientCertificate: true, extra: ["--near-cache-size", "0"])
            let first = try GatewayProcess(arguments: arguments)
            let second = try GatewayProcess(arguments: arguments)
            try await Self.storeAndFind(writer: first, reader: second, label: "mutual")
            #expect(first.stop() == 0)
            #expect(second.stop() == 0)
        }

        @Test func withoutAClientCertificateAServerThatRequiresOneIsDown() async throws {
            try await Self.expectBackendDown(
                Self.tlsArguments(port: TestRedisTopologies.mutualTLSPort),
                logMentions: ["TLS handshake", "localhost:\(TestRedisTopologies.mutualTLSPort)"]
            )
        }

        @Test func aCertificateFromAnotherCALeavesTheBackendDown() async throws {
            try await Self.expectBackendDown(
                Self.tlsArguments(port: TestRedisTopologies.tlsPort, ca: "other-ca.crt"),
                logMentions: ["TLS handshake", "localhost:\(TestRedisTopologies.tlsPort)", "failed"]
            )
        }

        @Test func aCertificateForAnotherNameLeavesTheBackendDown() async throws {
            // The server's certificate is for wrong-name.example only.
            try await Self.expectBackendDown(
                Self.tlsArguments(port: TestRedisTopologies.wrongNameTLSPort),
                logMentions: ["TLS handshake", "for the name 'localhost'"]
            )
            // A server name that the (good) certificate does not carry.
            try await Self.expectBackendDown(
                Self.tlsArguments(port: TestRedisTopologies.tlsPort, extra: ["--redis-tls-server-name", "not-the-server.example"]),
                logMentions: ["TLS handshake", "for the name 'not-the-server.example'"]
            )
        }

        @Test func theServerNameOptionNamesTheCertificateToExpectAtAnAddress() async throws {
            // The certificate is for localhost and lists no IP address: reached by address, it does not verify…
            var arguments = Self.tlsArguments(port: TestRedisTopologies.tlsPort, extra: ["--near-cache-size", "0"])
            arguments[1] = "rediss://127.0.0.1:\(TestRedisTopologies.tlsPort)"
            try await Self.expectBackendDown(arguments, logMentions: ["TLS handshake", "for its IP address"])
            // …unless the name to expect is given.
            let named = arguments + ["--redis-tls-server-name", "localhost"]
            let first = try GatewayProcess(arguments: named)
            let second = try GatewayProcess(arguments: named)
            try await Self.storeAndFind(writer: first, reader: second, label: "named")
            #expect(first.stop() == 0)
            #expect(second.stop() == 0)
        }

        @Test func tlsOptionsWithoutATLSURLOrWithMissingFilesAreRefusedBeforeServing() throws {
            let cases: [([String], String)] = [
                (["--redis", "redis://localhost:\(TestRedisTopologies.tlsPort)", "--redis-tls-ca-file", TestRedisTopologies.tlsFile("ca.crt")], "need a TLS URL"),
                (["--redis", "rediss://localhost:\(TestRedisTopologies.tlsPort)", "--redis-tls-ca-file", "/nonexistent/ca.crt"], "/nonexistent/ca.crt"),
                (["--redis", "rediss://localhost:\(TestRedisTopologies.tlsPort)", "--redis-tls-cert-file", TestRedisTopologies.tlsFile("client.crt")], "needs its key"),
                (["--redis", "rediss://localhost:\(TestRedisTopologies.tlsPort)", "--redis-tls-server-name", "127.0.0.1"], "cannot be sent as SNI"),
            ]
            for (arguments, expected) in cases {
                let process = Process()
                process.executableURL = try GatewayProcess.executable
                process.arguments = ["serve", "--socket", NSTemporaryDirectory() + "cg-tls-refused-\(UUID().uuidString.prefix(8)).sock"] + arguments
                let (status, text) = try process.runToEnd()
                #expect(status != 0, "\(arguments) should be refused")
                #expect(text.contains(expected), "\(arguments): \(text)")
            }
        }
    }
}
