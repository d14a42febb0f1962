import Foundation
import PackagePlugin

/// What the tool needs to fold package versions into the versions of a
/// target: every package of the graph with its resolved version, and the
/// package's `cache-versions.json`, when there is one, which says which of
/// them to fold in (the tool reads it, on each run).
///
/// SwiftPM runs a plugin when it plans the build (after `Package.swift`,
/// `Package.resolved` or the package graph changed, or a source file was added
/// or removed), not on every build: the resolved versions are current since
/// any change to them re-plans the build; the configuration file is read by the
/// tool, on every run after it changes. Creating or deleting the file takes a
/// new plan (`touch Package.swift`).
struct PackageFolding {
    /// The `--resolved` and `--fold-config` arguments for the tool.
    var arguments: [String] = []
    /// The configuration file, when there is one.
    var inputFiles: [URL] = []

    init(package: Package) {
        var seen = Set<String>()
        var queue = package.dependencies.map(\.package)
        var resolved: [String] = []
        while let next = queue.popLast() {
            guard seen.insert(next.id).inserted else { continue }
            queue += next.dependencies.map(\.package)
            switch next.origin {
            case .repository(_, let displayVersion, let scmRevision):
                resolved.append("\(next.id)=\(displayVersion)@\(scmRevision)")
            case .registry(_, let displayVersion):
                resolved.append("\(next.id)=\(displayVersion)")
            case .local, .root:
                resolved.append("\(next.id)=local")
            @unknown default:
                resolved.append("\(next.id)=unknown")
            }
        }
        for entry in resolved.sorted() { self.arguments += ["--resolved", entry] }
        let file = package.directoryURL.appendingPathComponent("cache-versions.json")
        if FileManager.default.fileExists(atPath: file.path) {
            self.arguments += ["--fold-config", file.path]
            self.inputFiles = [file]
        }
    }
}
