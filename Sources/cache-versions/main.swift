// cache-versions: the tool behind the CacheVersions plugins.
//
//   CacheVersionsTool --output FILE [--package ID=VERSION]... SOURCE...
//       writes the module's table of versions to FILE, only if its content changed
//   CacheVersionsTool --explain [--package ID=VERSION]... SOURCE...
//       prints each @Cached function, its version and the declarations it depends on
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
    case "--explain":
        explain = true
    default:
        sources.append(argument)
    }
}
guard output != nil || explain else { fail("give --output FILE or --explain", status: 2) }

var files: [SourceFile] = []
for path in sources {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { fail("cannot read \(path)") }
    files.append(SourceFile(path: path, text: text))
}

do {
    let versions = try ModuleVersions(files: files, packages: packages)
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
