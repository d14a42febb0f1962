import Foundation
import PackagePlugin

/// The build-tool plugin: before a target compiles, runs `CacheVersionsTool`
/// over its Swift sources and adds the table of versions it writes
/// (`CacheGatewayVersions.swift`, a name unlikely to clash with a source
/// file of the target) to the target.
///
/// The command's inputs are the target's Swift files (and the package's
/// `cache-versions.json`, when there is one), so SwiftPM runs it again
/// whenever one changes; the tool rewrites its output only when the table
/// changes, so an edit that changes no version recompiles nothing more.
/// Package versions to fold in: see ``PackageFolding``.
@main
struct CacheVersions: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        guard let module = target as? SourceModuleTarget else { return [] }
        let sources = module.sourceFiles(withSuffix: "swift").map(\.url)
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("CacheGatewayVersions.swift")
        let folding = PackageFolding(package: context.package)

        // The list of sources goes through a file: a large target's paths can
        // exceed what a command line holds.
        let list = context.pluginWorkDirectoryURL.appendingPathComponent("arguments.txt")
        // The tool keeps its parse results here between runs (`SummaryCache`):
        // a build that changed one file parses that file only.
        let cache = context.pluginWorkDirectoryURL.appendingPathComponent("summaries.json")
        let lines = ["--output", output.path, "--cache", cache.path] + folding.arguments + sources.map(\.path)
        let text = lines.joined(separator: "\n") + "\n"
        if (try? String(contentsOf: list, encoding: .utf8)) != text {
            try FileManager.default.createDirectory(at: context.pluginWorkDirectoryURL, withIntermediateDirectories: true)
            try text.write(to: list, atomically: true, encoding: .utf8)
        }

        return [
            .buildCommand(
                displayName: "Computing the @Cached versions of \(target.name)",
                executable: try context.tool(named: "CacheVersionsTool").url,
                arguments: ["@" + list.path],
                inputFiles: sources + [list] + folding.inputFiles,
                outputFiles: [output]
            )
        ]
    }
}
