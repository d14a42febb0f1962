import GatewayDigest
import GatewayVersions
import Testing

/// What changes a cached function's version when it follows the code it
/// reaches in its module, and what does not.
@Suite("Versions that follow callees")
struct ModuleVersionsTests {
    let base = Fixture.module

    // MARK: What changes the version

    @Test func aHelperTwoCallsDeepChangesIt() throws {
        let edited = self.base.replacing("cents * (100 - discountRate) / 100", with: "cents * (100 - discountRate) / 100 - 1", in: "Rules.swift")
        #expect(try edited.version() != self.base.version())
    }

    @Test func aNewFieldInTheResultStructChangesIt() throws {
        let edited = self.base.replacing("var cents: Int\n", with: "var cents: Int\n    var currency: String = \"EUR\"\n", in: "Pricing.swift")
        #expect(try edited.version() != self.base.version())
    }

    @Test func aChangedDefaultArgumentOfACalleeChangesIt() throws {
        let edited = self.base.replacing("base: Int = 100", with: "base: Int = 120", in: "Rules.swift")
        #expect(try edited.version() != self.base.version())
    }

    @Test func aChangedConstantChangesIt() throws {
        let edited = self.base.replacing("let discountRate = 10", with: "let discountRate = 15", in: "Rules.swift")
        #expect(try edited.version() != self.base.version())
    }

    @Test func overloadsOfACalleeAreIncluded() throws {
        let overloaded = self.base.adding("More.swift", """
            extension Rules {
                static func discounted(_ cents: Double) -> Double {
                    cents * 0.9
                }
            }
            """)
        #expect(try overloaded.version() != self.base.version(), "a new overload can be the one chosen")
        let edited = overloaded.replacing("cents * 0.9", with: "cents * 0.8", in: "More.swift")
        #expect(try edited.version() != overloaded.version())
        // The same method name on an unrelated type counts too: names are resolved without types.
        let elsewhere = self.base.adding("Other.swift", "struct Coupon { func discounted(_ x: Int) -> Int { x } }")
        #expect(try elsewhere.version() != self.base.version())
    }

    @Test func protocolWitnessesAreIncluded() throws {
        let module = Fixture(files: [
            "Shapes.swift": """
                protocol Rounding {
                    func round(_ cents: Int) -> Int
                }
                struct Up: Rounding {
                    func round(_ cents: Int) -> Int { (cents + 99) / 100 * 100 }
                }
                struct Down: Rounding {
                    func round(_ cents: Int) -> Int { cents / 100 * 100 }
                }
                """,
            "Total.swift": """
                struct Order: Codable { var cents: Int }

                @Cached(ttl: .seconds(60))
                func total(of order: Order, rounding: Rule) -> Int {
                    rounding.apply(order.cents)
                }

                struct Rule: Codable {
                    var up: Bool
                    var rounding: any Rounding { up ? Up() : Down() }
                    func apply(_ cents: Int) -> Int { rounding.round(cents) }
                }
                """,
        ])
        let name = "total(of:rounding:)"
        let witness = module.replacing("cents / 100 * 100 }", with: "cents / 50 * 50 }", in: "Shapes.swift")
        #expect(try witness.version(of: name) != module.version(of: name))
        let requirement = module.replacing("func round(_ cents: Int) -> Int\n", with: "func round(_ cents: Int) -> Int\n    var name: String { get }\n", in: "Shapes.swift")
        #expect(try requirement.version(of: name) != module.version(of: name))
        let dependencies = try #require(try module.versions().function(named: name)).dependencies.map(\.display)
        #expect(dependencies.filter { $0 == "func round(_:)" }.count == 3, "the requirement and both witnesses: \(dependencies)")
    }

    @Test func aChangedCallerOfNothingButItselfChangesIt() throws {
        let edited = self.base.replacing("Quote(product: product, cents: Rules.price(of: product))", with: "Quote(product: product, cents: Rules.price(of: product) + 1)", in: "Pricing.swift")
        #expect(try edited.version() != self.base.version())
    }

    @Test func packageVersionsFoldedInChangeIt() throws {
        let one = try #require(try self.base.versions(packages: ["swift-nio=2.80.0@abc"]).function(named: "Pricing.quote(for:)")?.version)
        let other = try #require(try self.base.versions(packages: ["swift-nio=2.81.0@def"]).function(named: "Pricing.quote(for:)")?.version)
        #expect(one != other)
        #expect(one != (try self.base.version()))
    }

