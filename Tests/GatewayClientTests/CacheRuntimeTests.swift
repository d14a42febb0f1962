import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOConcurrencyHelpers
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// `cache(ttl:…)` and `cacheSync(ttl:…)` against a real gateway process.
    ///
    /// They share the process-wide `CacheClient.shared`, so they run one at a time.
    @Suite(.serialized) struct CacheRuntimeTests {
        /// Counts how often a body ran.
        final class Counter: Sendable {
            private let value = NIOLockedValueBox(0)
            func increment() { self.value.withLockedValue { $0 += 1 } }
            var count: Int { self.value.withLockedValue { $0 } }
        }

        struct Boom: Error, Equatable {}

        /// Points the shared client at `gateway` with timeouts generous enough for a debug build.
        func use(_ gateway: GatewayProcess?) {
            CacheClient.configure(CacheClient.Configuration(
                socketPath: gateway?.socketPath ?? "/nonexistent/cache-gateway-test.sock",
                clientName: "CacheRuntimeTests",
                lookupTimeout: .seconds(2),
                connectTimeout: .seconds(2)
            ))
        }

        @Test func aResultIsComputedOnceAndThenServedFromTheGateway() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let counter = Counter()
            func slowSquare(_ x: Int) async -> Int {
                await cache(ttl: .seconds(60), function: "slowSquare(_:)", version: "v1", arguments: x) {
                    counter.increment()
                    return x * x
                }
            }
            #expect(await slowSquare(12) == 144)
            #expect(await slowSquare(12) == 144)
            #expect(await slowSquare(12) == 144)
            #expect(counter.count == 1)
            #expect(await slowSquare(13) == 169)
            #expect(counter.count == 2)
            #expect(gateway.stop() == 0)
        }

        @Test func twoVersionsNeverSeeEachOthersResults() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let v1 = await cache(ttl: .seconds(60), function: "label(_:)", version: "v1", arguments: 7) { "old code: \(7)" }
            let v2 = await cache(ttl: .seconds(60), function: "label(_:)", version: "v2", arguments: 7) { "new code: \(7)" }
            #expect(v1 == "old code: 7")
            #expect(v2 == "new code: 7")
            #expect(await cache(ttl: .seconds(60), function: "label(_:)", version: "v1", arguments: 7) { "recomputed" } == "old code: 7")
            #expect(gateway.stop() == 0)
        }

        @Test func theResultTypeIsPartOfTheKey() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let asInt: Int = await cache(ttl: .seconds(60), function: "parse(_:)", version: "v1", arguments: "42") { 42 }
            let asString: String = await cache(ttl: .seconds(60), function: "parse(_:)", version: "v1", arguments: "42") { "forty-two" }
            #expect(asInt == 42)
            #expect(asString == "forty-two")
            #expect(gateway.stop() == 0)
        }

        @Test func errorsPropagateAndAreNotCached() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let counter = Counter()
            func flaky(fail: Bool) async throws -> Int {
                try await cache(ttl: .seconds(60), function: "flaky()", version: "v1", arguments: 1) {
                    counter.increment()
                    if fail { throw Boom() }
                    return 1
                }
            }
            await #expect(throws: Boom.self) { try await flaky(fail: true) }
            #expect(try await flaky(fail: false) == 1)
            #expect(try await flaky(fail: true) == 1)  // now cached
            #expect(counter.count == 2)
            #expect(gateway.stop() == 0)
        }

        @Test func aResultLargerThanTheGatewaysLimitIsReturnedAndNotStored() async throws {
            let gateway = try GatewayProcess(arguments: ["--max-value-size", "1024", "--max-frame-size", "65536"])
            self.use(gateway)
            let counter = Counter()
            func big() async -> [UInt8] {
                await cache(ttl: .seconds(60), function: "big()", version: "v1") {
                    counter.increment()
                    return [UInt8](repeating: 7, count: 4_096)
                }
            }
            #expect(await big().count == 4_096)
            #expect(await big().count == 4_096)
            #expect(counter.count == 2)
            #expect(gateway.stop() == 0)
        }

        @Test func identicalConcurrentCallsRunTheBodyOnce() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let counter = Counter()
            let release = AsyncStream<Void>.makeStream()
            let results = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<10 {
                    group.addTask {
                        await cache(ttl: .seconds(60), function: "shared()", version: "v1", arguments: "x") {
                            counter.increment()
                            // Hold the leader until every call has looked up and joined.
                            for await _ in release.stream { break }
                            return 99
                        }
                    }
                }
                // Let the leader go once the nine others wait for it.
                let deadline = ContinuousClock.now + .seconds(30)
                while CacheClient.shared.singleFlight.waiterCount < 9 && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(5))
                }
                #expect(counter.count == 1)
                #expect(CacheClient.shared.singleFlight.waiterCount == 9)
                release.continuation.yield()
                release.continuation.finish()
                var results: [Int] = []
                for try await result in group { results.append(result) }
                return results
            }
            #expect(results == Array(repeating: 99, count: 10))
            #expect(counter.count == 1)
            #expect(gateway.stop() == 0)
        }

        @Test func withTheGatewayAbsentTheFunctionRunsAndNoConnectIsTriedEachCall() async throws {
            self.use(nil)
            let counter = Counter()
            for _ in 0..<50 {
                let value = await cache(ttl: .seconds(60), function: "absent()", version: "v1", arguments: 1) {
                    counter.increment()
                    return "computed"
                }
                #expect(value == "computed")
            }
            #expect(counter.count == 50)
            // One attempt failed; the client now waits before the next one.
            guard case .backingOff = CacheClient.shared.connectionState else {
                Issue.record("expected the client to be backing off, it is \(CacheClient.shared.connectionState)")
                return
            }
        }

        @Test func theSynchronousFormCachesToo() throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let counter = Counter()
            func cube(_ x: Int) -> Int {
                cacheSync(ttl: .seconds(60), function: "cube(_:)", version: "v1", arguments: x) {
                    counter.increment()
                    return x * x * x
                }
            }
            #expect(cube(3) == 27)
            #expect(cube(3) == 27)
            #expect(counter.count == 1)
            #expect(gateway.stop() == 0)
        }

        @Test func afterTheGatewayRestartsTheClientUsesItAgain() async throws {
            let first = try GatewayProcess()
            self.use(first)
            let counter = Counter()
            func value() async -> Int {
                await cache(ttl: .seconds(60), function: "restart()", version: "v1") {
                    counter.increment()
                    return 5
                }
            }
            #expect(await value() == 5)
            #expect(first.stop() == 0)
            // Gateway gone: computed locally.
            #expect(await value() == 5)
            let second = try GatewayProcess(reuseSocketOf: first)
            // Wait for the client to reconnect (its backoff), then it stores and hits again.
            let deadline = ContinuousClock.now + .seconds(10)
            var stores: UInt64 = 0
            let admin = try await second.connect(name: "admin")
            while ContinuousClock.now < deadline {
                _ = await value()
                guard case .statsReply(let stats) = try await admin.request(.stats) else { break }
                stores = stats[count: "stores"] ?? 0
                if stores > 0 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(stores > 0)
            let before = counter.count
            #expect(await value() == 5)
            #expect(counter.count == before)
            #expect(second.stop() == 0)
        }
        /// A gateway that stops answering (SIGSTOP) makes lookups time out: the
        /// function runs after about the lookup timeout, async and sync, and the
        /// client uses the gateway again once it answers.
        @Test func aGatewayThatDoesNotAnswerCostsTheLookupTimeoutAndTheFunctionRuns() async throws {
            let gateway = try GatewayProcess()
            CacheClient.configure(CacheClient.Configuration(socketPath: gateway.socketPath, clientName: "CacheRuntimeTests", lookupTimeout: .milliseconds(50), connectTimeout: .seconds(2)))
            let counter = Counter()
            func double(_ x: Int) async -> Int {
                await cache(ttl: .seconds(60), function: "double(_:)", version: "v1", arguments: x) {
                    counter.increment()
                    return x * 2
                }
            }
            func triple(_ x: Int) -> Int {
                cacheSync(ttl: .seconds(60), function: "triple(_:)", version: "v1", arguments: x) {
                    counter.increment()
                    return x * 3
                }
            }
            #expect(await double(1) == 2)  // connects
            try gateway.suspend()
            let started = ContinuousClock.now
            #expect(await double(2) == 4)
            #expect(triple(3) == 9)
            let elapsed = ContinuousClock.now - started
            #expect(counter.count == 3)
            #expect(elapsed >= .milliseconds(100))  // two lookups, each waited for its timeout
            #expect(elapsed < .seconds(5))
            gateway.resume()
            // The late replies are dropped; the same connection serves the next calls.
            #expect(await double(4) == 8)
            #expect(await double(4) == 8)
            #expect(counter.count == 4)
            #expect(gateway.stop() == 0)
        }

        /// The internal request API (what `invalidate` builds on) returns the
        /// gateway's reply, and throws `.unavailable` with no gateway.
        @Test func anyRequestCanBeSentAndItsReplyAwaited() async throws {
            let gateway = try GatewayProcess()
            self.use(gateway)
            let pong = try await CacheClient.shared.request(.ping, timeout: .seconds(5))
            #expect(pong.body == .pong)
            let stats = try await CacheClient.shared.request(.stats, timeout: .seconds(5))
            guard case .statsReply(let values) = stats.body else {
                Issue.record("expected a stats reply, got \(stats.body)")
                return
            }
            #expect(values[count: "connections"] == 1)
            // An error reply is a reply, not a thrown error.
            let refused = try await CacheClient.shared.request(.store(Store(function: FunctionVersion(function: "f", version: "v"), key: try CacheKey(hashing: 1), ttlMilliseconds: 0, computeMicroseconds: 0, value: ByteBuffer())), timeout: .seconds(5))
            guard case .error(let error) = refused.body else {
                Issue.record("expected an error reply, got \(refused.body)")
                return
            }
            #expect(error.code == .invalidField)
            #expect(gateway.stop() == 0)

            self.use(nil)
            await #expect(throws: GatewayError(.unavailable, "")) { try await CacheClient.shared.request(.ping, timeout: .seconds(1)) }
        }
    }
}
