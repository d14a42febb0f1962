import Foundation
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// The systemd unit is valid, and the gateway starts the way it starts it.
    @Suite struct SystemdUnitTests {
        static var repository: URL {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }

        @Test func theUnitPassesSystemdAnalyzeVerify() throws {
            let unit = try String(contentsOf: Self.repository.appendingPathComponent("systemd/cache-gateway.service"), encoding: .utf8)
            #expect(unit.contains("Type=notify"))
            // verify checks that ExecStart's binary exists: point it at the one just built.
            let built = try GatewayProcess.executable.path
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let copy = directory.appendingPathComponent("cache-gateway.service")
            try unit.replacingOccurrences(of: "/usr/local/bin/cache-gateway", with: built).write(to: copy, atomically: true, encoding: .utf8)

            let verify = Process()
            verify.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
            verify.arguments = ["verify", copy.path]
            let output = Pipe()
            verify.standardOutput = output
            verify.standardError = output
            try verify.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            verify.waitUntilExit()
            #expect(verify.terminationStatus == 0, "\(text)")
            #expect(!text.contains(copy.lastPathComponent), "systemd-analyze complained: \(text)")
        }

        @Test func theGatewayStartedAsTheUnitDoesSendsReadyFromItsEnvironment() async throws {
            // The unit passes settings through its EnvironmentFile and sets NOTIFY_SOCKET;
            // GatewayProcess sets NOTIFY_SOCKET and returns once READY=1 arrived.
            let gateway = try GatewayProcess(environment: ["CACHE_GATEWAY_NAMESPACE": "from-env", "CACHE_GATEWAY_LOG_LEVEL": "debug"])
            let connection = try await gateway.connect()
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            #expect(stats.values["backend"] == .text("memory"))
            #expect(gateway.log.contains("namespace=from-env"))
            #expect(gateway.stop() == 0)
        }
    }
}
