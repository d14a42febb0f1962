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
        try self.init(summaries: files.map(FileSummary.init), packages: packages, listingDependencies: listingDependencies)
    }

    /// Computes the versions from the files' summaries (``FileSummary``), as
    /// ``init(files:packages:listingDependencies:)`` does from their text.
    public init(summaries: [FileSummary], packages: [String] = [], listingDependencies: Bool = true) throws {
        let index = ModuleIndex(summaries: summaries)
        self.packages = packages.sorted()

        // Declarations are numbered in the order of their hashes, so that a
        // closure read in order is sorted by hash (``DependencyClosure``).
        // Declarations with the same hash (the same text in the same place)
        // count once: each position has the number of the first one with its
        // hash (`group`). The hashes are kept as numbers (4 words to sort by,
        // and 32 bytes each in one run) and copied with pointers: SwiftPM
        // builds the tool without optimisation in a debug build, where
        // strings, tuples of arrays and generic appends cost several times
        // the work itself.
        let count = index.declarationCount
        var digestBytes: [UInt8] = []
        digestBytes.reserveCapacity(32 * count)
        var sortKeys: [(UInt64, UInt64, UInt64, UInt64)] = []
        sortKeys.reserveCapacity(count)
        for declaration in 0..<count {
            let bytes = try Self.bytes(ofHex: index.entry(declaration).hash)
            digestBytes += bytes
            func word(_ start: Int) -> UInt64 { bytes[start..<start + 8].reduce(0) { $0 << 8 | UInt64($1) } }
            sortKeys.append((word(0), word(8), word(16), word(24)))
        }
        let byHash = (0..<count).sorted { sortKeys[$0] < sortKeys[$1] }
        var bit = Array(repeating: 0, count: count)
        var group = Array(repeating: 0, count: count)
        for (position, declaration) in byHash.enumerated() {
            bit[declaration] = position
            group[position] = position > 0 && sortKeys[byHash[position - 1]] == sortKeys[declaration] ? group[position - 1] : position
        }
        let closures = DependencyClosure(index: index, roots: index.cached.map(\.declaration), bit: bit)

        // One version per lookup key, over everything the functions with that key reach.
        var byKey: [UInt64: [Int]] = [:]
        for (number, function) in index.cached.enumerated() where !function.function.hasHandWrittenVersion {
            byKey[OwnVersion.lookupKey(of: function.function.ownVersion), default: []].append(number)
        }
        var versions: [UInt64: String] = [:]
        for (key, members) in byKey {
            var closure = closures.closure(of: index.cached[members[0]].declaration)
            for member in members.dropFirst() { closure.formUnion(closures.closure(of: index.cached[member].declaration)) }
            var prefix = Array(Self.scheme.utf8)
            for own in Set(members.map { index.cached[$0].function.ownVersion }).sorted() { OwnVersion.append("own " + own, to: &prefix) }
            var distinct: [Int] = []
            var last = -1
            for position in closure.bits where group[position] != last {
                last = group[position]
                distinct.append(byHash[position])
            }
            OwnVersion.append("declarations \(distinct.count)", to: &prefix)
            var suffix: [UInt8] = []
            for package in self.packages { OwnVersion.append("package " + package, to: &suffix) }
            let bytes = Self.concatenate(prefix, digestBytes, distinct, suffix)
            versions[key] = try SHA256.hash(bytes).hexString
        }

        self.functions = index.cached.map { (declaration, cached) in
            var dependencies: [CachedFunctionVersion.Dependency] = []
            if listingDependencies {
                dependencies = closures.closure(of: declaration).bits
                    .map { byHash[$0] }
                    .filter { $0 != declaration }
                    .map { dependency in
                        let entry = index.entry(dependency)
                        return CachedFunctionVersion.Dependency(display: entry.display, file: index.path(of: dependency), line: entry.line)
                    }
                    .sorted { ($0.file, $0.line, $0.display) < ($1.file, $1.line, $1.display) }
            }
            return CachedFunctionVersion(
                name: cached.name,
                file: index.path(of: declaration),
                line: index.entry(declaration).line,
                ownVersion: cached.ownVersion,
                version: cached.hasHandWrittenVersion ? nil : versions[OwnVersion.lookupKey(of: cached.ownVersion)],
                dependencies: dependencies
            )
        }
    }

    /// `prefix`, the 32-byte digests of `declarations` (declaration `d`'s at
    /// `32 * d` in `digests`) in order, and `suffix`, copied with pointers:
    /// see the note on debug builds above.
    private static func concatenate(_ prefix: [UInt8], _ digests: [UInt8], _ declarations: [Int], _ suffix: [UInt8]) -> [UInt8] {
        let total = prefix.count + 32 * declarations.count + suffix.count
        return [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            guard let target = buffer.baseAddress else { return }
            prefix.withUnsafeBufferPointer { target.initialize(from: $0.baseAddress!, count: $0.count) }
            digests.withUnsafeBufferPointer { digests in
                var offset = prefix.count
                for declaration in declarations {
                    (target + offset).initialize(from: digests.baseAddress! + 32 * declaration, count: 32)
                    offset += 32
                }
            }
            suffix.withUnsafeBufferPointer { source in
                if let start = source.baseAddress { (target + total - source.count).initialize(from: start, count: source.count) }
            }
            initialized = total
        }
    }

    /// The 32 bytes a 64-digit hex hash stands for.
    private static func bytes(ofHex hex: String) throws(VersionsError) -> [UInt8] {
        let digits = Array(hex.utf8)
        guard digits.count == 64 else { throw VersionsError(.invalidSummary, "a declaration hash is not 64 hex digits: \(hex)") }
        func value(_ digit: UInt8) throws(VersionsError) -> UInt8 {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): return digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): return digit - UInt8(ascii: "a") + 10
            default: throw VersionsError(.invalidSummary, "a declaration hash is not 64 hex digits: \(hex)")
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(32)
        var position = 0
        while position < 64 {
            bytes.append(try value(digits[position]) << 4 | value(digits[position + 1]))
            position += 2
        }
        return bytes
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
