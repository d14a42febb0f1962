import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import Testing

extension ClientIntegrationTests.CacheRuntimeTests {
    @Test(arguments: ["memory", "redis"])
    func invalidateFromCodeDeletesOneCallsEntryInEveryVersionOrAWholeFunction(backend: String) async throws {
        // A generous lookup timeout: this test counts computations, and on a
        // busy machine Redis may take longer than the default 5 ms to answer.
        let arguments = ["--lookup-timeout-ms", "2000"]
            + (backend == "redis" ? ["--redis", "unix://\(try TestRedis.socketPath)", "--namespace", "inv\(UInt32.random(in: 0...UInt32.max))"] : [])
        let gateway = try GatewayProcess(arguments: arguments)
        self.use(gateway)
        let counter = Counter()
        func price(_ item: String, version: String) async -> Int {
            await cache(ttl: .seconds(60), function: "price(of:)", version: version, arguments: item) {
                counter.increment()
                return item.count * 100
            }
        }
        for version in ["v1", "v2"] {
            for item in ["tea", "coffee"] { _ = await price(item, version: version) }
        }
        #expect(counter.count == 4)
        // Stores are not awaited by the runtime; the store and lookup of one
        // connection are served in order, so this hit also proves they landed.
        _ = await price("coffee", version: "v2")
        #expect(counter.count == 4)

        // One call's entry, in both versions.
        let deleted = try await invalidate(function: "GatewayClientTests.price(of:)", returning: Int.self, arguments: "tea")
        #expect(deleted == 2)
        _ = await price("tea", version: "v1")
        _ = await price("tea", version: "v2")
        #expect(counter.count == 6, "both versions recompute tea")
        _ = await price("coffee", version: "v1")
        #expect(counter.count == 6, "coffee was not touched")

        // A different result type is a different key: nothing to delete.
        #expect(try await invalidate(function: "GatewayClientTests.price(of:)", returning: String.self, arguments: "coffee") == 0)

        // The whole function, one version, then all.
        #expect(try await invalidateAll(function: "GatewayClientTests.price(of:)", version: "v1") == 2)
        #expect(try await invalidateAll(function: "GatewayClientTests.price(of:)") == 2)
        _ = await price("coffee", version: "v2")
        #expect(counter.count == 7)
        #expect(gateway.stop() == 0)
    }

    /// `invalidate` and `invalidateAll` take the full name, `Module.Name`, with
    /// the module the cached function is declared in, and use it as given:
    /// called from another module (this test's), they delete what a call in
    /// PricingKit cached. The module qualifying the name is the cached
    /// function's, not the caller's.
    @Test func invalidateTakesTheFullNameFromAnyModule() async throws {
        let gateway = try GatewayProcess(arguments: ["--lookup-timeout-ms", "2000"])
        self.use(gateway)
        let counter = Counter()
        // A function cached in the module PricingKit, as its `@Cached` expansion calls the runtime.
        func quote(for product: String) async -> Int {
            await cache(ttl: .seconds(60), function: "Pricing.quote(for:)", version: "v1", fileID: "PricingKit/Pricing.swift", arguments: product) {
                counter.increment()
                return product.count
            }
        }
        _ = await quote(for: "tea")
        _ = await quote(for: "coffee")
        _ = await quote(for: "tea")
        #expect(counter.count == 2, "the third call is a hit")

        let deleted = try await invalidate(function: "PricingKit.Pricing.quote(for:)", returning: Int.self, arguments: "tea")
        #expect(deleted == 1)
        _ = await quote(for: "tea")
        #expect(counter.count == 3, "tea's entry is gone: the lookup missed")
        _ = await quote(for: "coffee")
        #expect(counter.count == 3, "coffee's entry is still there")

        #expect(try await invalidateAll(function: "PricingKit.Pricing.quote(for:)") == 2)
        _ = await quote(for: "coffee")
        #expect(counter.count == 4, "every entry of the function is gone")

        // The gateway lists the function under that same name.
        let admin = try await gateway.connect(name: "admin")
        guard case .functionsReply(let functions) = try await admin.request(.functions) else {
            Issue.record("expected a functions reply")
            return
        }
        #expect(functions.contains { $0.function == "PricingKit.Pricing.quote(for:)" }, "\(functions.map(\.function))")
        #expect(gateway.stop() == 0)
    }

    @Test func invalidateThrowsATypedErrorWhenTheGatewayIsAbsent() async throws {
        self.use(nil)
        await #expect(throws: GatewayError.self) {
            try await invalidateAll(function: "GatewayClientTests.price(of:)")
        }
        do {
            try await invalidateAll(function: "GatewayClientTests.price(of:)")
        } catch {
            #expect(error.code == .unavailable)
        }
    }
}
