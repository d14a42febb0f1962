import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import Testing

extension CacheRuntimeTests {
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
        let deleted = try await invalidate(function: "price(of:)", returning: Int.self, arguments: "tea")
        #expect(deleted == 2)
        _ = await price("tea", version: "v1")
        _ = await price("tea", version: "v2")
        #expect(counter.count == 6, "both versions recompute tea")
        _ = await price("coffee", version: "v1")
        #expect(counter.count == 6, "coffee was not touched")

        // A different result type is a different key: nothing to delete.
        #expect(try await invalidate(function: "price(of:)", returning: String.self, arguments: "coffee") == 0)

        // The whole function, one version, then all.
        #expect(try await invalidateAll(function: "price(of:)", version: "v1") == 2)
        #expect(try await invalidateAll(function: "price(of:)") == 2)
        _ = await price("coffee", version: "v2")
        #expect(counter.count == 7)
        #expect(gateway.stop() == 0)
    }

    @Test func invalidateThrowsATypedErrorWhenTheGatewayIsAbsent() async throws {
        self.use(nil)
        await #expect(throws: GatewayError.self) {
            try await invalidateAll(function: "price(of:)")
        }
        do {
            try await invalidateAll(function: "price(of:)")
        } catch {
            #expect(error.code == .unavailable)
        }
    }
}
