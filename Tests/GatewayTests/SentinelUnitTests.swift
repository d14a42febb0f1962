import GatewayProtocol
import NIOCore
import Testing

@testable import Gateway

@Suite("Sentinel: URLs, replies and the master's state, without I/O")
struct SentinelUnitTests {
    @Test func parsesSentinelURLs() throws {
        let plain = try RedisSentinelConfiguration("redis+sentinel://s1,s2:26380,[::1]/mymaster")
        #expect(plain.sentinels == [.tcp(host: "s1", port: 26379), .tcp(host: "s2", port: 26380), .tcp(host: "::1", port: 26379)])
        #expect(plain.masterName == "mymaster")
        #expect(plain.master.password == nil && plain.master.database == 0 && plain.master.tls == nil)

        let full = try RedisSentinelConfiguration("rediss+sentinel://app:s%40cret@10.0.0.1:26379,10.0.0.2:26379/cache%2Dmain?db=3")
        #expect(full.masterName == "cache-main")
        #expect(full.master.username == "app" && full.master.password == "s@cret" && full.master.database == 3)
        #expect(full.master.tls == RedisTLS())
        // The sentinels get their own credentials and the master's TLS.
        var withSentinelAuth = full
        withSentinelAuth.sentinelPassword = "sentinel-secret"
        let sentinelURL = withSentinelAuth.sentinelURL(1)
        #expect(sentinelURL.endpoint == .tcp(host: "10.0.0.2", port: 26379))
        #expect(sentinelURL.password == "sentinel-secret" && sentinelURL.username == nil && sentinelURL.database == 0 && sentinelURL.tls == RedisTLS())
        #expect(RedisSentinelConfiguration.isSentinelURL("Redis+Sentinel://h/m"))
        #expect(!RedisSentinelConfiguration.isSentinelURL("redis://h"))
    }

    @Test(
        "refuses malformed Sentinel URLs",
        arguments: [
            ("redis+sentinel://h1,h2", "names no master"),
            ("redis+sentinel://h1,,h2/m", "empty entry"),
            ("redis+sentinel://h1:0/m", "port '0'"),
            ("redis+sentinel://h1/", "master name"),
            ("redis+sentinel://h1/a/b", "master name"),
            ("redis+sentinel://h1/a%20b", "master name"),
            ("redis+sentinel://h1/m?db=x", "database 'x'"),
            ("redis+sentinel://h1/m?password=x", "credentials do not go in the query"),
            ("redis+sentinel://h1/m?foo=1", "'foo=1'"),
            ("redis+sentinel://user@h1/m", "ambiguous"),
            ("redis+sentinel://h1/m#x", "fragments"),
            ("redis://h1/m", "not a Sentinel scheme"),
        ]
    )
    func refuses(text: String, reason: String) {
        let error = #expect(throws: GatewayError.self) { try RedisSentinelConfiguration(text) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "") should mention \(reason)")
    }

    @Test func descriptionHidesPasswords() throws {
        var configuration = try RedisSentinelConfiguration("rediss+sentinel://app:hunter2@s1:1,s2:2/m?db=4")
        configuration.sentinelPassword = "other-secret"
        #expect(configuration.description == "rediss+sentinel://app:***@s1:1,s2:2/m?db=4")
        #expect(!"\(GatewayApplication.Backend.sentinel(configuration))".contains("hunter2"))
        let error = #expect(throws: GatewayError.self) { try RedisSentinelConfiguration("redis+sentinel://:hunter2@s1:99999/m") }
        #expect(error?.message.contains("hunter2") == false)
    }

