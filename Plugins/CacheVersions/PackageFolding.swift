import Foundation
import PackagePlugin

/// Which package versions to fold into every version of a target, from the
/// optional `cache-versions.json` next to the package's `Package.swift`:
///
/// ```json
/// { "packages": ["swift-nio", "pricing-rules"] }
/// ```
///
/// names packages by identity (the last path component of their URL, without
/// `.git`, lowercased) or display name; `["*"]` folds in every package the
/// package depends on, directly or not. A package is folded in as
/// `identity=VERSION@REVISION` as SwiftPM resolved it (the version, a branch
/// or a revision, and the commit: what `Package.resolved` records), or
/// `identity=local` for a package at a path, which has no version: its changes
/// are not seen.
struct PackageFolding {
    /// The `--package` arguments for the tool.
    var arguments: [String] = []
    /// The configuration file, when there is one.
    var inputFiles: [URL] = []

    private struct Configuration: Decodable {
        var packages: [String]
    }

    init(package: Package) throws {
        let file = package.directoryURL.appendingPathComponent("cache-versions.json")
        guard let data = try? Data(contentsOf: file) else { return }
        let configuration = try JSONDecoder().decode(Configuration.self, from: data)
        self.inputFiles = [file]
        let wanted = Set(configuration.packages.map { $0.lowercased() })
        let everything = wanted.contains("*")
        var seen = Set<String>()
        var found = Set<String>()
        var queue = package.dependencies.map(\.package)
        while let next = queue.popLast() {
            guard seen.insert(next.id).inserted else { continue }
            queue += next.dependencies.map(\.package)
            guard everything || wanted.contains(next.id.lowercased()) || wanted.contains(next.displayName.lowercased()) else { continue }
            found.insert(next.id.lowercased())
            found.insert(next.displayName.lowercased())
            switch next.origin {
            case .repository(_, let displayVersion, let scmRevision):
                self.arguments += ["--package", "\(next.id)=\(displayVersion)@\(scmRevision)"]
            case .registry(_, let displayVersion):
                self.arguments += ["--package", "\(next.id)=\(displayVersion)"]
            case .local, .root:
                self.arguments += ["--package", "\(next.id)=local"]
            @unknown default:
                self.arguments += ["--package", "\(next.id)=unknown"]
            }
        }
        let missing = wanted.subtracting(found).subtracting(["*"])
        if !missing.isEmpty {
            Diagnostics.warning("cache-versions.json names packages this package does not depend on: \(missing.sorted().joined(separator: ", "))")
        }
    }
}
