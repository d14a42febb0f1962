import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// The registry end to end: real gateways ("hosts") sharing the test
    /// redis-server, and DemoWorker processes running two versions of the same
    /// `@Cached` function side by side, as during a rolling deploy.
    ///
    /// Timings are shortened (lease 1 s, renewed every 333 ms; grace 600 ms;
    /// sweeps every 20 ms) so that retirements happen within the test; every
    /// wait is on an observed change of the registry or the counters, never a
    /// fixed sleep. A lease lapses, as designed, when its gateway cannot renew
    /// it for the lease's time and the grace: 1.6 s here, which a loaded
    /// machine does not starve a gateway for.
    @Suite(.serialized) struct RegistryEndToEndTests {
        typealias Worker = EndToEndTests.Worker

        /// A demo worker whose lookups wait up to 2 s: these tests count entries,
        /// and on a loaded machine a 10 ms timeout would skip some stores.
        func worker(_ gateway: GatewayProcess) throws -> Worker {
            try Worker(socketPath: gateway.socketPath, lookupTimeoutMilliseconds: 2000)
        }

        /// A group of gateways on one namespace of the test Redis (or one on memory).
        struct Hosts {
            let gateways: [GatewayProcess]

            init(count: Int, policy: String, redis: Bool = true) throws {
                let namespace = "reg\(UInt32.random(in: 0...UInt32.max))"
                var gateways: [GatewayProcess] = []
                for index in 0..<count {
                    var arguments = [
                        "--purge", policy, "--purge-grace-ms", "600", "--lease-ms", "1000",
                        "--sweep-interval-ms", "20", "--gateway-id", "host-\(index)",
                        // Generous, so that a loaded machine's slow Redis answer is not a skipped store.
                        "--lookup-timeout-ms", "1000", "--write-timeout-ms", "5000",
                    ]
                    if redis { arguments += ["--redis", "unix://\(try TestRedis.socketPath)", "--namespace", namespace] }
                    gateways.append(try GatewayProcess(arguments: arguments))
                }
                self.gateways = gateways
            }

            subscript(index: Int) -> GatewayProcess { self.gateways[index] }

            /// What `gateway` reports about the demo's function (nil before it is registered).
            func function(at gateway: Int = 0) async throws -> FunctionInfo? {
                let connection = try await self.gateways[gateway].connect()
                defer { Task { await connection.close() } }
                guard case .functionsReply(let functions) = try await connection.request(.functions) else { throw TestFailure("no functions reply") }
                return functions.first { $0.function.hasSuffix("Pricing.quote(for:)") }
            }

            func version(_ version: String, at gateway: Int = 0) async throws -> VersionInfo? {
                try await self.function(at: gateway)?.versions.first { $0.version == version }
            }

            /// A counter summed over the gateways still running.
            func total(_ counter: String) async throws -> UInt64 {
                var sum: UInt64 = 0
                for gateway in self.gateways where gateway.process.isRunning {
                    let connection = try await gateway.connect()
                    guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats reply") }
                    sum += stats[count: counter] ?? 0
                    await connection.close()
                }
                return sum
            }

            /// Waits until every running gateway has swept `count` more times:
            /// the event that says the registry had its chance to act.
            func waitForSweeps(_ count: UInt64) async throws {
                let start = try await self.total("registrySweeps")
                let running = UInt64(self.gateways.filter { $0.process.isRunning }.count)
                let done = try await waitUntil(timeout: .seconds(20)) { try await self.total("registrySweeps") >= start + count * running }
                try #require(done, "the gateways stopped sweeping")
            }
        }

        /// Polls `condition` (a query of the gateways' state) until it holds.
        static func waitUntil(timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if try await condition() { return true }
                try await Task.sleep(for: .milliseconds(20))
            }
            return try await condition()
        }

        func waitUntil(timeout: Duration = .seconds(15), _ condition: () async throws -> Bool) async throws -> Bool {
            try await Self.waitUntil(timeout: timeout, condition)
        }

        /// The one version registered so far.
        func onlyVersion(_ hosts: Hosts) async throws -> String {
            let function = try #require(try await hosts.function())
            try #require(function.versions.count == 1)
            return function.versions[0].version
        }

        @Test func afterGraceTheOldVersionIsPurgedOnceAfterItsLastWorkerStopsAndTheNewOneSurvives() async throws {
            let hosts = try Hosts(count: 2, policy: "grace")
            // Host 0 runs the old code; it computes and stores three results.
            let old = try self.worker(hosts[0])
            for product in ["latte", "mocha", "tea"] {
                let answer = try old.call(product, version: 1)
                #expect(answer.computedBy == "v1" && answer.ranHere)
            }
            let v1 = try await self.onlyVersion(hosts)
            #expect(try await self.waitUntil { try await hosts.version(v1)?.entries == 3 })

            // Host 1 gets the new code: its results are its own, never v1's.
            let new = try self.worker(hosts[1])
            for product in ["latte", "mocha"] {
                let answer = try new.call(product, version: 2)
                #expect(answer.computedBy == "v2" && answer.ranHere)
            }
            let v2 = try #require(try await hosts.function()?.versions.first { $0.version != v1 }?.version)
            #expect(try await self.waitUntil { try await hosts.version(v2)?.entries == 2 })
            // Another worker on host 1 is served the new version's result across processes.
            let reader = try self.worker(hosts[1])
            let served = try reader.call("latte", version: 2)
            #expect(!served.ranHere && served.computedBy == "v2" && served.computedInProcess == new.pid)
            let perFunction = try #require(try await hosts.function(at: 1))
            #expect(perFunction.hits >= 1 && perFunction.computeSavedMicroseconds >= 400_000, "a hit saves the 400 ms body")

            // While the old worker runs, its version is leased by host 0 and stays,
            // however long (several grace periods of sweeps).
            try await hosts.waitForSweeps(100)
            let leased = try #require(try await hosts.version(v1))
            #expect(leased.state == "active" && leased.entries == 3 && leased.leases.map(\.gateway) == ["host-0"])
            #expect(try await hosts.total("purges") == 0)
            let own = try old.call("latte", version: 1)
            #expect(!own.ranHere && own.computedBy == "v1" && own.computedInProcess == old.pid)

            // The old worker stops: host 0 releases its lease, and after the grace
            // one gateway purges v1, once.
            // SIGKILL: see EndToEndTests.Worker's deinit.
            kill(old.pid, SIGKILL)
            old.process.waitUntilExit()
            #expect(try await self.waitUntil { try await hosts.version(v1)?.state == "retired" })
            #expect(try await self.waitUntil { try await hosts.total("purges") == 1 })
            #expect(try await hosts.total("purgedEntries") == 3)
            #expect(try await hosts.version(v1)?.entries == 0)
            try await hosts.waitForSweeps(20)
            #expect(try await hosts.total("purges") == 1, "purged exactly once")
            #expect(try await hosts.total("purgedEntries") == 3, "nothing deleted twice")

            // The new version's entries survive, and are still served.
            #expect(try await hosts.version(v2)?.entries == 2)
            let still = try reader.call("mocha", version: 2)
            #expect(!still.ranHere && still.computedBy == "v2")
            #expect(hosts[0].stop() == 0 && hosts[1].stop() == 0)
        }

        @Test func eagerPurgesTheOtherVersionsAtANewVersionsFirstRegistrationAndOldWorkersDoNotFightBack() async throws {
            let hosts = try Hosts(count: 2, policy: "eager")
            let old = try self.worker(hosts[0])
            for product in ["latte", "mocha", "tea"] { _ = try old.call(product, version: 1) }
            let v1 = try await self.onlyVersion(hosts)
            #expect(try await self.waitUntil { try await hosts.version(v1)?.entries == 3 })

            // The new version's first registration anywhere purges v1 at once,
            // although the old worker still runs.
            let new = try self.worker(hosts[1])
            let first = try new.call("latte", version: 2)
            #expect(first.ranHere && first.computedBy == "v2")
            #expect(try await self.waitUntil { try await hosts.total("purges") == 1 })
            #expect(try await hosts.total("purgedEntries") == 3)
            #expect(try await hosts.version(v1)?.entries == 0)
            let v2 = try #require(try await hosts.function()?.versions.first { $0.version != v1 }?.version)
            #expect(try await self.waitUntil { try await hosts.version(v2)?.entries == 1 })

            // The old worker goes on with its own code: it computes again and never
            // receives v2's result.
            let recomputed = try old.call("latte", version: 1)
            #expect(recomputed.ranHere && recomputed.computedBy == "v1")
            // An old worker starting late on the new host registers v1 again: that
            // retires nothing, so the new version's entry stays.
            let late = try self.worker(hosts[1])
            #expect(try late.call("tea", version: 1).computedBy == "v1")
            try await hosts.waitForSweeps(30)
            #expect(try await hosts.total("purges") == 1)
            #expect(try await hosts.version(v2)?.entries == 1)
            let served = try late.call("latte", version: 2)
            #expect(!served.ranHere && served.computedBy == "v2" && served.computedInProcess == new.pid)
            #expect(hosts[0].stop() == 0 && hosts[1].stop() == 0)
        }

        @Test func aKilledGatewaysLeasesLapseAndTheVersionsOnlyItUsedArePurgedAfterTheGrace() async throws {
            let hosts = try Hosts(count: 2, policy: "grace")
            let doomed = try self.worker(hosts[0])
            for product in ["latte", "mocha"] { _ = try doomed.call(product, version: 1) }
            let v1 = try await self.onlyVersion(hosts)
            let survivor = try self.worker(hosts[1])
            _ = try survivor.call("latte", version: 2)
            let v2 = try #require(try await hosts.function()?.versions.first { $0.version != v1 }?.version)
            #expect(try await self.waitUntil { try await hosts.version(v1)?.entries == 2 })
            #expect(try await self.waitUntil { try await hosts.version(v2)?.entries == 1 })

            // Host 0 dies without releasing anything; its worker keeps computing locally.
            #expect(hosts[0].stop(signal: SIGKILL) != 0)
            #expect(try doomed.call("latte", version: 1).ranHere)
            #expect(try await self.waitUntil { try await hosts.version(v1, at: 1)?.state == "retired" })
            #expect(try await hosts.total("purges") == 1)
            #expect(try await hosts.total("purgedEntries") == 2)
            #expect(try await hosts.version(v1, at: 1)?.entries == 0)
            #expect(try await hosts.version(v2, at: 1)?.entries == 1)
            #expect(try await hosts.version(v2, at: 1)?.leases.map(\.gateway) == ["host-1"])
            #expect(hosts[1].stop() == 0)
        }

        @Test(arguments: ["grace", "eager"])
        func theEmbeddedStoreKeepsItsOwnRegistry(policy: String) async throws {
            let hosts = try Hosts(count: 1, policy: policy, redis: false)
            let old = try self.worker(hosts[0])
            for product in ["latte", "mocha"] { _ = try old.call(product, version: 1) }
            let v1 = try await self.onlyVersion(hosts)
            #expect(try await self.waitUntil { try await hosts.version(v1)?.entries == 2 })
            let new = try self.worker(hosts[0])
            _ = try new.call("latte", version: 2)
            let v2 = try #require(try await hosts.function()?.versions.first { $0.version != v1 }?.version)
            if policy == "grace" {
                try await hosts.waitForSweeps(40)
                #expect(try await hosts.version(v1)?.entries == 2, "still in use")
                kill(old.pid, SIGKILL)
                old.process.waitUntilExit()
            }
            #expect(try await self.waitUntil { try await hosts.total("purges") == 1 })
            #expect(try await hosts.total("purgedEntries") == 2)
            #expect(try await hosts.version(v1)?.entries == 0)
            #expect(try await self.waitUntil { try await hosts.version(v2)?.entries == 1 })
            #expect(hosts[0].stop() == 0)
        }

        @Test func theFunctionsAndPurgeCommandsListAndDelete() async throws {
            let hosts = try Hosts(count: 1, policy: "grace")
            let worker = try self.worker(hosts[0])
            for product in ["latte", "mocha", "tea"] { _ = try worker.call(product, version: 1) }
            let version = try await self.onlyVersion(hosts)
            #expect(try await self.waitUntil { try await hosts.version(version)?.entries == 3 })
            _ = try worker.call("latte", version: 1)  // a hit, for the counters

            let listing = try Self.run(["functions", "--socket", hosts[0].socketPath, "--json"])
            let functions = try #require(try JSONSerialization.jsonObject(with: Data(listing.utf8)) as? [[String: Any]])
            let function = try #require(functions.first)
            let name = try #require(function["function"] as? String)
            #expect(name == "DemoWorker.Pricing.quote(for:)")
            #expect(function["hits"] as? Int == 1)
            let versions = try #require(function["versions"] as? [[String: Any]])
            #expect(versions.count == 1 && versions[0]["version"] as? String == version)
            #expect(versions[0]["entries"] as? Int == 3 && versions[0]["state"] as? String == "active")
            let leases = try #require(versions[0]["leases"] as? [[String: Any]])
            #expect(leases.map { $0["gateway"] as? String } == ["host-0"])

            let text = try Self.run(["functions", "--socket", hosts[0].socketPath])
            #expect(text.contains(name) && text.contains("3 entries") && text.contains("leased by host-0"))

            let purged = try Self.run(["purge", name, "--version", version, "--socket", hosts[0].socketPath])
            #expect(purged.contains("deleted 3 entries"))
            #expect(try await hosts.version(version)?.entries == 0)
            #expect(try worker.call("latte", version: 1).ranHere, "the entry is gone, so the worker computes")

            let stats = try Self.run(["stats", "--socket", hosts[0].socketPath])
            #expect(stats.contains("\(name): 1 hits, 4 misses"))
            #expect(hosts[0].stop() == 0)
        }

        /// Runs the `cache-gateway` executable and returns its standard output.
        static func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = try GatewayProcess.executable
            process.arguments = arguments
            let (status, output) = try process.runToEnd(includingErrors: false)
            guard status == 0 else { throw TestFailure("cache-gateway \(arguments) exited with \(status)") }
            return output
        }
    }
}