    @Test func readsSentinelReplies() {
        func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
        #expect(SentinelReplies.masterAddress(.array([bulk("10.0.0.5"), bulk("6380")])) == .address(host: "10.0.0.5", port: 6380))
        #expect(SentinelReplies.masterAddress(.array(nil)) == .unknownMaster)
        #expect(SentinelReplies.masterAddress(.error("NOAUTH Authentication required.")) == .refused("NOAUTH Authentication required."))
        #expect(SentinelReplies.masterAddress(.array([bulk("h"), bulk("99999")])) == .malformed("\(RESPValue.array([bulk("h"), bulk("99999")]))"))
        #expect(SentinelReplies.masterAddress(.integer(1)) == .malformed("\(RESPValue.integer(1))"))

        #expect(SentinelReplies.role(.array([bulk("master"), .integer(0), .array([])])) == "master")
        #expect(SentinelReplies.role(.array([bulk("slave"), bulk("h"), .integer(1)])) == "slave")
        #expect(SentinelReplies.role(.error("NOPERM")) == nil)

        #expect(SentinelReplies.switchMaster("m 127.0.0.1 6379 127.0.0.1 6380") == .init(masterName: "m", newHost: "127.0.0.1", newPort: 6380))
        #expect(SentinelReplies.switchMaster("m 127.0.0.1 6379 127.0.0.1") == nil)
        #expect(SentinelReplies.switchMaster("m a 1 b 0") == nil)
    }

    @Test func followsTheSubscriptionsReplies() {
        func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
        var replies = SentinelSubscriptionReplies(handshakeReplies: 2)
        #expect(replies.receive(.simpleString("OK")) == .none)
        #expect(replies.receive(.simpleString("PONG")) == .none)
        #expect(replies.receive(.array([bulk("subscribe"), bulk("+switch-master"), .integer(1)])) == .subscribed)
        #expect(replies.receive(.array([bulk("message"), bulk("+switch-master"), bulk("m 1.1.1.1 1 2.2.2.2 2")])) == .switched(.init(masterName: "m", newHost: "2.2.2.2", newPort: 2)))
        #expect(replies.receive(.array([bulk("pong"), bulk("")])) == .pong)
        if case .failed = replies.receive(.integer(3)) {} else { Issue.record("an integer in subscribed mode must fail the connection") }

        var refused = SentinelSubscriptionReplies(handshakeReplies: 1)
        if case .failed(let reason) = refused.receive(.error("WRONGPASS")) {
            #expect(reason.contains("WRONGPASS"))
        } else {
            Issue.record("a refused AUTH must fail the connection")
        }
    }

    @Test func prefersTheSentinelThatAnsweredLast() {
        var state = SentinelMasterState<String>(sentinelCount: 3)
        #expect(state.order == [0, 1, 2])
        let ticket = state.beginQuery()
        #expect(state.answered("m1", by: 2, ticket: ticket) == .found("m1"))
        #expect(state.order == [2, 0, 1])
        #expect(state.answered("m1", by: 2, ticket: state.beginQuery()) == .unchanged("m1"))
        #expect(state.order == [2, 0, 1])
        #expect(state.answered("m1", by: 1, ticket: state.beginQuery()) == .unchanged("m1"))
        #expect(state.order == [1, 2, 0])
    }

    @Test func anAnswerThatDiffersMovesTheMaster() {
        var state = SentinelMasterState<String>(sentinelCount: 2)
        #expect(state.answered("m1", by: 0, ticket: state.beginQuery()) == .found("m1"))
        #expect(state.answered("m2", by: 0, ticket: state.beginQuery()) == .moved(from: "m1", to: "m2"))
        #expect(state.master == "m2")
        #expect(state.announced("m3") == .moved(from: "m2", to: "m3"))
        #expect(state.announced("m3") == .unchanged("m3"))
    }

    @Test func aQueryOvertakenByAnAnnouncementMovesNothing() {
        var state = SentinelMasterState<String>(sentinelCount: 2)
        #expect(state.answered("old", by: 0, ticket: state.beginQuery()) == .found("old"))
        // Sent before the failover, answered after the announcement: the old master.
        let ticket = state.beginQuery()
        #expect(state.announced("new") == .moved(from: "old", to: "new"))
        #expect(state.answered("old", by: 1, ticket: ticket) == .superseded(current: "new"))
        #expect(state.master == "new")
        // One that agrees is simply unchanged; a query sent after the announcement counts.
        #expect(state.answered("new", by: 1, ticket: ticket) == .unchanged("new"))
        #expect(state.answered("newer", by: 1, ticket: state.beginQuery()) == .moved(from: "new", to: "newer"))
    }
}
