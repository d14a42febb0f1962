import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

extension ClientIntegrationTests.CacheRuntimeTests {
    /// A gateway that is connected but stopped (SIGSTOP) costs the lookup
    /// timeout only until the circuit breaker opens: after three timeouts in
    /// a row, calls run uncached at once. Once the gateway runs again, a
    /// probe finds it answering and calls hit again.
    @Test func aStoppedGatewayCostsOnlyTheTimeoutsThatOpenTheCircuitBreaker() async throws {
        let gateway = try GatewayProcess()
        // Long enough that no call that skips the gateway takes it, even on a
        // loaded machine; the breaker opens after 3 timeouts, for 100 ms, then
        // twice as long after each probe that times out.
        let lookupTimeout = Duration.milliseconds(200)
        CacheClient.configure(CacheClient.Configuration(
            socketPath: gateway.socketPath, clientName: "StalledGatewayTests",
            lookupTimeout: lookupTimeout, connectTimeout: .seconds(5),
            circuitBreakerThreshold: 3, circuitBreakerInitialOpenTime: .milliseconds(100), circuitBreakerMaximumOpenTime: .seconds(2)
        ))
        let counter = Counter()
        func square(_ x: Int) async -> Int {
            await cache(ttl: .seconds(60), function: "stalledSquare(_:)", version: "v1", arguments: x) {
                counter.increment()
                return x * x
            }
        }
        func cube(_ x: Int) -> Int {
            cacheSync(ttl: .seconds(60), function: "stalledCube(_:)", version: "v1", arguments: x) {
                counter.increment()
                return x * x * x
            }
        }
        #expect(await square(2) == 4)  // connects and stores
        #expect(await square(2) == 4)
        #expect(counter.count == 1, "a hit")

        try gateway.suspend()
        let calls = 40
        var waited = 0
        for index in 0..<calls {
            let started = ContinuousClock.now
            let value = index.isMultiple(of: 2) ? await square(2) : cube(3)
            #expect(value == (index.isMultiple(of: 2) ? 4 : 27))
            if ContinuousClock.now - started >= lookupTimeout { waited += 1 }
        }
        // Three timeouts open the breaker; the 37 calls after them take
        // microseconds each, well within its first 100 ms open, unless the
        // machine stalls the test long enough for a probe or two (each
        // timing out and reopening the breaker for longer).
        #expect(waited >= 3, "the timeouts that open the breaker")
        #expect(waited <= 5, "\(waited) of \(calls) calls waited for the lookup timeout")
        #expect(counter.count == 1 + calls)
        guard case .open = CacheClient.shared.circuitState else {
            Issue.record("expected the circuit to be open, it is \(CacheClient.shared.circuitState)")
            gateway.resume()
            return
        }

        gateway.resume()
        // The breaker lets a probe through after at most 2 s (its longest
        // open time); the probe is answered, and calls look up again: the
        // entry stored before the stop is a hit.
        let deadline = ContinuousClock.now + .seconds(30)
        var hit = false
        while !hit && ContinuousClock.now < deadline {
            let before = counter.count
            _ = await square(2)
            hit = counter.count == before
            if !hit { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(hit, "no hit within 30 s of the gateway resuming")
        #expect(CacheClient.shared.circuitState == .closed(timeouts: 0))
        #expect(gateway.stop() == 0)
    }
}
