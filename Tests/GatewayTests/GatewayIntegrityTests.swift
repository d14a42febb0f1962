import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Runs redis-cli against the test run's redis-server and returns what it
/// printed (raw output, one reply element per line).
func redisCLI(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["redis-cli", "-s", try TestRedis.socketPath, "--raw"] + arguments
    let (status, text) = try process.runToEnd()
    guard status == 0 else { throw TestFailure("redis-cli \(arguments) exited \(status): \(text)") }
    return text.trimmingCharacters(in: .whitespacesAndNewlines)
}

extension IntegrationTests {
    /// Signed entries in the test run's redis-server, tampered with through
    /// redis-cli, as whoever can write to Redis could; and Redis ACL users.
    @Suite(.serialized) struct GatewayIntegrityTests {
        static let function = FunctionVersion(function: "Tests.invoice(for:)", version: "v1")

        static func store(_ argument: Int, _ value: String) throws -> GatewayMessage.Body {
            .store(Store(function: function, key: try CacheKey(hashing: argument), ttlMilliseconds: 60_000, computeMicroseconds: 1_000, value: ByteBuffer(string: value)))
        }

        static func lookup(_ argument: Int) throws -> GatewayMessage.Body {
            .lookup(Lookup(function: function, key: try CacheKey(hashing: argument)))
        }

        static func stats(_ connection: GatewayConnection) async throws -> Stats {
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            return stats
        }

        /// A key file of 64 hex digits and a newline, as `openssl rand -hex 32` writes.
        static func keyFile(in directory: URL) throws -> String {
            let path = directory.appendingPathComponent("hmac.key").path
            let key = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined() + "\n"
            #expect(FileManager.default.createFile(atPath: path, contents: Data(key.utf8), attributes: [.posixPermissions: 0o600]))
            return path
        }

        static func redisArguments(namespace: String) throws -> [String] {
            ["--redis", "unix://\(try TestRedis.socketPath)", "--namespace", namespace, "--lookup-timeout-ms", "5000", "--write-timeout-ms", "10000"]
        }

        @Test func aValueTamperedWithInRedisIsNotServedIsDeletedAndIsCounted() async throws {
            let namespace = "hmac\(UInt32.random(in: 0...UInt32.max))"
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cg-key-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keyPath = try Self.keyFile(in: directory)
            let gateway = try GatewayProcess(arguments: try Self.redisArguments(namespace: namespace) + ["--hmac-key-file", keyPath])
            let connection = try await gateway.connect()

            let value = "the true total: 1200 EUR"
            #expect(try await connection.request(try Self.store(1, value)) == .storeReply(stored: true))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(ByteBuffer(string: value))))

            // The entry, where the README's layout says, in the signed namespace.
            let keys = try redisCLI(["--scan", "--pattern", "cg:\(namespace)+hmac:e:*"]).split(separator: "\n").map(String.init)
            #expect(keys.count == 1, "\(keys)")
            let entry = try #require(keys.first)
            #expect(entry.hasSuffix(":v1:\(try CacheKey(hashing: 1).digest.hexString)"))
            // Entry bytes: format (1), compute time (8), expiry (8), HMAC (32), then the value.
            // Change "1200" into "9200", keeping the TTL.
            let offset = 1 + 8 + 8 + 32 + Array(value.utf8).firstIndex(of: UInt8(ascii: "1"))!
            #expect(try redisCLI(["SETRANGE", entry, "\(offset)", "9"]) == "\(1 + 8 + 8 + 32 + value.utf8.count)")
            #expect(try redisCLI(["GETRANGE", entry, "\(1 + 8 + 8 + 32)", "-1"]) == "the true total: 9200 EUR")

            // The worker is not served the forged bytes: a miss (compute and store).
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.miss))
            // The entry was deleted before the answer, and the failure counted.
            #expect(try redisCLI(["EXISTS", entry]) == "0")
            var stats = try await Self.stats(connection)
            #expect(stats[count: "integrityFailures"] == 1)
            #expect(gateway.log.contains("failed its HMAC check"), "\(gateway.log)")

            // The worker's recomputed value is stored and served again.
            #expect(try await connection.request(try Self.store(1, value)) == .storeReply(stored: true))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(ByteBuffer(string: value))))

            // A valid entry copied (bytes untouched) under another key does not verify.
            #expect(try await connection.request(try Self.store(2, "the total for customer 2")) == .storeReply(stored: true))
            let second = entry.replacingOccurrences(of: try CacheKey(hashing: 1).digest.hexString, with: try CacheKey(hashing: 2).digest.hexString)
            let third = entry.replacingOccurrences(of: try CacheKey(hashing: 1).digest.hexString, with: try CacheKey(hashing: 3).digest.hexString)
            #expect(try redisCLI(["COPY", second, third]) == "1")
            #expect(try await connection.request(try Self.lookup(3)) == .lookupReply(.miss))
            #expect(try await connection.request(try Self.lookup(2)) == .lookupReply(.hit(ByteBuffer(string: "the total for customer 2"))))
            stats = try await Self.stats(connection)
            #expect(stats[count: "integrityFailures"] == 2)
            #expect(stats[count: "corruptEntries"] == 0, "the entries were in the store's format: only the HMAC caught them")

