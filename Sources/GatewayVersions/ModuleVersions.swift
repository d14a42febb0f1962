import GatewayDigest
import SwiftSyntax

/// The versions of a module's `@Cached` functions, each following the code
/// of the module that the function reaches.
///
/// A function's version is the SHA-256 of ``scheme``, its own version
/// (``OwnVersion``, what the macro computes alone), the hashes of the
/// declarations in its ``DependencyClosure`` (sorted, so that neither the
/// order of the files nor where a declaration sits in them matters), and the
/// package versions folded in (`packages`, sorted). Comments and whitespace
/// never count.
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
    /// `packages` (`identity=version` strings, for example).
    public init(files: [SourceFile], packages: [String] = []) throws {
        let index = ModuleIndex(files: files)
        self.packages = packages.sorted()

        struct Found {
            var cached: CachedFunction
            var own: String
            var closure: Set<Int>
        }
        var found: [Found] = []
        for cached in index.cached {
            let own = try OwnVersion.version(of: cached.syntax, excluding: cached.attribute)
            let closure = DependencyClosure(of: [cached.declaration], in: index).included
            found.append(Found(cached: cached, own: own, closure: closure))
        }

        // One version per lookup key, over everything the functions with that key reach.
        var byKey: [UInt64: (owns: Set<String>, closure: Set<Int>)] = [:]
        for function in found where !function.cached.syntax.hasHandWrittenVersion {
            let key = OwnVersion.lookupKey(of: function.own)
            byKey[key, default: ([], [])].owns.insert(function.own)
            byKey[key]!.closure.formUnion(function.closure)
        }
        var versions: [UInt64: String] = [:]
        for (key, group) in byKey {
            var bytes = Array(Self.scheme.utf8)
            for own in group.owns.sorted() { OwnVersion.append("own " + own, to: &bytes) }
            let hashes = try Set(group.closure.map { try index.hash(of: $0).hexString }).sorted()
            for hash in hashes { OwnVersion.append("declaration " + hash, to: &bytes) }
            for package in self.packages { OwnVersion.append("package " + package, to: &bytes) }
            versions[key] = try SHA256.hash(bytes).hexString
        }

        self.functions = found.map { function in
            let declaration = index.declarations[function.cached.declaration]
            let dependencies = function.closure
                .filter { $0 != function.cached.declaration }
                .map { dependency in
                    CachedFunctionVersion.Dependency(
                        display: index.declarations[dependency].display,
                        file: index.files[index.declarations[dependency].file].path,
                        line: index.line(of: dependency)
                    )
                }
                .sorted { ($0.file, $0.line, $0.display) < ($1.file, $1.line, $1.display) }
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
