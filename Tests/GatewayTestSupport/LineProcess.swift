import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process spoken to one line at a time: a line on its standard
/// input, a line back on its standard output (the demo workers). Killed with
/// SIGKILL when let go, if still running.
public final class LineProcess {
    /// The process, for its pid and its exit.
    public let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var buffered = Data()

    /// Starts `executable` with `arguments`; its standard error is discarded.
    public init(executable: URL, arguments: [String]) throws {
        self.process.executableURL = executable
        self.process.arguments = arguments
        self.process.standardInput = self.input
        self.process.standardOutput = self.output
        self.process.standardError = FileHandle.nullDevice
        try self.process.run()
    }

    deinit {
        if self.process.isRunning {
            // SIGKILL, not SIGTERM: a child spawned from one of the test's
            // dispatch threads can inherit their mask, SIGTERM blocked, and
            // then never exit (observed: a test hung in waitUntilExit).
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }

    /// The process id.
    public var pid: Int32 { self.process.processIdentifier }

    /// Writes `line` and a newline, and returns the next line the process
    /// writes (without its newline); throws when the process exits first.
    public func exchange(_ line: String) throws -> Data {
        self.send(line)
        return try self.receive()
    }

    /// Writes `line` and a newline without waiting for an answer (to start
    /// several processes at once; `receive` reads the answers).
    public func send(_ line: String) {
        self.input.fileHandleForWriting.write(Data("\(line)\n".utf8))
    }

    /// The next line the process writes (without its newline); throws when
    /// the process exits first.
    public func receive() throws -> Data {
        while !self.buffered.contains(UInt8(ascii: "\n")) {
            let chunk = self.output.fileHandleForReading.availableData
            guard !chunk.isEmpty else { throw TestFailure("the process exited") }
            self.buffered += chunk
        }
        let end = self.buffered.firstIndex(of: UInt8(ascii: "\n"))!
        let reply = Data(self.buffered[..<end])
        self.buffered = Data(self.buffered[(end + 1)...])
        return reply
    }
}
