@testable import Gateway
import GatewayProtocol
import Logging
import Metrics
import NIOCore
import NIOEmbedded
import GatewayTestSupport
import Testing

/// The access policy as a pure decision, and a connection's handling of it,
/// driven on an embedded channel with a virtual clock. The same behaviour with
/// real peers of other uids is in `GatewayAccessTests`.
@Suite struct AccessControlTests {
    static let alice = PeerCredentials(uid: 1000, gid: 1000, pid: 11)
    static let bob = PeerCredentials(uid: 1001, gid: 2000, pid: 12)
    static let root = PeerCredentials(uid: 0, gid: 0, pid: 1)
    static let gatewayUID: UInt32 = 999

    @Test func withoutAllowListsEveryPeerIsServedInTheConfiguredNamespace() {
        let policy = AccessControl()
        for peer in [Self.alice, Self.bob, Self.root] {
            #expect(policy.decide(peer: peer, namespace: "ns", gatewayUID: Self.gatewayUID) == ConnectionAccess(peer: peer, namespace: "ns", refusal: nil))
        }
        // Credentials that cannot be read do not matter when nothing is checked.
        #expect(policy.decide(peer: nil, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
    }

    @Test func aPeerIsServedWhenItsUIDOrItsGIDIsAllowed() {
        let byUID = AccessControl(allowedUIDs: [1000])
        #expect(byUID.decide(peer: Self.alice, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        let refused = byUID.decide(peer: Self.bob, namespace: "ns", gatewayUID: Self.gatewayUID)
        #expect(refused.refusal?.contains("uid 1001") == true)
        #expect(refused.refusal?.contains("not allowed") == true)

        let byGID = AccessControl(allowedGIDs: [2000])
        #expect(byGID.decide(peer: Self.bob, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        #expect(byGID.decide(peer: Self.alice, namespace: "ns", gatewayUID: Self.gatewayUID).refusal != nil)

        // Either list admits: alice by uid, bob by gid.
        let both = AccessControl(allowedUIDs: [1000], allowedGIDs: [2000])
        #expect(both.decide(peer: Self.alice, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        #expect(both.decide(peer: Self.bob, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        #expect(both.decide(peer: PeerCredentials(uid: 1002, gid: 1002, pid: 13), namespace: "ns", gatewayUID: Self.gatewayUID).refusal != nil)
    }

    @Test func aSupplementaryGroupOnTheListAdmitsAPeer() {
        let policy = AccessControl(allowedGIDs: [3000])
        let member = PeerCredentials(uid: 1002, gid: 1002, pid: 13, groups: [27, 3000])
        #expect(policy.decide(peer: member, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        let outsider = PeerCredentials(uid: 1003, gid: 1003, pid: 14, groups: [27, 100])
        #expect(policy.decide(peer: outsider, namespace: "ns", gatewayUID: Self.gatewayUID).refusal?.contains("(groups 27,100)") == true)
        // A uid list alone ignores groups.
        #expect(AccessControl(allowedUIDs: [1000]).decide(peer: member, namespace: "ns", gatewayUID: Self.gatewayUID).refusal != nil)
    }

    @Test func theKernelsGroupListEndsWhereItStopsAscending() {
        // The kernel writes the groups sorted; the rest of the zeroed buffer stays 0.
        #expect(PeerCredentialsReader.groups(fromKernelList: [5, 27, 100, 0, 0, 0]) == [5, 27, 100])
        #expect(PeerCredentialsReader.groups(fromKernelList: [0, 4, 0, 0]) == [0, 4])
        #expect(PeerCredentialsReader.groups(fromKernelList: [7, 7, 9, 0]) == [7, 9])
        // Zeros alone: no groups (group 0 then counts only as the effective gid).
        #expect(PeerCredentialsReader.groups(fromKernelList: [0, 0, 0]) == [])
        #expect(PeerCredentialsReader.groups(fromKernelList: []) == [])
    }

    @Test func rootAndTheGatewaysOwnUserAreAlwaysServed() {
        let policy = AccessControl(allowedUIDs: [1000])
        #expect(policy.decide(peer: Self.root, namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
        #expect(policy.decide(peer: PeerCredentials(uid: Self.gatewayUID, gid: 5, pid: 2), namespace: "ns", gatewayUID: Self.gatewayUID).refusal == nil)
    }

    @Test func unreadableCredentialsAreRefusedWhenAnythingIsChecked() {
        #expect(AccessControl(allowedUIDs: [1000]).decide(peer: nil, namespace: "ns", gatewayUID: Self.gatewayUID).refusal != nil)
        #expect(AccessControl(namespacePerUID: true).decide(peer: nil, namespace: "ns", gatewayUID: Self.gatewayUID).refusal != nil)
    }

