import Foundation
@testable import GatewayClientRuntime
import GatewayTestSupport
import InMemoryLogging
import Logging
import MetricsTestKit
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// What a worker sees of its calls through the injected metrics factory and
    /// logger: every lookup counted by its result, and one log line per change
    /// of the gateway's state, never one per call.
    @Suite(.serialized) struct ClientObservabilityTests {
        typealias Entry = InMemoryLogHandler.Entry

        static func count(_ factory: TestMetrics, _ label: String, _ result: String? = nil) -> Int64 {
            let dimensions = result.map { [("result", $0)] } ?? []
            return (try? factory.expectCounter(label, dimensions).totalValue) ?? 0
        }

        static func lookups(_ factory: TestMetrics, _ result: String) -> Int64 {
            self.count(factory, "cache_gateway_client_lookups_total", result)
        }

        static func lines(_ logs: InMemoryLogHandler, containing text: String) -> [Entry] {
            logs.entries.filter { "\($0.message)".contains(text) }
        }

        @Test func hitsMissesBypassesAndTheGatewaysStateChangesAreCountedAndLogged() async throws {
            let gateway = try GatewayProcess()
            let factory = TestMetrics()
            let logs = InMemoryLogHandler()
            CacheClient.configure(CacheClient.Configuration(
                socketPath: gateway.socketPath, clientName: "ClientObservabilityTests",
                // Long enough that a running gateway always answers in time on
                // a loaded machine; the stopped one below times out.
                lookupTimeout: .milliseconds(300), connectTimeout: .seconds(5),
                // One failed connect, then no other attempt during the test.
                reconnectInitialDelay: .seconds(600), reconnectMaximumDelay: .seconds(600),
                circuitBreakerThreshold: 3, circuitBreakerInitialOpenTime: .milliseconds(200), circuitBreakerMaximumOpenTime: .milliseconds(200),
                logger: Logger(label: "test", factory: { _ in logs }),
                metricsFactory: factory
            ))
            defer { CacheClient.configure(CacheClient.Configuration()) }
            let computed = CacheRuntimeTests.Counter()
            func square(_ x: Int) async -> Int {
                await cache(ttl: .seconds(60), function: "observedSquare(_:)", version: "v1", arguments: x) {
                    computed.increment()
                    return x * x
                }
            }

            // A miss (stored), then a hit.
            #expect(await square(3) == 9)
            #expect(await square(3) == 9)
            #expect(Self.lookups(factory, "miss") == 1)
            #expect(Self.lookups(factory, "hit") == 1)
            #expect(Self.count(factory, "cache_gateway_client_stores_total") == 1)
            #expect(Self.count(factory, "cache_gateway_client_connects_total", "ok") == 1)
            #expect(Self.lines(logs, containing: "connected to the gateway").count == 1)

            // A stopped gateway: three timeouts open the breaker (one line),
            // then calls bypass without asking.
            try gateway.suspend()
            for x in 10..<20 { #expect(await square(x) == x * x) }
            #expect(Self.lookups(factory, "bypass_timeout") == 3)
            #expect(Self.lookups(factory, "bypass_circuit_open") >= 1)
            #expect(Self.lines(logs, containing: "does not answer lookups").count == 1)
            #expect(Self.lines(logs, containing: "does not answer lookups").first?.level == .warning)

            // Running again: the next probe after the 200 ms pause finds it
            // answering; the breaker closes (one line).
            gateway.resume()
            let deadline = ContinuousClock.now + .seconds(30)
            while Self.lines(logs, containing: "answers lookups again").isEmpty {
                guard ContinuousClock.now < deadline else { throw TestFailure("the breaker did not close") }
                _ = await square(3)
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(Self.lines(logs, containing: "answers lookups again").count == 1)

            // Gone: the connection is lost (one line), one connect fails (one
            // line), and the calls after it bypass without a line each.
            _ = gateway.stop(signal: SIGKILL)
            while Self.lines(logs, containing: "lost the connection").isEmpty {
                guard ContinuousClock.now < deadline else { throw TestFailure("the lost connection was not logged") }
                _ = await square(4)
                try await Task.sleep(for: .milliseconds(10))
            }
            let before = Self.lookups(factory, "bypass_unreachable")
            for x in 100..<200 { #expect(await square(x) == x * x) }
            #expect(Self.lookups(factory, "bypass_unreachable") - before >= 99)
            #expect(Self.count(factory, "cache_gateway_client_connects_total", "failed") == 1)
            #expect(Self.lines(logs, containing: "cannot reach the gateway").count == 1)
            #expect(Self.lines(logs, containing: "lost the connection").count == 1)
            // Every lookup was counted exactly once.
            let counted = ["hit", "miss", "bypass_unreachable", "bypass_circuit_open", "bypass_timeout", "bypass_declined"]
                .map { Self.lookups(factory, $0) }.reduce(0, +)
            #expect(counted == Int64(computed.count) + Self.lookups(factory, "hit"))
        }
    }
}
