import Foundation
import GatewayProtocol
import GatewayTestSupport
import GatewayVersions
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// Versions that follow the code a function calls, end to end: the
    /// `VersionedWorker` target, built by SwiftPM with the `CacheVersions`
    /// plugin, and a second build of the same worker in which only a helper
    /// two calls below the cached function differs, both against one gateway
    /// (on the test redis-server) with `--purge eager`.
    ///
    /// The second build is compiled here, with the compile and link commands
    /// SwiftPM recorded for the target (in `.build/debug.yaml`) and the
    /// already-built modules: a second package would build swift-syntax and
    /// SwiftNIO again, about 10 minutes on one CPU; this takes seconds. Its
    /// table of versions comes from the plugin's tool, run on its sources.
    @Suite(.serialized) struct VersionsFollowCalleesEndToEndTests {
        typealias Hosts = RegistryEndToEndTests.Hosts

        /// The package's root folder.
        static let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

        static let workerSources = packageRoot.appendingPathComponent("Tests/VersionedWorker")

        /// The helper's line that the second build changes (Rules.swift).
        static let discount = ("cents * 90 / 100", "cents * 80 / 100")

        /// The price the worker computes for `product` at `percent` of the list price.
        static func price(of product: String, percent: Int) -> Int {
            product.unicodeScalars.reduce(0) { $0 + Int($1.value) } * 10 * percent / 100
        }

        /// A worker process: one product per line in, one JSON answer per line out.
        final class Worker {
            struct Answer: Decodable {
                var product: String
                var cents: Int
                var computedInProcess: Int32
                var ranHere: Bool
            }

            private let child: LineProcess

            init(executable: URL, socketPath: String) throws {
                self.child = try LineProcess(executable: executable, arguments: ["serve", "--socket", socketPath])
            }

            func call(_ product: String) throws -> Answer {
                try JSONDecoder().decode(Answer.self, from: try self.child.exchange(product))
            }
        }

        /// The worker's Swift sources, with `edit` applied to each file's text.
        static func sources(in directory: URL, edit: (String, String) -> String = { $1 }) throws -> [SourceFile] {
            let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".swift") }.sorted()
            return try names.map { name in
                let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
                return SourceFile(path: name, text: edit(name, text))
            }
        }

        /// The version of `Pricing.quote(for:)` with the plugin, and its own version.
        static func versions(of sources: [SourceFile]) throws -> (version: String, own: String) {
            let quote = try #require(try ModuleVersions(files: sources).function(named: "Pricing.quote(for:)"))
            return (try #require(quote.version), quote.ownVersion)
        }

        /// Builds the worker again from `sources` into `directory`, as SwiftPM built
        /// the `VersionedWorker` target, with the table of versions the plugin's tool writes.
        static func build(_ sources: [SourceFile], in directory: URL) throws -> URL {
            let binaries = try GatewayProcess.executable.deletingLastPathComponent()
            let configuration = binaries.lastPathComponent
            let manifest = binaries.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("\(configuration).yaml")
            let commands = try String(contentsOf: manifest, encoding: .utf8)
            let compile = try Self.arguments(of: "C.VersionedWorker-", suffix: "-\(configuration).module\":", in: commands)
            let link = try Self.arguments(of: "C.VersionedWorker-", suffix: "-\(configuration).exe\":", in: commands)

            let sourceDirectory = directory.appendingPathComponent("Sources")
            try FileManager.default.createDirectory(at: sourceDirectory, withIntermediateDirectories: true)
            var paths: [String] = []
            for source in sources {
                let path = sourceDirectory.appendingPathComponent(source.path).path
                try source.text.write(toFile: path, atomically: true, encoding: .utf8)
                paths.append(path)
            }
            let table = sourceDirectory.appendingPathComponent("CacheVersions.swift").path
            let tool = ["CacheVersionsTool", "CacheVersionsTool-tool"].map { binaries.appendingPathComponent($0) }
                .first { FileManager.default.isExecutableFile(atPath: $0.path) }
            try Self.run(try #require(tool, "no CacheVersionsTool beside the tests"), ["--output", table] + paths)
            paths.append(table)

            // Every object SwiftPM linked, but the worker's own.
            let listArgument = try #require(link.first { $0.hasPrefix("@") })
            let objects = try String(contentsOfFile: String(listArgument.dropFirst()), encoding: .utf8)
                .split(separator: "\n").filter { !$0.contains("/VersionedWorker.build/") }
            let list = directory.appendingPathComponent("Objects.LinkFileList")
            try (objects.joined(separator: "\n") + "\n").write(to: list, atomically: true, encoding: .utf8)

            // The compile command without its incremental-build bookkeeping, then the link's libraries and symbols.
            var arguments: [String] = []
            var remaining = compile.dropFirst()[...]
            let dropped: Set<String> = ["-emit-dependencies", "-emit-module", "-incremental", "-enable-batch-mode", "-serialize-diagnostics", "-parseable-output", "-c", "-enable-testing"]
            let droppedWithValue: Set<String> = ["-emit-module-path", "-output-file-map", "-index-store-path", "-module-name"]
            while let argument = remaining.popFirst() {
                if dropped.contains(argument) || argument.hasPrefix("@") { continue }
                if droppedWithValue.contains(argument) { _ = remaining.popFirst(); continue }
                arguments.append(argument)
            }
            var linkArguments: [String] = []
            remaining = link.dropFirst()[...]
            while let argument = remaining.popFirst() {
                if argument == "-o" || argument == "-module-name" || argument == "-target" { _ = remaining.popFirst(); continue }
                if argument == "-emit-executable" || argument == "-g" || argument.hasPrefix("@") { continue }
                linkArguments.append(argument)
            }
            let executable = directory.appendingPathComponent("VersionedWorker")
            try Self.run(
                URL(fileURLWithPath: compile[0]),
                ["-module-name", "VersionedWorker", "-emit-executable", "-o", executable.path] + arguments + paths + linkArguments + ["@" + list.path]
            )
            return executable
        }

        /// The `args:` of the command whose name starts with `prefix` and ends with `suffix` in an llbuild manifest.
        static func arguments(of prefix: String, suffix: String, in manifest: String) throws -> [String] {
            let lines = manifest.split(separator: "\n", omittingEmptySubsequences: false)
            let start = try #require(lines.firstIndex { $0.hasPrefix("  \"\(prefix)") && $0.hasSuffix(suffix) }, "no \(prefix)…\(suffix) in the build manifest")
            let line = try #require(lines[start...].first { $0.hasPrefix("    args: ") })
            let json = Data(line.dropFirst("    args: ".count).utf8)
            return try JSONDecoder().decode([String].self, from: json)
        }

        static func run(_ executable: URL, _ arguments: [String]) throws {
            let process = Process()
            process.executableURL = executable
            process.arguments = arguments
            let errors = Pipe()
            process.standardError = errors
            process.standardOutput = errors
            try process.run()
            let output = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TestFailure("\(executable.lastPathComponent) failed: \(String(decoding: output, as: UTF8.self).suffix(4000))")
            }
        }

        @Test func aChangedHelperTwoCallsDeepGivesNewEntriesAndEagerPurgeDeletesTheOldBuilds() async throws {
            // Build B: the same worker with another discount two calls below the cached function.
            let sourcesA = try Self.sources(in: Self.workerSources)
            let sourcesB = try Self.sources(in: Self.workerSources) { name, text in
                name == "Rules.swift" ? text.replacing(Self.discount.0, with: Self.discount.1) : text
            }
            #expect(sourcesA.map(\.text) != sourcesB.map(\.text))
            let (versionA, ownA) = try Self.versions(of: sourcesA)
            let (versionB, ownB) = try Self.versions(of: sourcesB)
            // The cached function's own code is the same: without the plugin both
            // builds would have one version, and B would be served A's results.
            #expect(ownA == ownB)
            #expect(versionA != versionB)
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("versioned-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: directory) }
            let buildB = try Self.build(sourcesB, in: directory)
            let buildA = try GatewayProcess.executable.deletingLastPathComponent().appendingPathComponent("VersionedWorker")

            let hosts = try Hosts(count: 1, policy: "eager")
            let waitUntil = RegistryEndToEndTests.waitUntil

            // Build A computes and stores; the gateway knows it under the plugin's version.
            let a = try Worker(executable: buildA, socketPath: hosts[0].socketPath)
            let firstA = try a.call("latte")
            #expect(firstA.ranHere && firstA.cents == Self.price(of: "latte", percent: 90))
            #expect(try await hosts.function()?.versions.map(\.version) == [versionA], "the build used the generated table, not its own hash \(ownA)")
            #expect(try await waitUntil(.seconds(15)) { try await hosts.version(versionA)?.entries == 1 })
            let hitA = try a.call("latte")
            #expect(!hitA.ranHere && hitA.computedInProcess == firstA.computedInProcess)

            // Build B never gets A's result: it computes its own, under its own version,
            // whose first registration deletes A's entries.
            let b = try Worker(executable: buildB, socketPath: hosts[0].socketPath)
            let firstB = try b.call("latte")
            #expect(firstB.ranHere && firstB.cents == Self.price(of: "latte", percent: 80))
            #expect(try await waitUntil(.seconds(15)) { try await hosts.total("purges") == 1 })
            #expect(try await hosts.version(versionA)?.entries == 0)
            #expect(try await waitUntil(.seconds(15)) { try await hosts.version(versionB)?.entries == 1 })
            let hitB = try b.call("latte")
            #expect(!hitB.ranHere && hitB.cents == Self.price(of: "latte", percent: 80))

            // A's entry is gone: A computes again, and gets its own price, not B's.
            let againA = try a.call("latte")
            #expect(againA.ranHere && againA.cents == Self.price(of: "latte", percent: 90))
            #expect(hosts[0].stop() == 0)
        }

        /// DemoWorker is built without the plugin: its versions are the functions'
        /// own hashes, as before the plugin existed.
        @Test func aTargetWithoutThePluginKeepsItsOwnHashes() async throws {
            let sources = try Self.sources(in: Self.packageRoot.appendingPathComponent("Examples/DemoWorker"))
            let quote = try #require(try ModuleVersions(files: sources).function(named: "Pricing.quoteV1(for:)"))
            let hosts = try Hosts(count: 1, policy: "grace")
            let worker = try EndToEndTests.Worker(socketPath: hosts[0].socketPath, lookupTimeoutMilliseconds: 2000)
            _ = try worker.call("latte", version: 1)
            #expect(try await hosts.function()?.versions.map(\.version) == [quote.ownVersion])
            #expect(hosts[0].stop() == 0)
        }
    }
}
