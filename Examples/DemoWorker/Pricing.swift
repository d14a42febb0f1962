import Foundation
import GatewayClient

/// A price quote: the demo's slow function's result.
struct Quote: Codable, Equatable, Sendable {
    var product: String
    var cents: Int
    /// Which version of the pricing code computed this quote.
    var computedBy: String
    /// The process that ran the computation (to show hits crossing processes).
    var computedInProcess: Int32
}

/// Whether the last quote was computed in this process (a miss) or served by
/// the gateway (a hit). Set by the function bodies below.
let bodyRuns = BodyRuns()

final class BodyRuns: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}

/// The demo's slow function in two versions of its code. Both carry the same
/// name, as one function would across a redeploy; their sources differ, so
/// `@Cached` gives them different versions and their entries never mix.
enum Pricing {
    /// Version 1: list price.
    @Cached(ttl: .seconds(300), name: "Pricing.quote(for:)")
    static func quoteV1(for product: String) async -> Quote {
        bodyRuns.increment()
        try? await Task.sleep(for: .milliseconds(400))  // a slow database query
        let cents = product.unicodeScalars.reduce(0) { $0 + Int($1.value) } * 10
        return Quote(product: product, cents: cents, computedBy: "v1", computedInProcess: getpid())
    }

    /// Version 2: the same function after a change, with a 10% discount.
    @Cached(ttl: .seconds(300), name: "Pricing.quote(for:)")
    static func quoteV2(for product: String) async -> Quote {
        bodyRuns.increment()
        try? await Task.sleep(for: .milliseconds(400))  // a slow database query
        let cents = product.unicodeScalars.reduce(0) { $0 + Int($1.value) } * 9
        return Quote(product: product, cents: cents, computedBy: "v2", computedInProcess: getpid())
    }

    static func quote(for product: String, version: Int) async -> Quote {
        version == 2 ? await self.quoteV2(for: product) : await self.quoteV1(for: product)
    }
}
