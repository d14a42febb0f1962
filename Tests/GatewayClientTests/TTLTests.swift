import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

/// TTLs and timeouts at the edges of their types: none may crash a worker.
extension ClientIntegrationTests.CacheRuntimeTests {
    /// A scripted gateway that misses every lookup, with the shared client on it.
    private func scriptedPeer() throws -> ScriptedGateway {
        let peer = try ScriptedGateway { unanswered in unanswered.map(ScriptedGateway.answer) }
        CacheClient.configure(CacheClient.Configuration(socketPath: peer.socketPath, clientName: "TTLTests", lookupTimeout: .seconds(5), connectTimeout: .seconds(5)))
        return peer
    }

    /// The requests `peer` read, once every frame written before a ping has
    /// arrived (frames of one connection arrive in order).
    private func requestsAfterPing(_ peer: ScriptedGateway) async throws -> [GatewayMessage] {
        #expect(try await CacheClient.shared.request(.ping, timeout: .seconds(10)).body == .pong)
        return peer.requests
    }

    private static func stores(_ requests: [GatewayMessage], of function: String) -> [Store] {
        requests.compactMap { request in
            guard case .store(let store) = request.body, store.function.function.hasSuffix(function) else { return nil }
            return store
        }
    }

    private static func lookups(_ requests: [GatewayMessage], of function: String) -> Int {
        requests.count { request in
            guard case .lookup(let lookup) = request.body else { return false }
            return lookup.function.function.hasSuffix(function)
        }
    }

    /// `Int64.max` seconds used to trap (seconds × 1000 overflowed before the
    /// clamp); it is clamped to a year. A TTL under a millisecond rounds up to one.
    @Test func aHugeTTLIsClampedToAYearAndATinyOneRoundsUpToAMillisecond() async throws {
        let peer = try self.scriptedPeer()
        let huge: Int = await cache(ttl: .seconds(Int64.max), function: "huge()", version: "v1") { 1 }
        let sync: Int = cacheSync(ttl: Duration(secondsComponent: Int64.max, attosecondsComponent: 999_999_999_999_999_999), function: "hugeSync()", version: "v1") { 2 }
        let tiny: Int = await cache(ttl: .nanoseconds(1), function: "tiny()", version: "v1") { 3 }
        #expect(huge == 1)
        #expect(sync == 2)
        #expect(tiny == 3)
        let requests = try await self.requestsAfterPing(peer)
        #expect(Self.stores(requests, of: "huge()").map(\.ttlMilliseconds) == [Store.maximumTTLMilliseconds])
        #expect(Self.stores(requests, of: "hugeSync()").map(\.ttlMilliseconds) == [Store.maximumTTLMilliseconds])
        #expect(Self.stores(requests, of: "tiny()").map(\.ttlMilliseconds) == [1])
    }

    /// A TTL of zero or less caches nothing: the body runs, with no lookup and no store.
    @Test func aZeroOrNegativeTTLRunsTheFunctionUncachedWithNoLookupAndNoStore() async throws {
        let peer = try self.scriptedPeer()
        let counter = Counter()
        for _ in 0..<2 {
            _ = await cache(ttl: .zero, function: "zero()", version: "v1") { counter.increment(); return 1 }
            _ = await cache(ttl: .seconds(-5), function: "negative()", version: "v1") { counter.increment(); return 2 }
            _ = await cache(ttl: .seconds(Int64.min), function: "mostNegative()", version: "v1") { counter.increment(); return 3 }
            _ = cacheSync(ttl: .nanoseconds(-1), function: "negativeSync()", version: "v1") { counter.increment(); return 4 }
        }
        #expect(counter.count == 8)
        let requests = try await self.requestsAfterPing(peer)
        for function in ["zero()", "negative()", "mostNegative()", "negativeSync()"] {
            #expect(Self.lookups(requests, of: function) == 0, "\(function) was looked up")
            #expect(Self.stores(requests, of: function).isEmpty, "\(function) was stored")
        }
    }

    /// The conversions behind a store frame, for every `Duration`.
    @Test func durationsConvertWithoutOverflow() {
        let year = Store.maximumTTLMilliseconds
        #expect(CacheClient.ttlMilliseconds(.zero) == nil)
        #expect(CacheClient.ttlMilliseconds(.nanoseconds(-1)) == nil)
        #expect(CacheClient.ttlMilliseconds(.seconds(Int64.min)) == nil)
        #expect(CacheClient.ttlMilliseconds(.nanoseconds(1)) == 1)
        #expect(CacheClient.ttlMilliseconds(.microseconds(1_999)) == 1)
        #expect(CacheClient.ttlMilliseconds(.seconds(60)) == 60_000)
        #expect(CacheClient.ttlMilliseconds(.milliseconds(year)) == year)
        #expect(CacheClient.ttlMilliseconds(.milliseconds(year + 1)) == year)
        #expect(CacheClient.ttlMilliseconds(.seconds(Int64.max)) == year)
        #expect(CacheClient.ttlMilliseconds(Duration(secondsComponent: Int64.max, attosecondsComponent: Int64.max)) == year)
        #expect(CacheClient.microseconds(.seconds(-1)) == 0)
        #expect(CacheClient.microseconds(.milliseconds(3)) == 3_000)
        #expect(CacheClient.microseconds(.seconds(Int64.max)) == UInt64.max)
        #expect(CacheClient.microseconds(Duration(secondsComponent: Int64.max, attosecondsComponent: Int64.max)) == UInt64.max)
    }

    /// Timeouts of any size and sign: a poll timeout computed from a deadline
    /// far away used to overflow (`nanoseconds + 999_999`); a negative backoff
    /// made every call try to connect.
    @Test func extremeTimeAmountsNeitherTrapNorGoNegative() {
        #expect(GatewayLink.milliseconds(.nanoseconds(Int64.max)) == Int32.max)
        #expect(GatewayLink.milliseconds(.nanoseconds(Int64.min)) == 0)
        #expect(GatewayLink.milliseconds(.nanoseconds(1)) == 1)
        #expect(GatewayLink.milliseconds(.milliseconds(2)) == 2)
        let negative = ConnectionStateMachine(initialDelay: .nanoseconds(-100), maximumDelay: .nanoseconds(Int64.min))
        #expect(negative.backoff(afterFailures: 1) == .zero)
        #expect(negative.backoff(afterFailures: Int.max) == .zero)
        let huge = ConnectionStateMachine(initialDelay: .nanoseconds(Int64.max), maximumDelay: .nanoseconds(Int64.max))
        #expect(huge.backoff(afterFailures: Int.max) == .nanoseconds(Int64.max))
    }
}
