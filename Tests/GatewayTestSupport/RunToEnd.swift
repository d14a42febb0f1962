import Foundation

extension Process {
    /// Runs the process to its end and returns its exit status and what it
    /// wrote to standard output and, with `includingErrors`, standard error
    /// (interleaved as written).
    ///
    /// The output is read to its end before waiting for the exit, so a child
    /// that fills the pipe cannot block on it.
    public func runToEnd(includingErrors: Bool = true) throws -> (status: Int32, output: String) {
        let output = Pipe()
        self.standardOutput = output
        if includingErrors { self.standardError = output }
        try self.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        self.waitUntilExit()
        return (self.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
