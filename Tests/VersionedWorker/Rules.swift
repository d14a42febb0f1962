/// The helpers of `Pricing.quote(for:)`: `price(of:)` calls `discounted(_:)`,
/// two calls deep from the cached function. The end-to-end test builds this
/// worker a second time with another discount here.
enum PriceRules {
    static func price(of product: String) -> Int {
        discounted(product.unicodeScalars.reduce(0) { $0 + Int($1.value) } * 10)
    }

    static func discounted(_ cents: Int) -> Int {
        cents * 90 / 100
    }
}
