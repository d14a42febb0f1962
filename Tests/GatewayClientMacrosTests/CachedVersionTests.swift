import GatewayDigest
@testable import GatewayClientMacros
import Testing

/// The source-hash version: what changes it and what doesn't.
@Suite("@Cached version")
struct CachedVersionTests {
    static let original = """
        struct InvoiceService {
            @Cached(ttl: .seconds(300))
            func total(for customer: CustomerID, currency: Currency) async throws -> Money {
                let invoices = try await database.invoices(of: customer)
                return invoices.reduce(.zero(currency)) { $0 + $1.amount }
            }
        }
        """

    /// `original` with `edit` applied, which must change it.
    private func edited(_ edit: (String) -> String, sourceLocation: Testing.SourceLocation = #_sourceLocation) -> String {
        let source = edit(Self.original)
        #expect(source != Self.original, "the edit changed nothing", sourceLocation: sourceLocation)
        return source
    }

    private func replacing(_ old: String, with new: String) -> (String) -> String {
        { $0.replacing(old, with: new) }
    }

    @Test func isSixtyFourLowercaseHexDigits() throws {
        let version = try expandedVersion(Self.original)
        #expect(version.count == 64)
        #expect(version.allSatisfy { "0123456789abcdef".contains($0) })
    }

    @Test func expansionAndDirectComputationAgree() throws {
        #expect(try expandedVersion(Self.original) == directVersion(Self.original))
    }

    @Test func isTheSHA256OfTheLengthPrefixedTokensWithoutTheAttribute() throws {
        // Written out by hand, so that any change to the algorithm (which changes
        // every version, and so empties every cache) is deliberate.
        let tokens = ["func", "f", "(", "x", ":", "Int", ")", "->", "String", "{", "\"", "a b", "\"", "}"]
        var text = "cache-gateway @Cached version 1\n"
        for token in tokens {
            text += "\(token.utf8.count):\(token)"
        }
        let expected = try SHA256.hash(Array(text.utf8)).hexString
        #expect(try expandedVersion("@Cached(ttl: .seconds(1))\nfunc f(x: Int) -> String { \"a b\" }") == expected)
    }

    // MARK: Edits that keep the version

    @Test func commentOnlyEditsKeepTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let commented = self.edited(
            self.replacing(
                "let invoices = try await database.invoices(of: customer)",
                with: "// Fetch everything first.\n        let invoices = try await database.invoices(of: customer) /* all of them */"
            )
        )
        #expect(try expandedVersion(commented) == base)
        let documented = self.edited(self.replacing("    @Cached", with: "    /// The total, in `currency`.\n    @Cached"))
        #expect(try expandedVersion(documented) == base)
        let inSignature = self.edited(self.replacing("currency: Currency)", with: "currency: Currency /* ISO 4217 */)"))
        #expect(try expandedVersion(inSignature) == base)
    }

    @Test func whitespaceOnlyEditsKeepTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let reindented = self.edited(self.replacing("        ", with: "\t\t"))
        #expect(try expandedVersion(reindented) == base)
        let wrapped = self.edited(
            self.replacing("(for customer: CustomerID, currency: Currency)", with: "(\n        for customer: CustomerID,\n        currency: Currency\n    )")
        )
        #expect(try expandedVersion(wrapped) == base)
        let spaced = self.edited(self.replacing("{ $0 + $1.amount }", with: "{$0+$1.amount}"))
        #expect(try expandedVersion(spaced) == base)
        let blankLines = self.edited(self.replacing("\n        return", with: "\n\n\n        return"))
        #expect(try expandedVersion(blankLines) == base)
    }

    @Test func cachedArgumentsDoNotChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let ttl = self.edited(self.replacing(".seconds(300)", with: ".minutes(60)"))
        #expect(try expandedVersion(ttl) == base)
        let named = self.edited(self.replacing(".seconds(300)", with: ".seconds(300), name: \"Billing.total\""))
        #expect(try expandedVersion(named) == base)
        let keyed = self.edited(self.replacing(".seconds(300)", with: ".seconds(300), key: \\InvoiceService.id"))
        #expect(try expandedVersion(keyed) == base)
    }

    @Test func attributePositionDoesNotMatter() throws {
        let first = """
            @Cached(ttl: .seconds(1)) @discardableResult
            func f(x: Int) -> Int { x }
            """
        let last = """
            @discardableResult @Cached(ttl: .seconds(9))
            func f(x: Int) -> Int { x }
            """
        #expect(try expandedVersion(first) == expandedVersion(last))
    }

    // MARK: Edits that change the version

    @Test func bodyEditsChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let body = self.edited(self.replacing("$0 + $1.amount", with: "$0 + $1.amount - $1.discount"))
        #expect(try expandedVersion(body) != base)
        let renamedLocal = self.edited(self.replacing("invoices", with: "all"))
        #expect(try expandedVersion(renamedLocal) != base)
        let literal = self.edited(self.replacing(".zero(currency)", with: ".zero(currency, \"a b\")"))
        let literal2 = self.edited(self.replacing(".zero(currency)", with: ".zero(currency, \"a\", \"b\")"))
        #expect(try expandedVersion(literal) != expandedVersion(literal2))
    }

    @Test func parameterTypeEditsChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let type = self.edited(self.replacing("customer: CustomerID", with: "customer: CustomerID.Legacy"))
        #expect(try expandedVersion(type) != base)
    }

    @Test func labelEditsChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let label = self.edited(self.replacing("for customer", with: "of customer"))
        #expect(try expandedVersion(label) != base)
        let internalName = self.edited(self.replacing("currency: Currency", with: "in currency: Currency"))
        #expect(try expandedVersion(internalName) != base)
    }

    @Test func returnTypeEditsChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let result = self.edited(self.replacing("-> Money", with: "-> Money?"))
        #expect(try expandedVersion(result) != base)
    }

    @Test func signatureEffectsAndOtherAttributesChangeTheVersion() throws {
        let base = try expandedVersion(Self.original)
        let effects = self.edited(self.replacing("async throws", with: "async"))
        #expect(try expandedVersion(effects) != base)
        let attribute = self.edited(self.replacing("    func total", with: "    @discardableResult func total"))
        #expect(try expandedVersion(attribute) != base)
    }
}
