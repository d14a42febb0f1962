import Foundation
import GatewayDigest

/// The summaries (``FileSummary``) of the last run's files, kept in a file
/// between runs so that a build that changed one source file parses that file
/// only.
///
/// A summary is used again only for a file at the same path whose text has
/// the same SHA-256 as when it was summarized: the text itself decides, not a
/// modification time. The whole cache is dropped when the tool that wrote it
/// is not the tool reading it (its ``format``, or the tool binary's size and
/// modification time, differ): a summary is only as good as the code that
/// computed it. A cache that cannot be read for any reason is treated as
/// empty, and is written anew; losing it costs time, never correctness.
public struct SummaryCache {
    /// The layout of the cache file and of the summaries in it. Any change to
    /// what ``FileSummarizer`` computes changes it too.
    public static let format = 1

    private struct Stored: Codable {
        var format: Int
        var tool: String
        var files: [StoredFile]
    }

    private struct StoredFile: Codable {
        var digest: String
        var summary: FileSummary
    }

    /// Who wrote the cache: the tool's binary, by size and modification time.
    private let tool: String
    private var byPath: [String: StoredFile] = [:]
    private var used: [StoredFile] = []
    private var changed = false
    /// How many files were summarized on this run rather than taken from the cache.
    public private(set) var summarized = 0

    /// Reads the cache in `file`, if there is one written by this same tool
    /// (`toolIdentity`, for example ``toolIdentity(executable:)``).
    public init(contentsOf file: URL?, toolIdentity: String) {
        self.tool = toolIdentity
        guard let file, let data = try? Data(contentsOf: file),
            let stored = try? JSONDecoder().decode(Stored.self, from: data),
            stored.format == Self.format, stored.tool == toolIdentity
        else { return }
        guard stored.files.allSatisfy({ $0.summary.isWellFormed }) else { return }
        for entry in stored.files { self.byPath[entry.summary.path] = entry }
    }

    /// The tool's identity for the cache: its format, and the size and
    /// modification time of the executable at `path`.
    public static func toolIdentity(executable path: String) -> String {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        let size = (attributes?[.size] as? NSNumber)?.int64Value ?? -1
        let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? -1
        return "format \(Self.format); \(path); \(size) bytes; modified \(modified)"
    }

    /// The summary of `file`: from the cache when its text is unchanged,
    /// otherwise parsed now (and kept for ``write(to:)``).
    public mutating func summary(of file: SourceFile) throws -> FileSummary {
        let digest = try SHA256.hash(Array(file.text.utf8)).hexString
        if let known = self.byPath[file.path], known.digest == digest {
            self.used.append(known)
            return known.summary
        }
        let summary = try FileSummary(file)
        self.used.append(StoredFile(digest: digest, summary: summary))
        self.changed = true
        self.summarized += 1
        return summary
    }

    /// Writes the summaries of this run's files to `file`, replacing what was
    /// there, unless they are all as they were read. Files summarized before
    /// but not asked for on this run (deleted ones) are left out.
    public func write(to file: URL) throws {
        guard self.changed || self.used.count != self.byPath.count else { return }
        let stored = Stored(format: Self.format, tool: self.tool, files: self.used)
        try JSONEncoder().encode(stored).write(to: file, options: .atomic)
    }
}
