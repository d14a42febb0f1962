import Foundation
import GatewayClient
import GatewayTestSupport
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `@Cached` function's typed error (`throws(E)`) stays typed: the runtime
/// throws exactly what the body throws.
enum QuoteError: Error, Equatable {
    case unknownProduct(String)
}

/// `@Cached` functions with typed throws, expanded by the real macro and
/// compiled: if the expansion lost the error type, this would not compile.
enum TypedPricing {
    static let runs = ClientIntegrationTests.CacheRuntimeTests.Counter()

    @Cached(ttl: .seconds(60), name: "TypedPricing.price(of:)")
    static func price(of product: String) async throws(QuoteError) -> Int {
        runs.increment()
        guard product != "unknown" else { throw .unknownProduct(product) }
        return product.utf8.count * 100
    }

    @Cached(ttl: .seconds(60), name: "TypedPricing.priceSync(of:)")
    static func priceSync(of product: String) throws(QuoteError) -> Int {
        runs.increment()
        guard product != "unknown" else { throw .unknownProduct(product) }
        return product.utf8.count * 10
    }
}

extension ClientIntegrationTests.CacheRuntimeTests {
    /// The runtime call with a typed closure, async and sync: the error comes
    /// out as `LoadError` (the `catch` below binds it with that static type),
    /// and a failed call stores nothing.
    @Test func typedErrorsPropagateWithTheirTypeAndAreNotCached() async throws {
        enum LoadError: Error, Equatable { case missing(Int) }
        let gateway = try GatewayProcess()
        self.use(gateway)
        let counter = Counter()
        func load(_ id: Int, fail: Bool) async throws(LoadError) -> Int {
            try await cache(ttl: .seconds(60), function: "typedLoad(_:)", version: "v1", arguments: id) { () throws(LoadError) in
                counter.increment()
                if fail { throw .missing(id) }
                return id * 10
            }
        }
        func loadSync(_ id: Int, fail: Bool) throws(LoadError) -> Int {
            try cacheSync(ttl: .seconds(60), function: "typedLoadSync(_:)", version: "v1", arguments: id) { () throws(LoadError) in
                counter.increment()
                if fail { throw .missing(id) }
                return id * 100
            }
        }

        var caught: LoadError?
        do throws(LoadError) {
            _ = try await load(1, fail: true)
        } catch {
            caught = error  // `error` is a LoadError, not `any Error`
        }
        #expect(caught == .missing(1))
        caught = nil
        do throws(LoadError) {
            _ = try loadSync(2, fail: true)
        } catch {
            caught = error
        }
        #expect(caught == .missing(2))
        #expect(counter.count == 2)

        // Nothing was cached by the failures: the next calls compute, and then hit.
        #expect(try await load(1, fail: false) == 10)
        #expect(try loadSync(2, fail: false) == 200)
        #expect(counter.count == 4)
        #expect(try await load(1, fail: true) == 10)
        #expect(try loadSync(2, fail: true) == 200)
        #expect(counter.count == 4)
        #expect(gateway.stop() == 0)
    }

    /// The same through `@Cached` on functions declared `throws(QuoteError)`.
    @Test func cachedFunctionsWithTypedThrowsKeepTheirErrorType() async throws {
        let gateway = try GatewayProcess()
        self.use(gateway)
        let before = TypedPricing.runs.count
        var caught: QuoteError?
        do throws(QuoteError) {
            _ = try await TypedPricing.price(of: "unknown")
        } catch {
            caught = error
        }
        #expect(caught == .unknownProduct("unknown"))
        caught = nil
        do throws(QuoteError) {
            _ = try TypedPricing.priceSync(of: "unknown")
        } catch {
            caught = error
        }
        #expect(caught == .unknownProduct("unknown"))
        #expect(TypedPricing.runs.count == before + 2)

        #expect(try await TypedPricing.price(of: "tea") == 300)
        #expect(try await TypedPricing.price(of: "tea") == 300)
        #expect(try TypedPricing.priceSync(of: "tea") == 30)
        #expect(try TypedPricing.priceSync(of: "tea") == 30)
        #expect(TypedPricing.runs.count == before + 4)
        // A failure is never cached: it runs (and throws) again.
        await #expect(throws: QuoteError.unknownProduct("unknown")) { try await TypedPricing.price(of: "unknown") }
        #expect(TypedPricing.runs.count == before + 5)
        #expect(gateway.stop() == 0)
    }
}
