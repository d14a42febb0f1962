import Foundation
import GatewayConnection
import GatewayProtocol
import GatewaySystem
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A real `cache-gateway serve` process on a private socket, for integration tests.
///
/// It is started with NOTIFY_SOCKET pointing at a datagram socket of the test,
/// and `start` returns when the gateway sends READY=1: tests wait on that
/// event, not on a fixed delay. The process is killed when the value goes away
/// if the test has not stopped it.
public final class GatewayProcess: @unchecked Sendable {
    public let process: Process
    public let directory: URL
    public let socketPath: String
    private let notify: NotifySocket
    private var output: FileHandle

    /// The built `cache-gateway` executable, next to the test bundle.
    public static var executable: URL {
        get throws {
            let candidates = [
                URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent(),
                Bundle.main.bundleURL,
                Bundle.main.bundleURL.deletingLastPathComponent(),
            ]
            for directory in candidates {
                let url = directory.appendingPathComponent("cache-gateway")
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
            throw TestFailure("cache-gateway executable not found beside \(CommandLine.arguments[0])")
        }
    }

    /// Runs `serve --socket <a fresh path>` with `arguments` and `environment`
    /// added, to its end: for choices the gateway must refuse before it
    /// serves. Returns its exit status, what it wrote, and whether it left a
    /// socket file behind.
    public static func runToEnd(arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String, leftSocketFile: Bool) {
        let directory = URL(fileURLWithPath: "/tmp").appendingPathComponent("cg-refused-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let socket = directory.appendingPathComponent("g.sock").path
        let process = Process()
        process.executableURL = try Self.executable
        process.arguments = ["serve", "--socket", socket] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let (status, output) = try process.runToEnd()
        return (status, output, FileManager.default.fileExists(atPath: socket))
    }

    /// Starts a gateway with `arguments` added to `serve --socket …`, and waits for READY=1.
    /// `reuseSocketOf` starts the gateway on another gateway's socket path (for stale-socket tests).
    /// `launcher` runs the gateway through another program (its path and
    /// arguments, which end with the gateway's path), `prlimit` for example.
    public init(arguments: [String] = [], environment: [String: String] = [:], reuseSocketOf other: GatewayProcess? = nil, launcher: [String] = [], readyTimeout: Duration = .seconds(20)) throws {
        self.directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cg-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        self.socketPath = other?.socketPath ?? self.directory.appendingPathComponent("gateway.sock").path
        self.notify = try NotifySocket(path: self.directory.appendingPathComponent("notify.sock").path)

        self.process = Process()
        let gatewayArguments = ["serve", "--socket", self.socketPath] + arguments
        if let program = launcher.first {
            self.process.executableURL = URL(fileURLWithPath: program)
            self.process.arguments = Array(launcher.dropFirst()) + [try Self.executable.path] + gatewayArguments
        } else {
            self.process.executableURL = try Self.executable
            self.process.arguments = gatewayArguments
        }
        var env = ProcessInfo.processInfo.environment
        env["NOTIFY_SOCKET"] = self.notify.path
        for (key, value) in environment { env[key] = value }
        self.process.environment = env
        let logURL = self.directory.appendingPathComponent("gateway.log")
        guard FileManager.default.createFile(atPath: logURL.path, contents: nil) else { throw TestFailure("cannot create \(logURL.path)") }
        self.output = try FileHandle(forWritingTo: logURL)
        self.process.standardOutput = self.output
        self.process.standardError = self.output
        try self.process.run()

        let message = try self.notify.receive(timeout: readyTimeout)
        guard message.contains("READY=1") else {
            throw TestFailure("the gateway sent \(message) instead of READY=1; log:\n\(self.log)")
        }
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: self.directory)
    }

    public var pid: Int32 { self.process.processIdentifier }

    /// What the gateway logged so far.
    public var log: String {
        (try? String(contentsOf: self.directory.appendingPathComponent("gateway.log"), encoding: .utf8)) ?? ""
    }

    /// The next sd_notify datagram (e.g. STOPPING=1).
    public func nextNotification(timeout: Duration = .seconds(10)) throws -> String {
        try self.notify.receive(timeout: timeout)
    }

    /// Sends `signal` and waits for the process to exit; returns its exit status.
    public func stop(signal: Int32 = SIGTERM) -> Int32 {
        kill(self.process.processIdentifier, signal)
        self.process.waitUntilExit()
        return self.process.terminationStatus
    }

    /// The resident set size of the gateway, in KiB, from /proc.
    public func residentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(self.pid)/status", encoding: .utf8)
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true)[1])
        else { throw TestFailure("no VmRSS in /proc/\(self.pid)/status") }
        return kib
    }

    /// A connection that has said hello. The timeout is generous: tests run
    /// debug builds on a 2-CPU machine, where a burst of connections may wait
    /// seconds for the gateway's first answer; a test about timing sets its own.
    public func connect(name: String = "test", timeout: TimeAmount = .seconds(30)) async throws -> GatewayConnection {
        try await GatewayConnection.connect(socketPath: self.socketPath, clientName: name, timeout: timeout)
    }
}

/// The receiving end of sd_notify: a Unix datagram socket.
public final class NotifySocket: @unchecked Sendable {
    public let path: String
    private let fd: Int32

    public init(path: String) throws {
        self.path = path
        self.fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard self.fd >= 0 else { throw TestFailure("socket: \(errno)") }
        let address = try UnixSocketAddress(path: path)
        let status = address.withSocketAddress { bind(self.fd, $0, $1) }
        guard status == 0 else { throw TestFailure("bind \(path): \(errno)") }
    }

    deinit { close(self.fd) }

    /// Waits for one datagram, up to `timeout`.
    public func receive(timeout: Duration) throws -> String {
        var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&poller, 1, milliseconds) == 1 else { throw TestFailure("no sd_notify datagram within \(timeout)") }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = recv(self.fd, &buffer, buffer.count, 0)
        guard count > 0 else { throw TestFailure("recv: \(errno)") }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }
}

/// A test's own failure with a message.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
