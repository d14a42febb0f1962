import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Testing

/// Runs `executable` as another user and group (setpriv(1); the tests run as
/// root), and returns its exit status and everything it printed.
/// `groups` are its supplementary groups (none by default).
func runAsUser(uid: UInt32, gid: UInt32, groups: [UInt32] = [], _ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    let groupArguments = groups.isEmpty ? ["--clear-groups"] : ["--groups=\(groups.map(String.init).joined(separator: ","))"]
    process.arguments = ["--reuid=\(uid)", "--regid=\(gid)"] + groupArguments + ["--", executable] + arguments
    return try process.runToEnd()
}

extension IntegrationTests {
    /// Peers of other uids, checked by SO_PEERCRED against the allow-lists: a
    /// real gateway, and `cache-gateway ping` run as other users.
    @Suite(.serialized) struct GatewayAccessTests {
        /// uids and gids no account on the test machine is expected to use,
        /// besides 65534 (nobody).
        static let allowed: UInt32 = 65534
        static let refused: UInt32 = 65533

        static func ping(_ gateway: GatewayProcess, uid: UInt32, gid: UInt32, groups: [UInt32] = []) throws -> (status: Int32, output: String) {
            try runAsUser(uid: uid, gid: gid, groups: groups, try GatewayProcess.executable.path, ["ping", "--socket", gateway.socketPath])
        }

        static func stats(_ gateway: GatewayProcess) async throws -> Stats {
            let connection = try await gateway.connect(name: "root")
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            await connection.close()
            return stats
        }

        @Test func aPeerWhoseUIDIsNotAllowedIsRefusedAndOneWhoseUIDIsAllowedIsServed() async throws {
            // Mode 666 and a traversable folder: any user can open the socket, so
            // what refuses a peer is the allow-list, not the file's permissions.
            let gateway = try GatewayProcess(arguments: ["--socket-mode", "666", "--allow-uid", "\(Self.allowed)"])

            let served = try Self.ping(gateway, uid: Self.allowed, gid: Self.allowed)
            #expect(served.status == 0, "\(served.output)")
            #expect(served.output.contains("pong"))

            let refused = try Self.ping(gateway, uid: Self.refused, gid: Self.refused)
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains("uid \(Self.refused) and gid \(Self.refused) are not allowed"), "\(refused.output)")
            #expect(!refused.output.contains("pong"))

            // Root (this test) is served although it is not on the list.
            var stats = try await Self.stats(gateway)
            #expect(stats[count: "connectionsDenied"] == 1)
            #expect(gateway.log.contains("refused a connection from uid=\(Self.refused) gid=\(Self.refused) pid="), "\(gateway.log)")

            // A second refusal is counted; its log line is held back (at most one per 10 s).
            let again = try Self.ping(gateway, uid: Self.refused, gid: Self.refused)
            #expect(again.status == 1)
            stats = try await Self.stats(gateway)
            #expect(stats[count: "connectionsDenied"] == 2)
            #expect(gateway.log.components(separatedBy: "refused a connection").count == 2, "one line, not two")
            #expect(gateway.stop() == 0)
        }

        @Test func aPeerIsServedByItsGroup() async throws {
            let gateway = try GatewayProcess(arguments: ["--socket-mode", "666", "--allow-gid", "\(Self.allowed)"])
            let served = try Self.ping(gateway, uid: Self.refused, gid: Self.allowed)
            #expect(served.status == 0, "\(served.output)")
            let refused = try Self.ping(gateway, uid: Self.allowed, gid: Self.refused)
            #expect(refused.status == 1, "\(refused.output)")
            #expect(try await Self.stats(gateway)[count: "connectionsDenied"] == 1)
            #expect(gateway.stop() == 0)
        }

        /// A worker's user added to an allowed group is served through it, as
        /// the group admits it to the socket file (SO_PEERGROUPS).
        @Test func aPeerIsServedByASupplementaryGroup() async throws {
            let gateway = try GatewayProcess(arguments: ["--socket-mode", "666", "--allow-gid", "\(Self.allowed)"])
            // Effective uid and gid both refused; the allowed group among others.
            let served = try Self.ping(gateway, uid: Self.refused, gid: Self.refused, groups: [4, Self.allowed, 100])
            #expect(served.status == 0, "\(served.output)")
            #expect(served.output.contains("pong"))
            // Other supplementary groups do not help.
            let refused = try Self.ping(gateway, uid: Self.refused, gid: Self.refused, groups: [4, 100])
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains("(groups 4,100) are not allowed"), "\(refused.output)")
            #expect(try await Self.stats(gateway)[count: "connectionsDenied"] == 1)
            #expect(gateway.stop() == 0)
        }

        @Test func theAllowListComesFromTheEnvironmentAndTheSocketModeStillApplies() async throws {
            // Allowed by the list, but the socket is 660 root:root: the kernel
            // refuses the connect before the gateway sees the peer.
            let gateway = try GatewayProcess(environment: ["CACHE_GATEWAY_ALLOW_UID": "\(Self.refused), \(Self.allowed)"])
            let blocked = try Self.ping(gateway, uid: Self.allowed, gid: Self.allowed)
            #expect(blocked.status == 1)
            #expect(blocked.output.contains("cannot connect"), "\(blocked.output)")
            #expect(try await Self.stats(gateway)[count: "connectionsDenied"] == 0)
            #expect(gateway.log.contains("allowUIDs=[\(Self.refused), \(Self.allowed)]"), "\(gateway.log)")
            #expect(gateway.stop() == 0)
        }
    }
}
