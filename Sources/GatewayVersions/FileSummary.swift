/// Everything the versions need from one source file, worked out from its
/// syntax once: its declarations with the names each one mentions and its
/// hash, and its `@Cached` functions with their own versions.
///
/// A module's versions are computed from the summaries of its files
/// (``ModuleVersions/init(summaries:packages:listingDependencies:)``), never
/// from syntax trees, so that a file whose text has not changed since the
/// last run is not parsed again (``SummaryCache``). Nothing in a summary
/// depends on the other files: the names a declaration mentions are kept as
/// written, and only resolved against the module's declarations when the
/// summaries are put together (``ModuleIndex``).
public struct FileSummary: Codable, Sendable, Equatable {
    /// One declaration of the file (``Declaration``, without its syntax).
    struct Entry: Codable, Sendable, Equatable {
        /// "member", "type" or "extension" (``Declaration/Kind``).
        var kind: Declaration.Kind
        /// The names references find it under (``Declaration/names``).
        var names: [String]
        /// How explanations show it.
        var display: String
        /// The enclosing type or extension header, as an index into the file's entries.
        var parent: Int?
        /// Whether it is a protocol requirement.
        var isRequirement: Bool
        /// For a header: the entries directly inside it.
        var contents: [Int]
        /// The line it starts on.
        var line: Int
        /// The names it mentions, sorted, as ``ModuleIndex`` resolves them.
        var references: [String]
        /// The SHA-256 of its kind, place and tokens, in hex (``FileSummarizer``).
        var hash: String
    }

    /// One `@Cached` function of the file.
    struct Cached: Codable, Sendable, Equatable {
        /// Its declaration, as an index into the file's entries.
        var declaration: Int
        /// Its enclosing types and full name (``CachedFunctionVersion/name``).
        var name: String
        /// The version the macro gives it on its own (``OwnVersion``).
        var ownVersion: String
        /// Whether its attribute sets `version:` by hand.
        var hasHandWrittenVersion: Bool
    }

    /// The file's path, as explanations show it.
    public var path: String
    var entries: [Entry]
    var cached: [Cached]

    /// Parses `file` and summarizes it.
    public init(_ file: SourceFile) throws {
        self = try FileSummarizer.summarize(file)
    }

    /// Whether every index in it points at one of its entries and every hash
    /// is 64 lowercase hex digits: what ``ModuleIndex`` relies on.
    var isWellFormed: Bool {
        let range = self.entries.indices
        let hex = Set("0123456789abcdef".utf8)
        return self.entries.allSatisfy { entry in
            entry.parent.map(range.contains) != false && entry.contents.allSatisfy(range.contains)
                && entry.hash.utf8.count == 64 && entry.hash.utf8.allSatisfy(hex.contains)
        } && self.cached.allSatisfy { range.contains($0.declaration) }
    }

    init(path: String, entries: [Entry], cached: [Cached]) {
        self.path = path
        self.entries = entries
        self.cached = cached
    }
}