    @Test func namespacePerUIDGivesEachUIDItsOwnNamespace() {
        let policy = AccessControl(namespacePerUID: true)
        let alice = policy.decide(peer: Self.alice, namespace: "billing", gatewayUID: Self.gatewayUID)
        let bob = policy.decide(peer: Self.bob, namespace: "billing", gatewayUID: Self.gatewayUID)
        #expect(alice.namespace == "billing+uid1000")
        #expect(bob.namespace == "billing+uid1001")
        // The derived namespace is one no configuration can name.
        var configuration = GatewayConfiguration(namespace: alice.namespace)
        #expect(throws: GatewayError.self) { try configuration.validate() }
        configuration.namespace = "billing"
        #expect(throws: Never.self) { try configuration.validate() }
    }

    @Test func idListsTakeNumbersNamesAndCommas() throws {
        #expect(try AccessControl.userIDs(["1000,1001", " 65534 ", "root"]) == [0, 1000, 1001, 65534])
        #expect(try AccessControl.groupIDs(["root", "7"]) == [0, 7])
        #expect(try AccessControl.userIDs([]) == [])
        for bad in ["no-such-user-here", "1000,", "4294967295", "99999999999"] {
            let error = #expect(throws: GatewayError.self, "\(bad)") { try AccessControl.userIDs([bad]) }
            #expect(error?.code == .invalidConfiguration)
        }
    }

    // MARK: A connection

    static let refused = ConnectionAccess(peer: bob, namespace: "ns", refusal: "uid 1001 and gid 2000 are not allowed to use this gateway")

    @Test func aRefusedPeersFirstRequestIsAnsweredNotAllowedWithItsIDAndTheConnectionCloses() throws {
        let harness = try ConnectionHarness(access: Self.refused)
        #expect(harness.channel.isActive)
        try harness.send(GatewayMessage(id: 7, .hello(Hello(clientName: "bob", pid: 12))))
        let reply = try #require(try harness.reply())
        #expect(reply.id == 7)
        guard case .error(let error) = reply.body else { throw TestFailure("expected an error, got \(reply.body)") }
        #expect(error.code == .notAllowed)
        #expect(error.message.contains("not allowed"))
        #expect(!harness.channel.isActive)
        #expect(try harness.reply() == nil)
        let stats = harness.statistics.snapshot(store: harness.store)
        #expect(stats[count: "connectionsDenied"] == 1)
        #expect(stats[count: "errors"] == 1)
        #expect(stats[count: "requests"] == 0, "a refused peer's request is not served")
    }

    @Test func aRefusedPeerIsRefusedWhateverItSendsFirst() throws {
        let harness = try ConnectionHarness(access: Self.refused)
        // A lookup before hello gets notAllowed, not helloRequired.
        try harness.send(GatewayMessage(id: 3, .lookup(Lookup(function: FunctionVersion(function: "f", version: "v"), key: try CacheKey(hashing: 1)))))
        let reply = try #require(try harness.reply())
        guard case .error(let error) = reply.body else { throw TestFailure("expected an error") }
        #expect(reply.id == 3 && error.code == .notAllowed)
        #expect(!harness.channel.isActive)
    }

    @Test func aSilentRefusedPeerIsToldWithIDZeroAtTheFrameTimeout() throws {
        let harness = try ConnectionHarness(access: Self.refused, frameTimeout: .seconds(2))
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1999))
        #expect(harness.channel.isActive)
        #expect(try harness.reply() == nil)
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        let reply = try #require(try harness.reply())
        guard case .error(let error) = reply.body else { throw TestFailure("expected an error") }
        #expect(reply.id == 0 && error.code == .notAllowed)
        #expect(!harness.channel.isActive)
    }

    @Test func aServedPeersEntriesGoToItsConnectionsNamespace() throws {
        let harness = try ConnectionHarness(access: AccessControl(namespacePerUID: true).decide(peer: Self.alice, namespace: "ns", gatewayUID: Self.gatewayUID))
        try harness.send(GatewayMessage(id: 1, .hello(Hello(clientName: "alice", pid: 11))))
        guard case .helloReply = try #require(try harness.reply()).body else { throw TestFailure("no hello reply") }
        let function = FunctionVersion(function: "f", version: "v")
        let key = try CacheKey(hashing: 1)
        try harness.send(GatewayMessage(id: 2, .store(Store(function: function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(string: "alice's")))))
        #expect(try harness.reply() == GatewayMessage(id: 2, .storeReply(stored: true)))
        let loop = harness.channel.embeddedEventLoop
        let inAlices = try harness.store.lookup(StorageKey(namespace: "ns+uid1000", function: function, key: key), on: loop).wait()
        #expect(inAlices.withoutExpiry == .hit(ByteBuffer(string: "alice's"), computeMicroseconds: 1))
        #expect(try harness.store.lookup(StorageKey(namespace: "ns", function: function, key: key), on: loop).wait() == .miss)
        #expect(harness.statistics.snapshot(store: harness.store)[count: "connectionsDenied"] == 0)
    }
}
