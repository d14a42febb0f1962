// cache-versions: the tool behind the CacheVersions plugins.
//
//   CacheVersionsTool --output FILE [options] SOURCE...
//       writes the module's table of versions to FILE, only if its content changed
//   CacheVersionsTool --explain [options] SOURCE...
//       prints each @Cached function, its version and the declarations it depends on
// Options:
//   --package ID=VERSION     fold this package version into every version
//   --resolved ID=VERSION    a package of the graph, folded in when --fold-config names it
//   --fold-config FILE       a cache-versions.json: {"packages": ["ID", ...]} or ["*"]
//   --cache FILE             keeps the files' summaries in FILE between runs, so that
//                            only files whose text changed are parsed again
//   @FILE as an argument reads more arguments from FILE, one per line.
import Foundation
import GatewayVersions

/// Stops with a message and exit status 2 (a usage error) or 1.
func fail(_ message: String, status: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("cache-versions: \(message)\n".utf8))
    exit(status)
}

var arguments: [String] = []
for argument in CommandLine.arguments.dropFirst() {
    if argument.hasPrefix("@") {
        guard let text = try? String(contentsOfFile: String(argument.dropFirst()), encoding: .utf8) else {
            fail("cannot read \(argument.dropFirst())")
        }
        arguments += text.split(separator: "\n").map(String.init)
    } else {
        arguments.append(argument)
    }
}

var output: String?
var explain = false
var packages: [String] = []
var resolved: [String] = []
var foldConfiguration: String?
var cachePath: String?
var sources: [String] = []
var remaining = arguments[...]
while let argument = remaining.popFirst() {
    switch argument {
    case "--output":
        guard let value = remaining.popFirst() else { fail("--output needs a file", status: 2) }
        output = value
    case "--package":
        guard let value = remaining.popFirst() else { fail("--package needs ID=VERSION", status: 2) }
        packages.append(value)
    case "--resolved":
        guard let value = remaining.popFirst() else { fail("--resolved needs ID=VERSION", status: 2) }
        resolved.append(value)
    case "--fold-config":
        guard let value = remaining.popFirst() else { fail("--fold-config needs a file", status: 2) }
        foldConfiguration = value
    case "--cache":
        guard let value = remaining.popFirst() else { fail("--cache needs a file", status: 2) }
        cachePath = value
    case "--explain":
        explain = true
    default:
        sources.append(argument)
    }
}
guard output != nil || explain else { fail("give --output FILE or --explain", status: 2) }

if let foldConfiguration {
    guard let data = FileManager.default.contents(atPath: foldConfiguration),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
        let wanted = object["packages"] as? [String]
    else {
        fail("\(foldConfiguration): expected {\"packages\": [\"identity\", ...]}")
    }
    let selection = PackageSelection.select(wanted, from: resolved)
    packages += selection.folded
    if !selection.unmatched.isEmpty {
        FileHandle.standardError.write(Data("\(foldConfiguration): warning: no such package in the graph: \(selection.unmatched.joined(separator: ", "))\n".utf8))
    }
}

let cacheFile = cachePath.map { URL(fileURLWithPath: $0) }
var cache = SummaryCache(contentsOf: cacheFile, toolIdentity: SummaryCache.toolIdentity(executable: Bundle.main.executablePath ?? CommandLine.arguments[0]))

do {
    var summaries: [FileSummary] = []
    for path in sources {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { fail("cannot read \(path)") }
        summaries.append(try cache.summary(of: SourceFile(path: path, text: text)))
    }
    let versions = try ModuleVersions(summaries: summaries, packages: packages, listingDependencies: explain)
    if let cacheFile {
        // A cache that cannot be written costs the next run time, not correctness.
        try? cache.write(to: cacheFile)
    }
    if explain {
        print(versions.explanation(), terminator: "")
    }
    if let output {
        let generated = Data(versions.generatedSource().utf8)
        // Written only when it changes: an untouched file is not recompiled.
        if (try? Data(contentsOf: URL(fileURLWithPath: output))) != generated {
            try generated.write(to: URL(fileURLWithPath: output), options: .atomic)
        }
    }
} catch {
    fail("\(error)")
}
