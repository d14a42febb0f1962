import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

@testable import Gateway

/// The test Redis Cluster that scripts/with-redis.sh starts once per run
/// (scripts/redis-cluster.sh: 3 masters, one replica each, node timeout 1 s).
enum TestCluster {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The seeds, `127.0.0.1:P1,...`; nil when the suite runs without the cluster.
    static var seeds: String? { environment["CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS"].flatMap { $0.isEmpty ? nil : $0 } }

    /// Whether the cluster is there; the tests that need it are skipped otherwise.
    static var isAvailable: Bool { seeds != nil }

    static let missing: Comment = "CACHE_GATEWAY_TEST_REDIS_CLUSTER_SEEDS is not set: run the tests through scripts/with-redis.sh (make test), which starts the test cluster"

    static var url: String {
        get throws {
            guard let seeds else { throw TestFailure("\(missing)") }
            return "redis+cluster://\(seeds)"
        }
    }

    /// The directory with each node's start-PORT.sh and pid file.
    static var directory: String {
        get throws {
            guard let directory = environment["CACHE_GATEWAY_TEST_REDIS_CLUSTER_DIR"] else { throw TestFailure("\(missing)") }
            return directory
        }
    }

    static var seedEndpoints: [RedisURL.Endpoint] {
        get throws { try RedisClusterURL(try url).seeds.map(\.endpoint) }
    }

    /// A plain (not cluster-aware) connection to one node.
    static func connect(_ endpoint: RedisURL.Endpoint) async throws -> RedisConnection {
        var configuration = RedisConnection.Configuration()
        configuration.connectTimeout = .seconds(2)
        return try await RedisTestSupport.connect(RedisURL(endpoint: endpoint), configuration: configuration)
    }

    /// Runs `body` with a connection to `endpoint`, closed after it.
    static func withConnection<Result>(_ endpoint: RedisURL.Endpoint, _ body: (RedisConnection) async throws -> Result) async throws -> Result {
        let connection = try await connect(endpoint)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    /// The slot map, from the first node that answers with every slot assigned.
    static func slotMap() async throws -> ClusterSlotMap {
        for endpoint in try seedEndpoints {
            guard let map = try? await withConnection(endpoint, { connection in
                try ClusterSlotMap.parseShards(try await connection.send(RedisCommand("CLUSTER", "SHARDS"), timeout: .seconds(2)).checked(), defaultHost: "127.0.0.1")
            }), map.assignedSlotCount == ClusterSlot.count else { continue }
            return map
        }
        throw TestFailure("no node of the test cluster answered with a full slot map")
    }

    /// Waits until every node that answers says `cluster_state:ok` and the map
    /// has three masters that each answer, each with a replica attached.
    static func waitUntilHealthy(timeout: Duration = .seconds(60)) async throws {
        let healthy = try await RedisTestSupport.waitUntil(timeout: timeout) {
            guard let map = try? await slotMap(), map.masters.count == 3 else { return false }
            for endpoint in try seedEndpoints {
                guard let info = try? await withConnection(endpoint, { try await $0.send(RedisCommand("CLUSTER", "INFO"), timeout: .seconds(2)).string }) else { return false }
                guard info.contains("cluster_state:ok"), info.contains("cluster_known_nodes:6") else { return false }
            }
            for master in map.masters {
                guard let replication = try? await withConnection(master, { try await $0.send(RedisCommand("INFO", "replication"), timeout: .seconds(2)).string }),
                    replication.contains("connected_slaves:1"), replication.contains("state=online")
                else { return false }
            }
            return true
        }
        guard healthy else { throw TestFailure("the test cluster did not become healthy again") }
    }

    /// Every key on `master` that matches `pattern` (SCAN, for the tests only).
    static func keys(on master: RedisURL.Endpoint, matching pattern: String) async throws -> [String] {
        try await withConnection(master) { connection in
            var cursor = "0"
            var keys: [String] = []
            repeat {
                let reply = try await connection.send(RedisCommand("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"), timeout: .seconds(5)).checked()
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { throw TestFailure("SCAN answered \(reply)") }
                cursor = next
                keys += (parts[1].array ?? []).compactMap(\.string)
            } while cursor != "0"
            return keys
        }
    }

    /// The node id of `endpoint`.
    static func nodeID(_ endpoint: RedisURL.Endpoint) async throws -> String {
        try await withConnection(endpoint) { try await $0.send(RedisCommand("CLUSTER", "MYID"), timeout: .seconds(2)).checked().string ?? "" }
    }

    /// Runs the executable at `path` with no arguments, its output to
    /// /dev/null, and returns its wait status. posix_spawn and waitpid rather
    /// than `Process`: the script starts a daemon, which must not be taken
    /// for the script by anything that watches descriptors.
    static func run(_ path: String) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
        defer { for argument in argv { free(argument) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw TestFailure("posix_spawn \(path): \(spawned)") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { throw TestFailure("waitpid: \(errno)") }
        }
        return status
    }

    /// The port of a TCP endpoint.
    static func port(_ endpoint: RedisURL.Endpoint) -> Int {
        if case .tcp(_, let port) = endpoint { return port }
        return 0
    }
}

/// Workers calling a gateway in a loop, as an application would: a lookup,
/// then a store of the value on a miss. Every value is `value-<index>`, so a
/// hit with anything else is a wrong value.
final class ClusterWorkers: Sendable {
    struct Counts: Sendable {
        var hits = 0
        var misses = 0
        var missesDoNotStore = 0
        var errors: [String] = []
        var wrongValues: [String] = []
    }

