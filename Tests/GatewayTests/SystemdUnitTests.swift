import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// The systemd unit is valid, and the gateway starts the way it starts it.
    @Suite struct SystemdUnitTests {
        static var repository: URL {
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        }

        @Test func theUnitsPassSystemdAnalyzeVerify() throws {
            let unit = try String(contentsOf: Self.repository.appendingPathComponent("systemd/cache-gateway.service"), encoding: .utf8)
            let socketUnit = try String(contentsOf: Self.repository.appendingPathComponent("systemd/cache-gateway.socket"), encoding: .utf8)
            #expect(unit.contains("Type=notify"))
            // More workers than the default 1,024 descriptors can connect.
            #expect(unit.contains("\nLimitNOFILE=65536\n"))
            #expect(socketUnit.contains("ListenStream=/run/cache-gateway/gateway.sock"))
            // verify checks that ExecStart's binary exists: point it at the one just built.
            let built = try GatewayProcess.executable.path
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let copy = directory.appendingPathComponent("cache-gateway.service")
            try unit.replacingOccurrences(of: "/usr/local/bin/cache-gateway", with: built).write(to: copy, atomically: true, encoding: .utf8)
            // The socket unit beside it, as installed: verify resolves the pair.
            let socketCopy = directory.appendingPathComponent("cache-gateway.socket")
            try socketUnit.write(to: socketCopy, atomically: true, encoding: .utf8)

            let verify = Process()
            verify.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-analyze")
            verify.arguments = ["verify", copy.path, socketCopy.path]
            let (status, text) = try verify.runToEnd()
            #expect(status == 0, "\(text)")
            #expect(!text.contains(copy.lastPathComponent), "systemd-analyze complained: \(text)")
            #expect(!text.contains(socketCopy.lastPathComponent), "systemd-analyze complained: \(text)")
        }

        /// A malformed hand-over is refused with a clear message, before
        /// anything listens: more sockets than one, a count that is not a
        /// number, a descriptor 3 that is no listening socket.
        @Test(arguments: [
            ("LISTEN_FDS=2", "systemd passed 2 sockets"),
            ("LISTEN_FDS=two", "LISTEN_FDS is two"),
            ("LISTEN_FDS=1", "is not a Unix stream socket"),
        ])
        func aBadSocketHandOverIsRefusedClearly(environment: String, message: String) throws {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cg-badfds-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let socketPath = directory.appendingPathComponent("gateway.sock").path
            // LISTEN_PID must be the gateway's own pid: the shell sets it to its
            // pid, then becomes the gateway with exec. Descriptor 3 is not open.
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", "LISTEN_PID=$$ \(environment) exec \"$0\" serve --socket \"$1\"", try GatewayProcess.executable.path, socketPath]
            let (status, text) = try process.runToEnd()
            #expect(status != 0)
            #expect(text.contains(message), "\(text)")
            #expect(!FileManager.default.fileExists(atPath: socketPath))
        }

        /// Socket activation as the .socket unit does it, through
        /// systemd-socket-activate (systemd's own tool for it): systemd binds
        /// the socket, the first connection starts the gateway with the socket
        /// as descriptor 3 (LISTEN_FDS, LISTEN_PID), and the gateway serves it.
        @Test func aSocketActivatedGatewayServesThePassedSocketAndLeavesItsFile() async throws {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cg-activate-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let socketPath = directory.appendingPathComponent("gateway.sock").path
            // What --socket says (the unit's ExecStart): ignored when a socket is passed.
            let flagPath = directory.appendingPathComponent("ignored.sock").path
            let notify = try NotifySocket(path: directory.appendingPathComponent("notify.sock").path)
            let logURL = directory.appendingPathComponent("gateway.log")
            guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else { throw TestFailure("cannot create \(logURL.path)") }

            let activator = Process()
            activator.executableURL = URL(fileURLWithPath: "/usr/bin/systemd-socket-activate")
            activator.arguments = ["--listen", socketPath, "--setenv", "NOTIFY_SOCKET=\(notify.path)", try GatewayProcess.executable.path, "serve", "--socket", flagPath]
            let log = try FileHandle(forWritingTo: logURL)
            activator.standardOutput = log
            activator.standardError = log
            try activator.run()
            defer {
                if activator.isRunning {
                    kill(activator.processIdentifier, SIGKILL)
                    activator.waitUntilExit()
                }
            }
            func logText() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

            // The socket exists before any gateway runs: systemd's side binds it.
            let bound = await RedisTestSupport.waitUntil(timeout: .seconds(10)) { FileManager.default.fileExists(atPath: socketPath) }
            #expect(bound, "systemd-socket-activate did not bind \(socketPath): \(logText())")
            // The first connection starts the gateway; its hello waits in the backlog meanwhile.
            let connection = try await GatewayConnection.connect(socketPath: socketPath, clientName: "activated", timeout: .seconds(30))
            #expect(try notify.receive(timeout: .seconds(20)).contains("READY=1"))
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            #expect(stats.values["backend"] == .text("memory"))
            #expect(try await connection.request(.ping) == .pong)
            #expect(logText().contains("inherited descriptor 3"), "\(logText())")
            #expect(!FileManager.default.fileExists(atPath: flagPath))
            await connection.close()

            // systemd-socket-activate execs the gateway in its own process.
            kill(activator.processIdentifier, SIGTERM)
            activator.waitUntilExit()
            #expect(activator.terminationStatus == 0, "\(logText())")
            // The socket file is systemd's: the gateway leaves it for the next start.
            #expect(FileManager.default.fileExists(atPath: socketPath))
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
