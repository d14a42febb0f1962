import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// The near-cache, with two real gateway processes (A and B) on one
    /// redis-server of the suite's own: B serves what it read from its
    /// near-cache, and every way an entry can change in Redis reaches it.
    ///
    /// Each change is followed by waiting for B to receive the invalidation
    /// (its `nearCacheInvalidationMessages` or `nearCacheFlushes` grows), then
    /// by B's next lookup, which must not return the old value: the product's
    /// promise is "no longer than an invalidation message takes", and the
    /// waiting is bounded only by the test's overall timeout.
    @Suite(.serialized) struct GatewayNearCacheTests {
        static let probe = NearCacheProbe(function: Self.function, keyPrefix: "near")
        static let function = FunctionVersion(function: "Tests.near(x:)", version: "v1")

        /// A private redis-server and two gateways on it.
        final class Pair: GatewayPairConnections {
            let redis: PrivateRedisServer
            let a: GatewayProcess
            let b: GatewayProcess
            let connectionA: GatewayConnection
            let connectionB: GatewayConnection

            /// `loops` names each gateway's `--event-loops`, A's then B's.
            init(nearCacheSize: Int? = nil, loops: (String, String) = ("gateway", "gateway")) async throws {
                self.redis = try PrivateRedisServer()
                try await self.redis.start()
                var arguments = ["--redis", "unix://\(self.redis.socketPath)", "--namespace", "near", "--lookup-timeout-ms", "5000", "--write-timeout-ms", "10000"]
                if let nearCacheSize { arguments += ["--near-cache-size", "\(nearCacheSize)"] }
                self.a = try GatewayProcess(arguments: arguments + ["--event-loops", loops.0])
                self.b = try GatewayProcess(arguments: arguments + ["--event-loops", loops.1])
                self.connectionA = try await self.a.connect(name: "A")
                self.connectionB = try await self.b.connect(name: "B")
                try await NearCacheProbe.waitUntilFilling(self.connectionA, timeout: .seconds(30))
                try await NearCacheProbe.waitUntilFilling(self.connectionB, timeout: .seconds(30))
            }

            func stop() {
                _ = self.a.stop()
                _ = self.b.stop()
                self.redis.stop()
            }

            func redisCLI(_ arguments: [String]) throws -> String {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = ["redis-cli", "-s", self.redis.socketPath, "--raw"] + arguments
                let (status, text) = try process.runToEnd()
                guard status == 0 else { throw TestFailure("redis-cli \(arguments) exited \(status): \(text)") }
                return text.trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }

        /// Each gateway's event loops: their own and SwiftNIO's serve alike,
        /// and either hears of the other's changes.
        @Test(arguments: [("gateway", "gateway"), ("swiftnio", "gateway"), ("gateway", "swiftnio")])
        func bServesWhatItReadFromItsNearCacheAndEveryChangeInRedisRemovesIt(loops: (String, String)) async throws {
            let pair = try await Pair(loops: loops)
            defer { pair.stop() }

            // invalidate through A.
            try await Self.probe.holdInB(pair, 1, "one")
            try await Self.probe.change(pair) {
                let reply = try await pair.connectionA.request(.invalidate(Invalidate(function: Self.function.function, version: Self.function.version, key: try Self.probe.key(1))))
                #expect(reply == .invalidateReply(deleted: 1))
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .miss)

            // A purge of the version through A (every entry of v1).
            try await Self.probe.holdInB(pair, 2, "two")
            try await Self.probe.change(pair) {
                let reply = try await pair.connectionA.request(.invalidate(Invalidate(function: Self.function.function, version: Self.function.version)))
                #expect(reply == .invalidateReply(deleted: 1))
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 2) == .miss)

            // DEL typed into redis-cli.
            try await Self.probe.holdInB(pair, 3, "three")
            let entries = try pair.redisCLI(["--scan", "--pattern", "cg:near:e:*"]).split(separator: "\n").map(String.init)
            #expect(entries.count == 1, "\(entries)")
            try await Self.probe.change(pair) {
                let deleted = try pair.redisCLI(["DEL", entries.first ?? ""])
                #expect(deleted == "1")
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 3) == .miss)

            // FLUSHDB.
            try await Self.probe.holdInB(pair, 4, "four")
            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                let flushed = try pair.redisCLI(["FLUSHDB"])
                #expect(flushed == "OK")
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 4) == .miss)

            // A new value stored through A under the same key: B returns the new bytes.
            try await Self.probe.holdInB(pair, 5, "old five")
            try await Self.probe.change(pair) {
                try await Self.probe.store(pair.connectionA, 5, "new five")
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 5) == .hit(ByteBuffer(string: "new five")))

            // Near hits are hits: the functions output and the saved compute time count them.
            guard case .functionsReply(let functions) = try await pair.connectionB.request(.functions) else { throw TestFailure("no functions reply") }
            let near = try #require(functions.first { $0.function.hasSuffix("near(x:)") })
            #expect(near.hits >= 10)
            #expect(try await NearCacheProbe.stat(pair.connectionB, "computeSavedMicroseconds") >= 10 * 1_000)
        }

        @Test func whatAGatewayStoresItServesFromItsNearCacheAndStillHearsOfChanges() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            try await Self.probe.store(pair.connectionB, 1, "stored by B")
            let nearHits = try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits")
            // No read from Redis first: the store filled B's near-cache.
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .hit(ByteBuffer(string: "stored by B")))
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") == nearHits + 1)
            // The store left the key tracked for B: A's overwrite reaches it.
            try await Self.probe.change(pair) { try await Self.probe.store(pair.connectionA, 1, "overwritten by A") }
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .hit(ByteBuffer(string: "overwritten by A")))
            // And so does a delete typed into redis-cli after B stored again.
            try await Self.probe.store(pair.connectionB, 2, "stored by B again")
            #expect(try await Self.probe.lookup(pair.connectionB, 2) == .hit(ByteBuffer(string: "stored by B again")))
            try await Self.probe.change(pair) {
                let deleted = try pair.redisCLI(["DEL", try Self.entryKey(pair, 2)])
                #expect(deleted == "1")
            }
            #expect(try await Self.probe.lookup(pair.connectionB, 2) == .miss)
        }

        /// The Redis key of entry `index`, found in Redis (the README's layout).
        static func entryKey(_ pair: Pair, _ index: Int) throws -> String {
            let suffix = ":\(Self.function.version):\(try Self.probe.key(index).digest.hexString)"
            let keys = try pair.redisCLI(["--scan", "--pattern", "cg:near:e:*"]).split(separator: "\n").map(String.init)
            guard let key = keys.first(where: { $0.hasSuffix(suffix) }) else { throw TestFailure("no entry \(index) in \(keys)") }
            return key
        }

        @Test func anEntryIsNotServedFromTheNearCachePastItsTTL() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            let ttl = Duration.milliseconds(400)
            try await Self.probe.store(pair.connectionA, 1, "short-lived", ttlMilliseconds: 400)
            let stored = ContinuousClock.now
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .hit(ByteBuffer(string: "short-lived")))
            let nearHits = try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits")
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .hit(ByteBuffer(string: "short-lived")))
            guard ContinuousClock.now - stored < ttl else {
                // The machine was too slow to see the entry before it expired;
                // what follows still holds.
                Issue.record("the lookups took longer than the TTL")
                return
            }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") == nearHits + 1)
            // The entry expires in Redis and in B's near-cache at the same moment.
            try await Task.sleep(until: stored + ttl + .milliseconds(50))
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .miss)
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") == nearHits + 1)
        }

        @Test func killingTheTrackingConnectionFlushesBAndNothingStaleIsServed() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            try await Self.probe.holdInB(pair, 1, "before the kill")
            let trackingID = try await NearCacheProbe.stat(pair.connectionB, "nearCacheTrackingClientID")
            #expect(trackingID > 0)
            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                let killed = try pair.redisCLI(["CLIENT", "KILL", "ID", "\(trackingID)"])
                #expect(killed == "1")
            }
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") == 0)
            // Changed while B had no tracking: B reads the new value.
            try await Self.probe.store(pair.connectionA, 1, "after the kill")
            #expect(try await Self.probe.lookup(pair.connectionB, 1) == .hit(ByteBuffer(string: "after the kill")))
            // Tracking comes back with a new listener, and the near-cache with it.
            try await NearCacheProbe.waitUntilFilling(pair.connectionB, timeout: .seconds(30))
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheTrackingClientID") != trackingID)
            try await Self.probe.holdInB(pair, 2, "tracked again")
            try await Self.probe.change(pair) { try await Self.probe.store(pair.connectionA, 2, "changed again") }
            #expect(try await Self.probe.lookup(pair.connectionB, 2) == .hit(ByteBuffer(string: "changed again")))
        }

        @Test func restartingRedisFlushesBAndNothingStaleIsServed() async throws {
            let pair = try await Pair()
            defer { pair.stop() }
            try await Self.probe.holdInB(pair, 1, "before the restart")
            try await Self.probe.change(pair, signal: "nearCacheFlushes") {
                pair.redis.kill()
                try await pair.redis.start()
            }
            // The restarted server is empty: B must not answer from memory.
            let answered = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                try await Self.probe.lookup(pair.connectionB, 1) == .miss
            }
            #expect(answered)
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") == 0)
            try await NearCacheProbe.waitUntilFilling(pair.connectionA, timeout: .seconds(30))
            try await NearCacheProbe.waitUntilFilling(pair.connectionB, timeout: .seconds(30))
            // B's pool connections come back each on its own backoff, and one
            // that comes back after filling resumed pauses it until its
            // tracking is on: so B's refill is awaited, not expected at once.
            try await Self.probe.store(pair.connectionA, 1, "after the restart")
            let refilled = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                let nearHits = try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits")
                let reply = try await Self.probe.lookup(pair.connectionB, 1)
                #expect(reply == .hit(ByteBuffer(string: "after the restart")), "never the value from before the restart")
                return try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") > nearHits
            }
            #expect(refilled, "B serves from its near-cache again after the restart")
        }

        @Test func theNearCacheStaysWithinItsBoundUnderAStreamOfDistinctKeys() async throws {
            let bound = 256 * 1024
            let pair = try await Pair(nearCacheSize: bound)
            defer { pair.stop() }
            let value = String(repeating: "x", count: 1024)
            for index in 0..<1_000 {
                try await Self.probe.store(pair.connectionA, index, value)
                #expect(try await Self.probe.lookup(pair.connectionB, index) == .hit(ByteBuffer(string: value)))
                if index % 100 == 99 {
                    let bytes = try await NearCacheProbe.stat(pair.connectionB, "nearCacheBytes")
                    #expect(bytes <= UInt64(bound))
                    #expect(bytes > UInt64(bound / 2), "the near-cache holds entries up to its bound")
                }
            }
            // The newest entries are the ones held.
            let nearHits = try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits")
            #expect(try await Self.probe.lookup(pair.connectionB, 999) == .hit(ByteBuffer(string: value)))
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheHits") == nearHits + 1)
            #expect(try await NearCacheProbe.stat(pair.connectionB, "nearCacheEntries") < 256)
        }

        /// A negative size, or an environment value that is not a number of
        /// bytes, stops the gateway with a clear error before it serves.
        @Test(arguments: [
            (["--near-cache-size=-1"], [String: String](), "--near-cache-size cannot be negative"),
            ([], ["CACHE_GATEWAY_NEAR_CACHE_SIZE": "64MB"], "CACHE_GATEWAY_NEAR_CACHE_SIZE is not a number of bytes: 64MB"),
        ])
        func aBadNearCacheSizeIsRefusedClearly(arguments: [String], environment: [String: String], message: String) throws {
            let (status, text, leftSocketFile) = try GatewayProcess.runToEnd(arguments: ["--redis", "unix://\(try TestRedis.socketPath)"] + arguments, environment: environment)
            #expect(status != 0)
            #expect(text.contains(message), "\(text)")
            #expect(!leftSocketFile)
        }

        @Test func zeroTurnsTheNearCacheOff() async throws {
            let pair = try await Pair(nearCacheSize: nil)
            defer { pair.stop() }
            let off = try GatewayProcess(arguments: ["--redis", "unix://\(pair.redis.socketPath)", "--namespace", "near", "--near-cache-size", "0"])
            defer { _ = off.stop() }
            let connection = try await off.connect(name: "off")
            try await Self.probe.store(pair.connectionA, 1, "one")
            for _ in 0..<3 { #expect(try await Self.probe.lookup(connection, 1) == .hit(ByteBuffer(string: "one"))) }
            #expect(try await NearCacheProbe.stat(connection, "nearCacheHits") == 0)
            #expect(try await NearCacheProbe.stat(connection, "nearCacheFilling") == 0)
        }
    }
}