    let function: FunctionVersion
    let keyCount: Int
    private let counts = Mutex(Counts())
    private let stopped = Atomic<Bool>(false)

    init(function: FunctionVersion, keyCount: Int) {
        self.function = function
        self.keyCount = keyCount
    }

    static func key(_ index: Int) throws -> CacheKey { try CacheKey(hashing: "cluster-\(index)") }
    static func value(_ index: Int) -> String { "value-\(index)" }

    var snapshot: Counts { self.counts.withLock { $0 } }

    func stop() { self.stopped.store(true, ordering: .relaxed) }

    /// One worker's loop on `connection`, over the keys in turn from `offset`.
    func run(_ connection: GatewayConnection, offset: Int) async {
        var index = offset
        while !self.stopped.load(ordering: .relaxed) {
            index = (index + 1) % self.keyCount
            await self.call(connection, index)
        }
    }

    /// One call: a lookup, and a store on a miss; counted.
    func call(_ connection: GatewayConnection, _ index: Int) async {
        do {
            let key = try Self.key(index)
            let reply = try await connection.request(.lookup(Lookup(function: self.function, key: key)), timeout: .seconds(30))
            switch reply {
            case .lookupReply(.hit(let bytes)):
                let text = String(buffer: bytes)
                self.counts.withLock { counts in
                    counts.hits += 1
                    if text != Self.value(index) { counts.wrongValues.append("key \(index): \(text)") }
                }
            case .lookupReply(.miss):
                self.counts.withLock { $0.misses += 1 }
                let store = Store(function: self.function, key: key, ttlMilliseconds: 600_000, computeMicroseconds: 1_000, value: ByteBuffer(string: Self.value(index)))
                let stored = try await connection.request(.store(store), timeout: .seconds(30))
                if case .error(let error) = stored { self.counts.withLock { $0.errors.append("store: \(error)") } }
            case .lookupReply(.missDoNotStore):
                self.counts.withLock { $0.missesDoNotStore += 1 }
            default:
                self.counts.withLock { $0.errors.append("lookup: \(reply)") }
            }
        } catch {
            self.counts.withLock { $0.errors.append("\(error)") }
        }
    }
}
