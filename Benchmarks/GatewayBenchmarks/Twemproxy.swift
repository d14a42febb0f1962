import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// twemproxy (Debian's `nutcracker`, installed by scripts/bench.sh), on a
/// Unix socket in front of the benchmark's redis-server: the real peer that
/// does the gateway's two-hop job, measured in the same run.
final class TwemproxyUnderTest {
    let process = Process()
    let socketPath: String
    private let directory: String

    /// Starts nutcracker in front of the redis-server on `redisSocket` and
    /// waits until it answers.
    init(redisSocket: String) throws {
        self.directory = NSTemporaryDirectory() + "cg-nutcracker-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/nutcracker.sock"
        let configuration = """
            bench:
              listen: \(self.socketPath)
              redis: true
              hash: fnv1a_64
              distribution: ketama
              timeout: 1000
              servers:
               - \(redisSocket):1

            """
        let configurationPath = self.directory + "/nutcracker.yml"
        try configuration.write(toFile: configurationPath, atomically: true, encoding: .utf8)
        guard let binary = ["/usr/sbin/nutcracker", "/usr/bin/nutcracker"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw BenchmarkFailure("nutcracker is not installed (apt package nutcracker; scripts/bench.sh installs it)")
        }
        self.process.executableURL = URL(fileURLWithPath: binary)
        // Its stats listener needs a TCP port: one from the dynamic range.
        let statsPort = 40_000 + Int(getpid() % 20_000)
        self.process.arguments = ["-c", configurationPath, "-s", "\(statsPort)", "-a", "127.0.0.1", "-o", self.directory + "/nutcracker.log", "-p", self.directory + "/nutcracker.pid"]
        self.process.standardOutput = FileHandle.nullDevice
        self.process.standardError = FileHandle.nullDevice
        try self.process.run()
        try waitUntilListening(self.socketPath, what: "nutcracker")
    }

    var pid: Int32 { self.process.processIdentifier }

    func stop() {
        stopProcess(self.process, removing: self.directory)
    }
}
