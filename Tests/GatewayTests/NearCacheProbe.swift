import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

/// Two gateways, A and B, on the same Redis topology.
protocol GatewayPairConnections {
    var connectionA: GatewayConnection { get }
    var connectionB: GatewayConnection { get }
}

/// What the near-cache integration tests (one server, Cluster) do to a pair
/// of gateways: entries of one function, keyed by an index, stored and read
/// through either gateway, with B's counters read from its stats.
struct NearCacheProbe: Sendable {
    let function: FunctionVersion
    let keyPrefix: String

    func key(_ index: Int) throws -> CacheKey { try CacheKey(hashing: "\(self.keyPrefix)-\(index)") }

    /// The gateway's stats counter `name` (0 when absent).
    static func stat(_ connection: GatewayConnection, _ name: String) async throws -> UInt64 {
        guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
        return stats[count: name] ?? 0
    }

    func store(_ connection: GatewayConnection, _ index: Int, _ value: String, ttlMilliseconds: UInt64 = 60_000) async throws {
        let store = Store(function: self.function, key: try self.key(index), ttlMilliseconds: ttlMilliseconds, computeMicroseconds: 1_000, value: ByteBuffer(string: value))
        #expect(try await connection.request(.store(store)) == .storeReply(stored: true))
    }

    func lookup(_ connection: GatewayConnection, _ index: Int) async throws -> LookupReply {
        guard case .lookupReply(let reply) = try await connection.request(.lookup(Lookup(function: self.function, key: try self.key(index)))) else {
            throw TestFailure("no lookup reply")
        }
        return reply
    }

    /// Stores `value` through A, reads it through B from Redis, then from B's near-cache.
    func holdInB(_ pair: some GatewayPairConnections, _ index: Int, _ value: String) async throws {
        try await self.store(pair.connectionA, index, value)
        let nearHits = try await Self.stat(pair.connectionB, "nearCacheHits")
        #expect(try await self.lookup(pair.connectionB, index) == .hit(ByteBuffer(string: value)))
        #expect(try await Self.stat(pair.connectionB, "nearCacheHits") == nearHits, "the first read goes to Redis")
        #expect(try await self.lookup(pair.connectionB, index) == .hit(ByteBuffer(string: value)))
        #expect(try await Self.stat(pair.connectionB, "nearCacheHits") == nearHits + 1, "the second is served from B's near-cache")
    }

    /// Stores `value` through `connection`, again while the gateway answers
    /// that it dropped the store: during and just after a failover a store
    /// may fail open (the gateway's promise is to serve nothing stale, not
    /// to keep every store), and the tests need the value in Redis.
    func storeEventually(_ connection: GatewayConnection, _ index: Int, _ value: String) async throws {
        let store = Store(function: self.function, key: try self.key(index), ttlMilliseconds: 60_000, computeMicroseconds: 1_000, value: ByteBuffer(string: value))
        let stored = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
            try await connection.request(.store(store)) == .storeReply(stored: true)
        }
        #expect(stored, "the gateway kept dropping the store")
    }

    /// `holdInB` for a cluster that may still be settling after an earlier
    /// test's failover (B's near-cache is flushed by each map change it
    /// sees): stores `value` through A, then reads it through B until a read
    /// is served from B's near-cache. Every read must return `value`.
    func waitUntilHeldInB(_ pair: some GatewayPairConnections, _ index: Int, _ value: String) async throws {
        try await self.storeEventually(pair.connectionA, index, value)
        let held = try await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
            let nearHits = try await Self.stat(pair.connectionB, "nearCacheHits")
            #expect(try await self.lookup(pair.connectionB, index) == .hit(ByteBuffer(string: value)))
            return try await Self.stat(pair.connectionB, "nearCacheHits") > nearHits
        }
        #expect(held, "B never served the entry from its near-cache")
    }

    /// Runs `change`, then waits until B's counter `signal` grows past its value before it.
    func change(_ pair: some GatewayPairConnections, signal: String = "nearCacheInvalidationMessages", _ change: () async throws -> Void) async throws {
        let before = try await Self.stat(pair.connectionB, signal)
        try await change()
        let arrived = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
            try await Self.stat(pair.connectionB, signal) > before
        }
        #expect(arrived, "B did not hear of the change (\(signal))")
    }

    /// Waits until the gateway's near-cache fills (tracking is complete everywhere).
    static func waitUntilFilling(_ connection: GatewayConnection, timeout: Duration) async throws {
        let filling = try await RedisTestSupport.waitUntil(timeout: timeout) {
            try await Self.stat(connection, "nearCacheFilling") == 1
        }
        guard filling else { throw TestFailure("the near-cache did not start filling") }
    }
}
