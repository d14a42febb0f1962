import GatewayVersions
import Testing

/// A small module, as source files, that the tests edit one way or another
/// and then compare the versions of its cached functions.
struct Fixture {
    var files: [String: String]

    /// The module: `Pricing.quote(for:)` reaches `Rules.price(of:base:)` (with
    /// a default argument), which calls `Rules.discounted(_:)` (two calls deep),
    /// which reads the constant `discountRate`; its result is `Quote`.
    /// `Pricing.unrelated()` is reached by nothing cached.
    static let module = Fixture(files: [
        "Pricing.swift": """
            import GatewayClient

            struct Quote: Codable {
                var product: String
                var cents: Int
            }

            enum Pricing {
                @Cached(ttl: .seconds(300))
                static func quote(for product: String) -> Quote {
                    Quote(product: product, cents: Rules.price(of: product))
                }

                static func unrelated() -> Int {
                    42
                }
            }
            """,
        "Rules.swift": """
            let discountRate = 10

            enum Rules {
                static func price(of product: String, base: Int = 100) -> Int {
                    discounted(base * product.count)
                }

                static func discounted(_ cents: Int) -> Int {
                    cents * (100 - discountRate) / 100
                }
            }
            """,
    ])

    /// The fixture with `old` replaced by `new` in `file`; the edit must change the text.
    func replacing(_ old: String, with new: String, in file: String, sourceLocation: SourceLocation = #_sourceLocation) -> Fixture {
        var copy = self
        let text = self.files[file] ?? ""
        copy.files[file] = text.replacing(old, with: new)
        #expect(copy.files[file] != text, "the edit changed nothing", sourceLocation: sourceLocation)
        return copy
    }

    /// The fixture with `file` added (or replaced).
    func adding(_ file: String, _ text: String) -> Fixture {
        var copy = self
        copy.files[file] = text
        return copy
    }

    /// The versions of the fixture's cached functions, its files in name order.
    func versions(packages: [String] = []) throws -> ModuleVersions {
        try ModuleVersions(files: self.files.keys.sorted().map { SourceFile(path: $0, text: self.files[$0]!) }, packages: packages)
    }

    /// The version of the cached function `name`.
    func version(of name: String = "Pricing.quote(for:)", sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let function = try #require(try self.versions().function(named: name), "no cached function \(name)", sourceLocation: sourceLocation)
        return try #require(function.version, sourceLocation: sourceLocation)
    }
}
