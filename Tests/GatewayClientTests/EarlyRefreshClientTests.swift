import Foundation
import GatewayClient
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Testing

/// `@Cached(ttl:refresh: .early)` functions expanded by the real macro and
/// compiled: typed throws, a synchronous function, an instance method of a
/// `Sendable` type (the body captures `self`, so it must be).
enum EarlyPricing {
    static let runs = ClientIntegrationTests.CacheRuntimeTests.Counter()

    @Cached(ttl: .seconds(2), refresh: .early, name: "EarlyPricing.price(of:)")
    static func price(of product: String) async throws(QuoteError) -> Int {
        runs.increment()
        guard product != "unknown" else { throw .unknownProduct(product) }
        return 42
    }

    @Cached(ttl: .seconds(2), refresh: .early, name: "EarlyPricing.priceSync(of:)")
    static func priceSync(of product: String) -> Int {
        runs.increment()
        return 43
    }

    struct Shop: Encodable, Sendable {
        let id: Int

        @Cached(ttl: .seconds(2), key: \Shop.id, refresh: .early, name: "EarlyPricing.Shop.stock()")
        func stock() async -> Int {
            runs.increment()
            return 44 + self.id
        }
    }
}

/// The client's side of early refresh, on the wire: only the opt-in form
/// announces it, and status 4 returns the cached value at once while the
/// body runs again in the background and its result is stored.
extension ClientIntegrationTests.CacheRuntimeTests {
    /// A scripted gateway that answers a lookup announcing refresh with
    /// status 4 and the encoded 41, every other lookup with a miss.
    private func refreshingPeer() throws -> ScriptedGateway {
        let cached = ByteBuffer(bytes: try MessagePackEncoder().encode(41))
        let peer = try ScriptedGateway { unanswered in
            unanswered.map { request in
                if case .lookup(let lookup) = request.body, lookup.refresh {
                    return GatewayMessage(id: request.id, .lookupReply(.refresh(cached)))
                }
                return ScriptedGateway.answer(request)
            }
        }
        CacheClient.configure(CacheClient.Configuration(socketPath: peer.socketPath, clientName: "EarlyRefreshClientTests", lookupTimeout: .seconds(5), connectTimeout: .seconds(5)))
        return peer
    }

    /// The stores of `function` that `peer` has read, once there are `count` (throws after 10 s).
    private func stores(_ peer: ScriptedGateway, of function: String, count: Int) async throws -> [Store] {
        let deadline = ContinuousClock.now + .seconds(10)
        while true {
            let stores = peer.requests.compactMap { request -> Store? in
                guard case .store(let store) = request.body, store.function.function.hasSuffix(function) else { return nil }
                return store
            }
            if stores.count >= count { return stores }
            guard ContinuousClock.now < deadline else { throw TestFailure("\(stores.count) stores of \(function), not \(count)") }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private func lookups(_ peer: ScriptedGateway, of function: String) -> [Lookup] {
        peer.requests.compactMap { request in
            guard case .lookup(let lookup) = request.body, lookup.function.function.hasSuffix(function) else { return nil }
            return lookup
        }
    }

    @Test func statusFourReturnsTheCachedValueAndStoresABackgroundComputation() async throws {
        let peer = try self.refreshingPeer()
        let counter = Counter()
        let value: Int = await cache(ttl: .seconds(2), refresh: .early, function: "early()", version: "v1") {
            counter.increment()
            return 42
        }
        #expect(value == 41)
        let stores = try await self.stores(peer, of: "early()", count: 1)
        #expect(counter.count == 1)
        #expect(stores.first?.value == ByteBuffer(bytes: try MessagePackEncoder().encode(42)))
        #expect(stores.first?.ttlMilliseconds == 2_000)
        #expect(self.lookups(peer, of: "early()").map(\.refresh) == [true])

        // The synchronous form does the same on a Dispatch queue.
        let sync: Int = cacheSync(ttl: .seconds(2), refresh: .early, function: "earlySync()", version: "v1") {
            counter.increment()
            return 43
        }
        #expect(sync == 41)
        #expect(try await self.stores(peer, of: "earlySync()", count: 1).first?.value == ByteBuffer(bytes: try MessagePackEncoder().encode(43)))
        #expect(self.lookups(peer, of: "earlySync()").map(\.refresh) == [true])
    }

    @Test func theMacrosEarlyFormRefreshesInTheBackground() async throws {
        let peer = try self.refreshingPeer()
        let before = EarlyPricing.runs.count
        #expect(try await EarlyPricing.price(of: "apple") == 41)
        #expect(EarlyPricing.priceSync(of: "pear") == 41)
        #expect(await EarlyPricing.Shop(id: 1).stock() == 41)
        let stored = [
            try await self.stores(peer, of: "EarlyPricing.price(of:)", count: 1),
            try await self.stores(peer, of: "EarlyPricing.priceSync(of:)", count: 1),
            try await self.stores(peer, of: "EarlyPricing.Shop.stock()", count: 1),
        ].map { $0.first?.value }
        #expect(stored == [42, 43, 45].map { ByteBuffer(bytes: try! MessagePackEncoder().encode($0)) })
        #expect(EarlyPricing.runs.count - before == 3)
    }

    @Test func onlyTheEarlyFormAnnouncesRefresh() async throws {
        let peer = try self.refreshingPeer()
        let plain: Int = await cache(ttl: .seconds(2), function: "plain()", version: "v1") { 1 }
        let never: Int = await cache(ttl: .seconds(2), refresh: .never, function: "never()", version: "v1") { 2 }
        let plainSync: Int = cacheSync(ttl: .seconds(2), function: "plainSync()", version: "v1") { 3 }
        // Misses: each computed and stored in the call.
        #expect(plain == 1)
        #expect(never == 2)
        #expect(plainSync == 3)
        for function in ["plain()", "never()", "plainSync()"] {
            #expect(self.lookups(peer, of: function).map(\.refresh) == [false], "\(function)")
        }
    }

    @Test func aBackgroundRefreshThatThrowsStoresNothing() async throws {
        let peer = try self.refreshingPeer()
        struct Failed: Error {}
        let counter = Counter()
        let value = try await cache(ttl: .seconds(2), refresh: .early, function: "failing()", version: "v1") { () throws -> Int in
            counter.increment()
            throw Failed()
        }
        #expect(value == 41)
        // After it, a ping's reply: the background body has run by then if it
        // ran at once; wait for it, then check that nothing was stored.
        let deadline = ContinuousClock.now + .seconds(10)
        while counter.count == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(counter.count == 1)
        #expect(try await CacheClient.shared.request(.ping, timeout: .seconds(10)).body == .pong)
        #expect(!peer.requests.contains { if case .store = $0.body { true } else { false } })
    }
}
