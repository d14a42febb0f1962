import GatewayProtocol
import NIOCore
import Testing

@testable import Gateway

/// The slot map's parsing and updates, and the redirect decisions, without I/O.
@Suite struct ClusterSlotMapTests {
    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    static func node(port: Int, role: String, health: String = "online", endpoint: String = "127.0.0.1") -> RESPValue {
        .array([
            bulk("id"), bulk("id\(port)"), bulk("port"), .integer(Int64(port)), bulk("ip"), bulk("127.0.0.1"),
            bulk("endpoint"), bulk(endpoint), bulk("role"), bulk(role), bulk("replication-offset"), .integer(0),
            bulk("health"), bulk(health),
        ])
    }

    static func shard(_ ranges: [(Int, Int)], _ nodes: [RESPValue]) -> RESPValue {
        .array([
            bulk("slots"), .array(ranges.flatMap { [RESPValue.integer(Int64($0.0)), .integer(Int64($0.1))] }),
            bulk("nodes"), .array(nodes),
        ])
    }

    @Test func shardsGiveEachSlotItsMasterAndListEveryNode() throws {
        let reply = RESPValue.array([
            Self.shard([(0, 5460)], [Self.node(port: 7000, role: "master"), Self.node(port: 7003, role: "replica")]),
            Self.shard([(5461, 10922)], [Self.node(port: 7001, role: "master"), Self.node(port: 7004, role: "replica")]),
            Self.shard([(10923, 12000), (12001, 16383)], [Self.node(port: 7005, role: "replica"), Self.node(port: 7002, role: "master", endpoint: "?")]),
        ])
        let map = try ClusterSlotMap.parseShards(reply, defaultHost: "localhost")
        #expect(map.assignedSlotCount == 16384)
        #expect(map.master(for: ClusterSlot(0)) == .tcp(host: "127.0.0.1", port: 7000))
        #expect(map.master(for: ClusterSlot(5461)) == .tcp(host: "127.0.0.1", port: 7001))
        #expect(map.master(for: ClusterSlot(16383)) == .tcp(host: "127.0.0.1", port: 7002), "an unknown endpoint falls back to the ip")
        #expect(map.masters.count == 3)
        #expect(map.nodes.count == 6)
        #expect(map.slotRanges(of: .tcp(host: "127.0.0.1", port: 7002)) == [10923...16383])
    }

    @Test func aFailedMasterGivesWayToTheOnlineOneAfterAFailover() throws {
        let reply = RESPValue.array([
            Self.shard([(0, 16383)], [Self.node(port: 7000, role: "master", health: "fail"), Self.node(port: 7003, role: "master")]),
        ])
        let map = try ClusterSlotMap.parseShards(reply, defaultHost: "h")
        #expect(map.master(for: ClusterSlot(42)) == .tcp(host: "127.0.0.1", port: 7003))
    }

    @Test func slotsRepliesFromOlderServersParseToo() throws {
        let reply = RESPValue.array([
            .array([.integer(0), .integer(8191), .array([Self.bulk("10.0.0.1"), .integer(7000), Self.bulk("a")]), .array([Self.bulk("10.0.0.2"), .integer(7001), Self.bulk("b")])]),
            .array([.integer(8192), .integer(16383), .array([Self.bulk(""), .integer(7002), Self.bulk("c")])]),
        ])
        let map = try ClusterSlotMap.parseSlots(reply, defaultHost: "seed")
        #expect(map.master(for: ClusterSlot(100)) == .tcp(host: "10.0.0.1", port: 7000))
        #expect(map.master(for: ClusterSlot(9000)) == .tcp(host: "seed", port: 7002))
        #expect(map.nodes.count == 3)
    }