    @Test func anExtensionOfAReachedTypeIsIncluded() throws {
        let extended = self.base.adding("Quote+Display.swift", "extension Quote {\n    var display: String { product }\n}\n")
        #expect(try extended.version() != self.base.version())
        let edited = extended.replacing("{ product }", with: "{ product.uppercased() }", in: "Quote+Display.swift")
        #expect(try edited.version() != extended.version(), "a conformance or member added in an extension can change the encoding")
    }

    @Test func theConditionsOfIfConfigCount() throws {
        let module = Fixture(files: [
            "A.swift": """
                @Cached(ttl: .seconds(60))
                func rate() -> Int { base() }
                #if DEBUG
                func base() -> Int { 1 }
                #else
                func base() -> Int { 2 }
                #endif
                """,
        ])
        let both = try #require(try module.versions().function(named: "rate()")).dependencies.map(\.display)
        #expect(both == ["func base()", "func base()"], "every branch counts")
        let flipped = module.replacing("#if DEBUG", with: "#if !DEBUG", in: "A.swift")
        #expect(try flipped.version(of: "rate()") != module.version(of: "rate()"))
    }

    @Test func aLocalCachedFunctionGetsAVersion() throws {
        let module = Fixture(files: [
            "A.swift": """
                func outer(_ x: Int) -> Int {
                    @Cached(ttl: .seconds(60))
                    func inner(_ y: Int) -> Int { helper(y) }
                    return inner(x)
                }
                func helper(_ y: Int) -> Int { y + 1 }
                """,
        ])
        let inner = try #require(try module.versions().function(named: "outer(_:).inner(_:)"))
        #expect(inner.version != nil)
        let edited = module.replacing("y + 1", with: "y + 2", in: "A.swift")
        #expect(try edited.version(of: "outer(_:).inner(_:)") != inner.version)
    }

    // MARK: What keeps it

    @Test func commentsAndWhitespaceInTheHelperKeepIt() throws {
        let commented = self.base.replacing(
            "        cents * (100 - discountRate) / 100",
            with: "        // The discount, in percent.\n        cents  *  (100 - discountRate)   / 100 /* rounded down */",
            in: "Rules.swift"
        )
        #expect(try commented.version() == self.base.version())
        let reindented = self.base.replacing("    ", with: "\t", in: "Rules.swift")
        #expect(try reindented.version() == self.base.version())
        #expect(try commented.versions().generatedSource() == self.base.versions().generatedSource(), "the generated file stays byte for byte")
    }

    @Test func anUnrelatedChangeKeepsIt() throws {
        let edited = self.base.replacing("        42", with: "        43", in: "Pricing.swift")
        #expect(try edited.version() == self.base.version())
        let added = self.base.adding("Unrelated.swift", "func audit(_ log: [String]) -> Int { log.count }\nstruct Ledger { var lines: [String] }")
        #expect(try added.version() == self.base.version())
    }

    @Test func theOrderOfFilesAndWhereADeclarationSitsDoNotMatter() throws {
        var moved = self.base
        moved.files["Rules.swift"] = moved.files["Rules.swift"]!.replacing("let discountRate = 10\n", with: "")
        moved.files["A.swift"] = "let discountRate = 10\n"
        #expect(try moved.version() == self.base.version())
    }

    @Test func theCalleesTTLKeepsIt() throws {
        let module = Fixture(files: [
            "A.swift": """
                @Cached(ttl: .seconds(60))
                func outer(_ x: Int) -> Int { inner(x) + 1 }
                @Cached(ttl: .seconds(60))
                func inner(_ x: Int) -> Int { x * 2 }
                """,
        ])
        let longer = Fixture(files: ["A.swift": module.files["A.swift"]!.replacing("@Cached(ttl: .seconds(60))\nfunc inner", with: "@Cached(ttl: .seconds(600))\nfunc inner")])
        #expect(longer.files != module.files)
        #expect(try longer.version(of: "outer(_:)") == module.version(of: "outer(_:)"))
        let body = module.replacing("x * 2", with: "x * 3", in: "A.swift")
        #expect(try body.version(of: "outer(_:)") != module.version(of: "outer(_:)"))
    }

    // MARK: Recursion

