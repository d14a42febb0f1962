import Foundation
import PackagePlugin

/// `swift package cache-versions [--target NAME]...`: prints, for each target
/// (all Swift source targets by default), each `@Cached` function, its
/// version and the declarations of the module that the version depends on,
/// as the `CacheVersions` build-tool plugin computes them.
@main
struct CacheVersionsCommand: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) throws {
        var extractor = ArgumentExtractor(arguments)
        let names = extractor.extractOption(named: "target")
        let targets = try names.isEmpty ? context.package.targets : context.package.targets(named: names)
        let tool = try context.tool(named: "CacheVersionsTool").url
        let folding = PackageFolding(package: context.package)
        for target in targets {
            guard let module = target as? SourceModuleTarget, module.kind != .test || !names.isEmpty else { continue }
            // Paths relative to the package, run from there: shorter listings that
            // compare across checkouts.
            let root = context.package.directoryURL.path + "/"
            let sources = module.sourceFiles(withSuffix: "swift").map(\.url.path).map { path in
                path.hasPrefix(root) ? String(path.dropFirst(root.count)) : path
            }
            guard !sources.isEmpty else { continue }
            print("== \(target.name)")
            let process = Process()
            process.executableURL = tool
            process.currentDirectoryURL = context.package.directoryURL
            process.arguments = ["--explain"] + folding.arguments + sources
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw CommandError(description: "CacheVersionsTool failed on \(target.name)")
            }
        }
    }
}

/// A failure of the command, shown by SwiftPM.
struct CommandError: Error, CustomStringConvertible {
    var description: String
}