    @Test func malformedTopologiesAreTypedErrors() {
        #expect(throws: GatewayError.self) { try ClusterSlotMap.parseShards(.integer(1), defaultHost: "h") }
        #expect(throws: GatewayError.self) { try ClusterSlotMap.parseShards(.array([.array([Self.bulk("slots")])]), defaultHost: "h") }
        #expect(throws: GatewayError.self) {
            try ClusterSlotMap.parseShards(.array([Self.shard([(0, 20000)], [Self.node(port: 7000, role: "master")])]), defaultHost: "h")
        }
        #expect(throws: GatewayError.self) { try ClusterSlotMap.parseSlots(.array([.array([.integer(5), .integer(1)])]), defaultHost: "h") }
    }

    @Test func movedCorrectsOneSlotAndLearnsNewMasters() {
        var map = ClusterSlotMap()
        #expect(map.master(for: ClusterSlot(7)) == nil)
        map.move(ClusterSlot(7), to: .tcp(host: "a", port: 1))
        map.move(ClusterSlot(8), to: .tcp(host: "b", port: 2))
        map.move(ClusterSlot(7), to: .tcp(host: "b", port: 2))
        #expect(map.master(for: ClusterSlot(7)) == .tcp(host: "b", port: 2))
        #expect(map.assignedSlotCount == 2)
        #expect(map.masters.count == 2)
    }

    @Test func redirectsAreReadFromErrorReplies() {
        #expect(ClusterRedirect(errorMessage: "MOVED 3999 127.0.0.1:6381", senderHost: "x") == .moved(slot: ClusterSlot(3999), endpoint: .tcp(host: "127.0.0.1", port: 6381)))
        #expect(ClusterRedirect(errorMessage: "ASK 3999 10.0.0.2:7001", senderHost: "x") == .ask(slot: ClusterSlot(3999), endpoint: .tcp(host: "10.0.0.2", port: 7001)))
        #expect(ClusterRedirect(errorMessage: "MOVED 1 :7001", senderHost: "seed") == .moved(slot: ClusterSlot(1), endpoint: .tcp(host: "seed", port: 7001)))
        #expect(ClusterRedirect(errorMessage: "MOVED 1 ::1:7001", senderHost: "seed") == .moved(slot: ClusterSlot(1), endpoint: .tcp(host: "::1", port: 7001)))
        #expect(ClusterRedirect(errorMessage: "TRYAGAIN Multiple keys request during rehashing of slot", senderHost: "x") == .tryAgain)
        #expect(ClusterRedirect(errorMessage: "CLUSTERDOWN The cluster is down", senderHost: "x") == .clusterDown)
        #expect(ClusterRedirect(errorMessage: "ERR unknown command", senderHost: "x") == nil)
        #expect(ClusterRedirect(errorMessage: "MOVED 99999 a:1", senderHost: "x") == nil)
        #expect(ClusterRedirect(errorMessage: "MOVED 1 a:0", senderHost: "x") == nil)
        #expect(ClusterRedirect(errorMessage: "MOVED", senderHost: "x") == nil)
    }

    @Test func thePolicyFollowsRedirectsWithinTheirBudgetAndThenGivesUp() {
        let policy = ClusterRedirectPolicy(maximumRedirects: 3, retryDelay: .milliseconds(2))
        let target = RedisURL.Endpoint.tcp(host: "b", port: 2)
        #expect(policy.decide(.moved(slot: ClusterSlot(1), endpoint: target), redirectsSoFar: 0, remaining: .milliseconds(5)) == .resend(to: target, asking: false, updatesMap: true))
        #expect(policy.decide(.ask(slot: ClusterSlot(1), endpoint: target), redirectsSoFar: 2, remaining: .milliseconds(5)) == .resend(to: target, asking: true, updatesMap: false))
        #expect(policy.decide(.tryAgain, redirectsSoFar: 0, remaining: .milliseconds(5)) == .retry(after: .milliseconds(2), refreshesMap: false))
        #expect(policy.decide(.clusterDown, redirectsSoFar: 0, remaining: .milliseconds(5)) == .retry(after: .milliseconds(2), refreshesMap: true))
        // Out of time (a lookup's 5 ms spent), or out of redirects: the error stays and the lookup fails open.
        #expect(policy.decide(.tryAgain, redirectsSoFar: 0, remaining: .milliseconds(1)) == .giveUp)
        #expect(policy.decide(.moved(slot: ClusterSlot(1), endpoint: target), redirectsSoFar: 0, remaining: .zero) == .giveUp)
        #expect(policy.decide(.moved(slot: ClusterSlot(1), endpoint: target), redirectsSoFar: 3, remaining: .seconds(1)) == .giveUp)
    }

    @Test func clusterURLsTakeSeveralSeedsAndSharedCredentials() throws {
        let url = try RedisClusterURL("redis+cluster://app:s%40cret@10.0.0.1:7000,[::1]:7001,host")
        #expect(url.seeds.map(\.endpoint) == [.tcp(host: "10.0.0.1", port: 7000), .tcp(host: "::1", port: 7001), .tcp(host: "host", port: 6379)])
        #expect(url.seeds.allSatisfy { $0.username == "app" && $0.password == "s@cret" })
        let node = url.nodeURL(.tcp(host: "10.0.0.9", port: 7009))
        #expect(node.endpoint == .tcp(host: "10.0.0.9", port: 7009))
        #expect(node.username == "app" && node.password == "s@cret")
        #expect(!"\(url)".contains("cret"))
        #expect(try RedisClusterURL("REDIS+CLUSTER://h:1/0").seeds.count == 1)
        #expect(RedisClusterURL.matches("redis+cluster://h:1"))
        #expect(!RedisClusterURL.matches("redis://h:1"))
        for bad in ["redis+cluster://", "redis+cluster://a:1,,b:2", "redis+cluster://a:1/2", "redis+cluster://a:99999", "redis+cluster://user@a:1", "redis://a:1"] {
            #expect(throws: GatewayError.self, "\(bad)") { try RedisClusterURL(bad) }
        }
    }

    @Test func theTLSFormMakesEveryNodeATLSConnection() throws {
        let url = try RedisClusterURL("rediss+cluster://:pw@a:7000,b:7001")
        #expect(RedisClusterURL.matches("rediss+cluster://a:7000"))
        #expect(url.usesTLS)
        #expect(url.seeds.allSatisfy { $0.tls != nil && $0.password == "pw" })
        #expect(url.nodeURL(.tcp(host: "c", port: 7002)).tls != nil)
        #expect("\(url)".hasPrefix("rediss+cluster://"))
        #expect(!"\(url)".contains("pw"))
        #expect(try !RedisClusterURL("redis+cluster://a:7000").usesTLS)
    }

    @Test func overTLSTheNodesTLSPortsAreUsed() throws {
        let node = RESPValue.array([
            Self.bulk("id"), Self.bulk("a"), Self.bulk("port"), .integer(7000), Self.bulk("tls-port"), .integer(17000),
            Self.bulk("ip"), Self.bulk("127.0.0.1"), Self.bulk("role"), Self.bulk("master"), Self.bulk("health"), Self.bulk("online"),
        ])
        let reply = RESPValue.array([Self.shard([(0, 16383)], [node])])
        #expect(try ClusterSlotMap.parseShards(reply, defaultHost: "h", usesTLSPort: true).master(for: ClusterSlot(5)) == .tcp(host: "127.0.0.1", port: 17000))
        #expect(try ClusterSlotMap.parseShards(reply, defaultHost: "h").master(for: ClusterSlot(5)) == .tcp(host: "127.0.0.1", port: 7000))
    }
}