    @Test func recursiveAndMutuallyRecursiveFunctionsGetAVersion() throws {
        let module = Fixture(files: [
            "Math.swift": """
                @Cached(ttl: .seconds(60))
                func fibonacci(_ n: Int) -> Int {
                    n < 2 ? n : fibonacci(n - 1) + fibonacci(n - 2)
                }

                @Cached(ttl: .seconds(60))
                func parity(of n: Int) -> Bool {
                    isEven(n)
                }

                func isEven(_ n: Int) -> Bool { n == 0 ? true : isOdd(n - 1) }
                func isOdd(_ n: Int) -> Bool { n == 0 ? false : isEven(n - 1) }
                """,
        ])
        let versions = try module.versions()
        let fibonacci = try #require(versions.function(named: "fibonacci(_:)")?.version)
        let parity = try #require(versions.function(named: "parity(of:)")?.version)
        #expect(fibonacci.count == 64 && parity.count == 64)
        #expect(try #require(versions.function(named: "parity(of:)")).dependencies.map(\.display) == ["func isEven(_:)", "func isOdd(_:)"])
        let edited = module.replacing("n == 0 ? false", with: "n <= 0 ? false", in: "Math.swift")
        #expect(try edited.version(of: "parity(of:)") != parity)
        #expect(try edited.version(of: "fibonacci(_:)") == fibonacci)
    }

    // MARK: The table and the functions' own versions

    @Test func theOwnVersionIsTheVersionWithoutThePlugin() throws {
        // The hash of the function's own tokens, as the macro computes it
        // (CachedExpansionTests.synchronousFunction): without the plugin, the
        // expansion passes it and GatewayClient's default returns it unchanged.
        let module = Fixture(files: ["A.swift": "@Cached(ttl: .seconds(60))\nfunc square(_ x: Int) -> Int {\n    x * x\n}\n"])
        let square = try #require(try module.versions().function(named: "square(_:)"))
        #expect(square.ownVersion == "869c03748c9e5b7ecd76a683ee5761f39f1b299b7f98cb0b2444f4e6bd61758f")
        #expect(square.version != square.ownVersion)
    }

    @Test func theGeneratedTableMapsEachLookupKeyToItsVersion() throws {
        let versions = try self.base.versions()
        let quote = try #require(versions.function(named: "Pricing.quote(for:)"))
        let source = versions.generatedSource()
        let key = OwnVersion.lookupKeyLiteral(of: quote.ownVersion)
        #expect(key == "0x" + quote.ownVersion.prefix(16))
        #expect(source.contains("case \(key): \"\(try #require(quote.version))\"  // Pricing.quote(for:)"))
        #expect(source.contains("nonisolated func __cacheGatewayVersion(_ key: UInt64, _ own: String) -> String {"))
        #expect(source.contains("default: own"))
    }

    @Test func aHandWrittenVersionIsLeftAlone() throws {
        let module = Fixture(files: ["A.swift": "@Cached(ttl: .seconds(60), version: \"7\")\nfunc seven() -> Int { helper() }\nfunc helper() -> Int { 7 }\n"])
        let versions = try module.versions()
        #expect(try #require(versions.function(named: "seven()")).version == nil)
        #expect(!versions.generatedSource().contains("case 0x"))
    }

    @Test func theExplanationListsTheDependencies() throws {
        let text = try self.base.versions().explanation()
        #expect(text.contains("Pricing.quote(for:)  (Pricing.swift:9)"))
        #expect(text.contains("Rules.swift:1  let discountRate"))
        #expect(text.contains("Rules.swift:4  func price(of:base:)"))
        #expect(text.contains("Rules.swift:8  func discounted(_:)"))
        #expect(text.contains("Pricing.swift:3  struct Quote"))
        #expect(!text.contains("unrelated"))
    }
}

/// Which packages `cache-versions.json` folds in.
@Suite("Package selection")
struct PackageSelectionTests {
    let resolved = ["swift-nio=2.81.0@abc", "swift-log=1.6.1@def", "pricing-rules=local"]

    @Test func namedPackagesAreFoldedInByIdentityIgnoringCase() {
        let selection = PackageSelection.select(["Swift-NIO", "pricing-rules", "missing"], from: self.resolved)
        #expect(selection.folded == ["pricing-rules=local", "swift-nio=2.81.0@abc"])
        #expect(selection.unmatched == ["missing"])
    }

    @Test func aStarFoldsInEveryPackage() {
        let selection = PackageSelection.select(["*"], from: self.resolved)
        #expect(selection.folded == self.resolved.sorted())
        #expect(selection.unmatched.isEmpty)
    }
}
