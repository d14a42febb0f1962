import Foundation
import GatewayClient

/// A price quote: the cached function's result.
struct Quote: Codable, Sendable {
    var product: String
    var cents: Int
    /// The process that ran the computation.
    var computedInProcess: Int32
}

/// Counts the runs of the cached body, to tell a miss from a hit.
final class BodyRuns: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func increment() { self.lock.withLock { self.count += 1 } }
    var value: Int { self.lock.withLock { self.count } }
}

let bodyRuns = BodyRuns()

/// The cached function. Its own code is the same in every build of this
/// worker; what it computes depends on `PriceRules` (Rules.swift), which the
/// end-to-end test changes between two builds.
enum Pricing {
    @Cached(ttl: .seconds(300))
    static func quote(for product: String) async -> Quote {
        bodyRuns.increment()
        return Quote(product: product, cents: PriceRules.price(of: product), computedInProcess: getpid())
    }
}
