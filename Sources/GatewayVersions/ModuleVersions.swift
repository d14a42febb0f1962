import GatewayDigest
import SwiftSyntax

/// The versions of a module's `@Cached` functions, each following the code
/// of the module that the function reaches.
///
/// A function's version is the SHA-256 of ``scheme``, its own version
/// (``OwnVersion``, what the macro computes alone), the number and the
/// 32-byte hashes of the declarations in its ``DependencyClosure`` (sorted,
/// so that neither the order of the files nor where a declaration sits in
/// them matters), and the package versions folded in (`packages`, sorted).
/// Comments and whitespace never count.
///
/// The generated table is keyed by the first 16 hex digits of the own version
/// (``OwnVersion/lookupKey(of:)``). Functions that share a key (the same code
/// in two places, or, with odds of 2⁻⁶⁴ per pair, different code) share one
/// version, computed from all of their closures together: it changes when
/// any of them does.
public struct ModuleVersions {
    /// The first line of the hashed text: names this algorithm.
    public static let scheme = "cache-gateway @Cached version 2: the function and the declarations of its module it reaches\n"

    /// Each `@Cached` function of the module, in source order.
    public let functions: [CachedFunctionVersion]
    /// The package versions folded into every version.
    public let packages: [String]

    /// Computes the versions of the `@Cached` functions in `files`, folding in
    /// `packages` (`identity=version` strings, for example). With
    /// `listingDependencies`, each function also lists the declarations it
    /// depends on (``CachedFunctionVersion/dependencies``), which explanations
    /// need and the table does not.
    public init(files: [SourceFile], packages: [String] = [], listingDependencies: Bool = true) throws {
        let index = ModuleIndex(files: files)
        self.packages = packages.sorted()
        let closures = DependencyClosure(index: index)

        struct Found {
            var cached: CachedFunction
            var own: String
            var closure: [Int]
        }
        var found: [Found] = []
        for cached in index.cached {
            let own = try OwnVersion.version(of: cached.syntax, excluding: cached.attribute)
            found.append(Found(cached: cached, own: own, closure: closures.closure(of: [cached.declaration])))
        }

        // Every declaration reached is hashed once; the declarations are then
        // ordered by hash, so that a closure is put in order by sorting numbers.
        var reached = Array(repeating: false, count: index.declarations.count)
        for function in found where !function.cached.syntax.hasHandWrittenVersion {
            for declaration in function.closure { reached[declaration] = true }
        }
        var hashes: [(declaration: Int, hex: String, bytes: [UInt8])] = []
        for declaration in reached.indices where reached[declaration] {
            let digest = try index.hash(of: declaration)
            hashes.append((declaration, digest.hexString, digest.bytes))
        }
        hashes.sort { $0.hex < $1.hex }
        var rank = Array(repeating: 0, count: index.declarations.count)
        for (position, hash) in hashes.enumerated() { rank[hash.declaration] = position }

        // One version per lookup key, over everything the functions with that key reach.
        var byKey: [UInt64: [Int]] = [:]
        for (number, function) in found.enumerated() where !function.cached.syntax.hasHandWrittenVersion {
            byKey[OwnVersion.lookupKey(of: function.own), default: []].append(number)
        }
        var versions: [UInt64: String] = [:]
        // A closure is put in hash order by marking its declarations' ranks and
        // reading the marks in order (a linear pass instead of a sort).
        var marks = Array(repeating: 0, count: hashes.count)
        var mark = 0
        for (key, members) in byKey {
            mark += 1
            for member in members {
                for declaration in found[member].closure { marks[rank[declaration]] = mark }
            }
            let ranks = marks.indices.lazy.filter { marks[$0] == mark }
            var bytes = Array(Self.scheme.utf8)
            for own in Set(members.map { found[$0].own }).sorted() { OwnVersion.append("own " + own, to: &bytes) }
            var digests: [UInt8] = []
            var count = 0
            var last: String?
            for position in ranks where hashes[position].hex != last {
                last = hashes[position].hex
                digests += hashes[position].bytes
                count += 1
            }
            OwnVersion.append("declarations \(count)", to: &bytes)
            bytes += digests
            for package in self.packages { OwnVersion.append("package " + package, to: &bytes) }
            versions[key] = try SHA256.hash(bytes).hexString
        }

        self.functions = found.map { function in
            let declaration = index.declarations[function.cached.declaration]
            var dependencies: [CachedFunctionVersion.Dependency] = []
            if listingDependencies {
                dependencies = function.closure
                    .filter { $0 != function.cached.declaration }
                    .map { dependency in
                        CachedFunctionVersion.Dependency(
                            display: index.declarations[dependency].display,
                            file: index.files[index.declarations[dependency].file].path,
                            line: index.line(of: dependency)
                        )
                    }
                    .sorted { ($0.file, $0.line, $0.display) < ($1.file, $1.line, $1.display) }
            }
            return CachedFunctionVersion(
                name: Self.qualifiedName(of: function.cached.syntax),
                file: index.files[declaration.file].path,
                line: index.line(of: function.cached.declaration),
                ownVersion: function.own,
                version: function.cached.syntax.hasHandWrittenVersion ? nil : versions[OwnVersion.lookupKey(of: function.own)],
                dependencies: dependencies
            )
        }
    }

    /// The first function named `name` (`Type.method(label:)`), for tests and tools.
    public func function(named name: String) -> CachedFunctionVersion? {
        self.functions.first { $0.name == name }
    }

    /// The enclosing types and functions of `function`, and its full name, joined by dots.
    static func qualifiedName(of function: FunctionDeclSyntax) -> String {
        var components = [DeclarationCollector.fullName(function)]
        var node = function.parent
        while let current = node {
            if let decl = current.asProtocol(NamedDeclSyntax.self), current.is(DeclSyntax.self), !current.is(FunctionDeclSyntax.self) {
                components.insert(decl.name.nameText, at: 0)
            } else if let decl = current.as(ExtensionDeclSyntax.self) {
                components.insert(decl.extendedType.tokens(viewMode: .sourceAccurate).map(\.text).joined(), at: 0)
            } else if let decl = current.as(FunctionDeclSyntax.self) {
                components.insert(DeclarationCollector.fullName(decl), at: 0)
            }
            node = current.parent
        }
        return components.joined(separator: ".")
    }
}

/// The version of one `@Cached` function, and what it depends on.
public struct CachedFunctionVersion: Sendable {
    /// A declaration the version depends on.
    public struct Dependency: Sendable, Equatable {
        /// What it is: `func helper(_:)`, `struct Quote`, `let rate`.
        public var display: String
        /// The file it is in.
        public var file: String
        /// The line it starts on.
        public var line: Int
    }

    /// Its enclosing types and its full name: `Pricing.quote(for:)`.
    public let name: String
    /// The file it is declared in.
    public let file: String
    /// The line it starts on.
    public let line: Int
    /// The version the macro gives it alone, without the plugin.
    public let ownVersion: String
    /// The version with the plugin; nil when `version:` is written by hand.
    public let version: String?
    /// The declarations of the module it reaches, by file and line.
    public let dependencies: [Dependency]
}
