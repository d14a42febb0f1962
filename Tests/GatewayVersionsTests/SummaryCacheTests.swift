import Foundation
import GatewayVersions
import Testing

/// The tool's cache of file summaries: a run that takes summaries from it
/// gives exactly the versions of a run that parses everything, and it is
/// never trusted beyond what it was written for.
@Suite("Summary cache")
struct SummaryCacheTests {
    /// A scratch cache file, removed afterwards.
    private static func withCacheFile(_ body: (URL) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("summary-cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try body(directory.appendingPathComponent("summaries.json"))
    }

    /// Runs the versions of `fixture` through a cache in `file` written by
    /// `tool`; returns the versions and how many files were parsed.
    private static func run(_ fixture: Fixture, cache file: URL, tool: String = "tool A") throws -> (ModuleVersions, parsed: Int) {
        var cache = SummaryCache(contentsOf: file, toolIdentity: tool)
        let summaries = try fixture.files.keys.sorted().map { try cache.summary(of: SourceFile(path: $0, text: fixture.files[$0]!)) }
        let versions = try ModuleVersions(summaries: summaries)
        try cache.write(to: file)
        return (versions, cache.summarized)
    }

    private static func versions(_ versions: ModuleVersions) -> [String?] { versions.functions.map(\.version) }

    @Test func aSecondRunParsesNothingAndGivesTheSameVersions() throws {
        try Self.withCacheFile { file in
            let fixture = Fixture.module
            let first = try Self.run(fixture, cache: file)
            #expect(first.parsed == 2)
            let second = try Self.run(fixture, cache: file)
            #expect(second.parsed == 0)
            #expect(Self.versions(second.0) == Self.versions(try fixture.versions()))
            #expect(second.0.functions.map(\.dependencies) == first.0.functions.map(\.dependencies))
        }
    }

    @Test func anEditedFileIsParsedAgainAndItsChangeCounts() throws {
        try Self.withCacheFile { file in
            let fixture = Fixture.module
            _ = try Self.run(fixture, cache: file)
            let edited = fixture.replacing("let discountRate = 10", with: "let discountRate = 15", in: "Rules.swift")
            let run = try Self.run(edited, cache: file)
            #expect(run.parsed == 1)
            #expect(Self.versions(run.0) == Self.versions(try edited.versions()))
            #expect(Self.versions(run.0) != Self.versions(try fixture.versions()))
        }
    }

    @Test func aCacheWrittenByAnotherToolIsIgnored() throws {
        try Self.withCacheFile { file in
            _ = try Self.run(Fixture.module, cache: file, tool: "tool A")
            #expect(try Self.run(Fixture.module, cache: file, tool: "tool B").parsed == 2)
        }
    }

    @Test(arguments: ["", "{", "not json"])
    func anUnreadableCacheIsIgnored(contents: String) throws {
        try Self.withCacheFile { file in
            try Data(contents.utf8).write(to: file)
            let run = try Self.run(Fixture.module, cache: file)
            #expect(run.parsed == 2)
            #expect(Self.versions(run.0) == Self.versions(try Fixture.module.versions()))
            // And it is replaced by a good one.
            #expect(try Self.run(Fixture.module, cache: file).parsed == 0)
        }
    }

    @Test func theSameTextAtAnotherPathIsParsedForItsOwnPath() throws {
        try Self.withCacheFile { file in
            _ = try Self.run(Fixture.module, cache: file)
            var moved = Fixture.module
            moved.files["Moved.swift"] = moved.files.removeValue(forKey: "Rules.swift")
            let run = try Self.run(moved, cache: file)
            #expect(run.parsed == 1)
            #expect(run.0.function(named: "Pricing.quote(for:)")?.dependencies.contains { $0.file == "Moved.swift" } == true)
        }
    }

    /// A cache that reads as JSON, for the files as they are, but whose
    /// summaries point outside themselves, is not used: the index would trust it.
    @Test(arguments: ["parent", "contents", "hash", "declaration"])
    func aCacheWithAnInconsistentSummaryIsIgnored(field: String) throws {
        try Self.withCacheFile { file in
            _ = try Self.run(Fixture.module, cache: file)
            var stored = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any])
            var files = try #require(stored["files"] as? [[String: Any]])
            let position = try #require(files.firstIndex { ($0["summary"] as? [String: Any])?["path"] as? String == "Pricing.swift" })
            var summary = try #require(files[position]["summary"] as? [String: Any])
            var entries = try #require(summary["entries"] as? [[String: Any]])
            var cached = try #require(summary["cached"] as? [[String: Any]])
            switch field {
            case "parent": entries[0]["parent"] = 999
            case "contents": entries[0]["contents"] = [999]
            case "hash": entries[0]["hash"] = "not a hash"
            default: cached[0]["declaration"] = -1
            }
            summary["entries"] = entries
            summary["cached"] = cached
            files[position]["summary"] = summary
            stored["files"] = files
            try JSONSerialization.data(withJSONObject: stored).write(to: file)

            let run = try Self.run(Fixture.module, cache: file)
            #expect(run.parsed == 2)
            #expect(Self.versions(run.0) == Self.versions(try Fixture.module.versions()))
        }
    }
}