            // A gateway without the key, on the same namespace, is never served signed values.
            let unsigned = try GatewayProcess(arguments: try Self.redisArguments(namespace: namespace))
            #expect(try await unsigned.connect().request(try Self.lookup(2)) == .lookupReply(.miss))
            #expect(!gateway.log.contains(try String(contentsOfFile: keyPath, encoding: .utf8).trimmingCharacters(in: .newlines)), "the key is never logged")
            #expect(unsigned.stop() == 0)
            #expect(gateway.stop() == 0)
        }

        @Test func aKeyFileThatIsTooShortStopsTheGatewayWithAClearError() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cg-key-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let keyPath = directory.appendingPathComponent("short.key").path
            #expect(FileManager.default.createFile(atPath: keyPath, contents: Data("too-short-a-secret\n".utf8), attributes: [.posixPermissions: 0o600]))

            let process = Process()
            process.executableURL = try GatewayProcess.executable
            process.arguments = ["serve", "--socket", directory.appendingPathComponent("g.sock").path]
            process.environment = ProcessInfo.processInfo.environment.merging(["CACHE_GATEWAY_HMAC_KEY_FILE": keyPath]) { _, new in new }
            let (status, text) = try process.runToEnd()
            #expect(status != 0)
            #expect(text.contains("holds 18 bytes; a key needs at least 32"), "\(text)")
            #expect(!text.contains("too-short-a-secret"))
        }

        @Test func theGatewayAuthenticatesAsARedisACLUserFromTheURL() async throws {
            let namespace = "acl\(UInt32.random(in: 0...UInt32.max))"
            let user = "cg-gateway-\(UUID().uuidString.prefix(8))"
            let password = "gw p@ss:w/rd \(UUID().uuidString.prefix(8))"
            let encoded = try #require(password.addingPercentEncoding(withAllowedCharacters: .alphanumerics))
            // The user may touch its namespace's keys only.
            #expect(try redisCLI(["ACL", "SETUSER", user, "on", ">\(password)", "~cg:\(namespace):*", "+@all"]) == "OK")
            defer { _ = try? redisCLI(["ACL", "DELUSER", user]) }
            let socket = try TestRedis.socketPath
            let timeouts = ["--namespace", namespace, "--lookup-timeout-ms", "5000", "--write-timeout-ms", "10000"]

            let gateway = try GatewayProcess(arguments: ["--redis", "unix://\(user):\(encoded)@\(socket)"] + timeouts)
            let connection = try await gateway.connect()
            // Served: the entry went to Redis, through connections of that user.
            #expect(try await connection.request(try Self.store(1, "stored as \(user)")) == .storeReply(stored: true))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(ByteBuffer(string: "stored as \(user)"))))
            #expect(try redisCLI(["--scan", "--pattern", "cg:\(namespace):e:*"]).split(separator: "\n").count == 1)
            let clients = try redisCLI(["CLIENT", "LIST"]).split(separator: "\n").filter { $0.contains("name=cache-gateway") && $0.contains("user=\(user)") }
            #expect(!clients.isEmpty)
            #expect(try await Self.stats(connection).values["backendHealth"] == .text("up"))

            // The wrong password: Redis refuses AUTH, the gateway says so, stays
            // down and fails open; the password appears nowhere in its log.
            let wrongPassword = "not-the-\(UUID().uuidString.prefix(8))"
            let refused = try GatewayProcess(arguments: ["--redis", "unix://\(user):\(wrongPassword)@\(socket)"] + timeouts)
            let refusedConnection = try await refused.connect()
            let reported = await RedisTestSupport.waitUntil { refused.log.contains("WRONGPASS") }
            #expect(reported, "\(refused.log)")
            #expect(try await Self.stats(refusedConnection).values["backendHealth"] == .text("down"))
            #expect(try await refusedConnection.request(try Self.lookup(1)) == .lookupReply(.missDoNotStore))
            #expect(try await refusedConnection.request(try Self.store(2, "dropped")) == .storeReply(stored: false))
            #expect(!refused.log.contains(wrongPassword), "\(refused.log)")
            #expect(!gateway.log.contains(password) && !gateway.log.contains(encoded))
            #expect(refused.stop() == 0)
            #expect(gateway.stop() == 0)
        }
    }
}
