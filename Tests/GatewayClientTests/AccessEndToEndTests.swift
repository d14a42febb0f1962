import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Testing

extension ClientIntegrationTests.EndToEndTests {
    /// DemoWorker processes of other users against a gateway with an allow-list
    /// and per-uid namespaces: real peers, identified by SO_PEERCRED.
    @Suite(.serialized) struct AccessEndToEndTests {
        static let alice: UInt32 = 65534
        static let bob: UInt32 = 65533
        static let mallory: UInt32 = 65532

        static func arguments(_ backend: Backend) throws -> [String] {
            // Mode 666: every user can open the socket; the allow-list decides.
            try backend.arguments() + ["--socket-mode", "666", "--allow-uid", "\(alice),\(bob)", "--namespace-per-uid"]
        }

        /// Calls until the gateway serves an entry (at most `limit` calls) and
        /// returns every answer. A call may run uncached when a lookup is slower
        /// than the client's 10 ms (a busy machine, a debug build): it then does
        /// not store, so the next call asks again.
        static func callUntilServed(_ worker: Worker, limit: Int = 8) throws -> [Answer] {
            var answers: [Answer] = []
            while answers.count < limit, answers.last?.ranHere != false {
                answers.append(try worker.call("latte", version: 1))
            }
            return answers
        }

        @Test(arguments: Backend.allCases)
        func twoUsersNeverSeeEachOthersEntries(backend: Backend) throws {
            let gateway = try GatewayProcess(arguments: try Self.arguments(backend))
            let alice = try Worker(socketPath: gateway.socketPath, uid: Self.alice)
            let computed = try Self.callUntilServed(alice)
            #expect(computed.first?.ranHere == true)
            #expect(computed.last?.ranHere == false, "Alice's entry was never served to her")

            // Bob asks for the same function, version and argument: never Alice's entry.
            let bob = try Worker(socketPath: gateway.socketPath, uid: Self.bob)
            let bobs = try Self.callUntilServed(bob)
            for answer in bobs {
                #expect(answer.computedInProcess == bob.pid, "Bob was served another user's entry")
                #expect(answer.cents == computed[0].cents)
            }
            #expect(bobs.first?.ranHere == true)
            #expect(bobs.last?.ranHere == false, "Bob's own entry was never served to him")

            // Bob's store did not replace Alice's: another of Alice's workers gets hers.
            let aliceAgain = try Worker(socketPath: gateway.socketPath, uid: Self.alice)
            let served = try Self.callUntilServed(aliceAgain)
            #expect(served.last?.ranHere == false)
            #expect(served.last?.computedInProcess == alice.pid)
            #expect(gateway.stop() == 0)
        }

        @Test func aRefusedWorkerRunsItsFunctionsUncached() async throws {
            let gateway = try GatewayProcess(arguments: try Self.arguments(.memory))
            let mallory = try Worker(socketPath: gateway.socketPath, uid: Self.mallory)
            for _ in 0..<3 {
                let answer = try mallory.call("espresso", version: 1)
                #expect(answer.ranHere)
                #expect(answer.computedBy == "v1" && answer.computedInProcess == mallory.pid)
            }
            let connection = try await gateway.connect()
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            #expect((stats[count: "connectionsDenied"] ?? 0) >= 1)
            #expect(stats[count: "stores"] == 0 && stats[count: "hits"] == 0)
            #expect(gateway.stop() == 0)
        }
    }
}
