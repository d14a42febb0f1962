import Foundation
import GatewayProtocol
import GatewayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// Real processes end to end: a gateway (in memory, or on the test redis-server)
    /// and several DemoWorker processes calling a `@Cached` function through it.
    @Suite(.serialized) struct EndToEndTests {
        enum Backend: String, CaseIterable, Sendable {
            case memory, redis

            func arguments() throws -> [String] {
                switch self {
                case .memory: []
                // A generous Redis timeout: under a loaded debug build the gateway's
                // default (5 ms) turns lookups into "miss, do not store", and these
                // tests are about hits crossing processes, not about that.
                case .redis: ["--redis", "unix://\(try TestRedis.socketPath)", "--namespace", "e2e\(UInt32.random(in: 0...UInt32.max))", "--lookup-timeout-ms", "2000"]
                }
            }
        }

        /// What a worker answered for one call.
        struct Answer: Decodable {
            var product: String
            var cents: Int
            var computedBy: String
            var computedInProcess: Int32
            var ranHere: Bool
        }

        /// A `DemoWorker serve` process: one call per line on stdin, one JSON answer per line on stdout.
        final class Worker {
            private let child: LineProcess

            /// A worker; with `uid`, run as that user and group (setpriv; the tests
            /// run as root).
            ///
            /// Generous timeouts (2 s unless `lookupTimeoutMilliseconds` says
            /// otherwise): these tests are about hits crossing processes, and a
            /// loaded debug build can miss the defaults (10 ms to look up, 100 ms to
            /// connect), after which a worker rightly runs uncached.
            init(socketPath: String, uid: UInt32? = nil, lookupTimeoutMilliseconds: Int = 2000) throws {
                let executable = try GatewayProcess.executable.deletingLastPathComponent().appendingPathComponent("DemoWorker")
                let arguments = ["serve", "--socket", socketPath, "--lookup-timeout-ms", "\(lookupTimeoutMilliseconds)", "--connect-timeout-ms", "2000"]
                if let uid {
                    self.child = try LineProcess(
                        executable: URL(fileURLWithPath: "/usr/bin/setpriv"),
                        arguments: ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--", executable.path] + arguments
                    )
                } else {
                    self.child = try LineProcess(executable: executable, arguments: arguments)
                }
            }

            var process: Process { self.child.process }
            var pid: Int32 { self.child.pid }

            /// Asks for the quote of `product` from code version `version`.
            func call(_ product: String, version: Int) throws -> Answer {
                try JSONDecoder().decode(Answer.self, from: try self.child.exchange("\(version) \(product)"))
            }
        }

        /// Waits until the gateway has stored `count` entries. A worker sends its
        /// store without waiting for the reply, and with the Redis backend the
        /// entry lands only once Redis has answered the gateway, possibly after a
        /// lookup that follows at once; a test that expects a hit waits for the
        /// store first. Synchronous, like the workers' calls.
        func waitForStores(_ gateway: GatewayProcess, atLeast count: UInt64) throws {
            let admin = try RawSocket(path: gateway.socketPath)
            try admin.write(GatewayMessage(id: 1, .hello(Hello(clientName: "admin", pid: UInt64(getpid())))))
            _ = try admin.readMessage()
            let deadline = ContinuousClock.now + .seconds(10)
            var id: UInt64 = 1
            var stores: UInt64 = 0
            while ContinuousClock.now < deadline {
                id += 1
                try admin.write(GatewayMessage(id: id, .stats))
                guard case .statsReply(let stats) = try admin.readMessage().body else { throw TestFailure("no stats reply") }
                stores = stats[count: "stores"] ?? 0
                if stores >= count { return }
                usleep(5_000)
            }
            throw TestFailure("the gateway stored \(stores) entries, not \(count), within 10 s")
        }

        // The workers of the next two tests wait up to 2 s for a lookup: they
        // expect hits, and on a busy machine a 10 ms lookup would be skipped.
        @Test(arguments: Backend.allCases)
        func aResultComputedByOneWorkerIsServedToAnother(backend: Backend) throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let first = try Worker(socketPath: gateway.socketPath, lookupTimeoutMilliseconds: 2000)
            let second = try Worker(socketPath: gateway.socketPath, lookupTimeoutMilliseconds: 2000)
            let computed = try first.call("latte", version: 1)
            #expect(computed.ranHere)
            #expect(computed.computedInProcess == first.pid)
            try self.waitForStores(gateway, atLeast: 1)
            let served = try second.call("latte", version: 1)
            #expect(!served.ranHere)
            #expect(served.computedInProcess == first.pid)
            #expect(served.cents == computed.cents)
            #expect(gateway.stop() == 0)
        }

        @Test(arguments: Backend.allCases)
        func twoVersionsOfTheSameFunctionNeverSeeEachOthersResults(backend: Backend) throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let old = try Worker(socketPath: gateway.socketPath, lookupTimeoutMilliseconds: 2000)
            let new = try Worker(socketPath: gateway.socketPath, lookupTimeoutMilliseconds: 2000)
            // Old and new code side by side, as during a rolling deploy.
            for round in 0..<3 {
                let oldAnswer = try old.call("mocha", version: 1)
                let newAnswer = try new.call("mocha", version: 2)
                #expect(oldAnswer.computedBy == "v1")
                #expect(newAnswer.computedBy == "v2")
                #expect(oldAnswer.ranHere == (round == 0))
                #expect(newAnswer.ranHere == (round == 0))
                if round == 0 { try self.waitForStores(gateway, atLeast: 2) }
                // Each worker also asks for the other version: still never mixed.
                #expect(try old.call("mocha", version: 2).computedBy == "v2")
                #expect(try new.call("mocha", version: 1).computedBy == "v1")
            }
            #expect(gateway.stop() == 0)
        }

        @Test(arguments: Backend.allCases)
        func workersComputeLocallyWhileTheGatewayIsDownAndUseItAgainWhenItIsBack(backend: Backend) async throws {
            let arguments = try backend.arguments()
            let gateway = try GatewayProcess(arguments: arguments)
            let worker = try Worker(socketPath: gateway.socketPath)
            let expected = try worker.call("tea", version: 1)
            try self.waitForStores(gateway, atLeast: 1)
            #expect(!(try worker.call("tea", version: 1).ranHere))

            // Killed mid-run, as a crash would.
            #expect(gateway.stop(signal: SIGKILL) != 0)
            for _ in 0..<3 {
                let local = try worker.call("tea", version: 1)
                #expect(local.ranHere)
                #expect(local.cents == expected.cents && local.computedBy == "v1")
            }

            // Back on the same socket: the worker reconnects (after its backoff) and
            // is served again. The memory backend starts empty, so the first call
            // after reconnecting computes and stores; the next one is a hit.
            let restarted = try GatewayProcess(arguments: arguments, reuseSocketOf: gateway)
            let deadline = ContinuousClock.now + .seconds(20)
            var servedAgain = false
            while ContinuousClock.now < deadline {
                let answer = try worker.call("tea", version: 1)
                #expect(answer.cents == expected.cents && answer.computedBy == "v1")
                if !answer.ranHere {
                    servedAgain = true
                    break
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(servedAgain, "the worker never got a hit from the restarted gateway")
            #expect(restarted.stop() == 0)
        }
    }
}
