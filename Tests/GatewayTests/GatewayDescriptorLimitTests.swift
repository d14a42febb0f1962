import Foundation
import GatewayConnection
import GatewayProtocol
import GatewaySystem
import NIOCore
import GatewayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// More workers than the gateway has file descriptors: it raises its soft
    /// limit to the hard one, pauses accepting (without spinning) when even
    /// that runs out, counts it, and serves again once connections close.
    @Suite(.serialized) struct GatewayDescriptorLimitTests {
        /// Connects a raw Unix socket to `path` (no hello): one descriptor on each side.
        static func rawConnect(_ path: String) -> Int32? {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { return nil }
            guard let address = try? UnixSocketAddress(path: path) else {
                close(fd)
                return nil
            }
            let status = address.withSocketAddress { connect(fd, $0, $1) }
            guard status == 0 else {
                close(fd)
                return nil
            }
            return fd
        }

        /// The gateway's CPU time (user + system) in clock ticks, from /proc.
        static func cpuTicks(_ pid: Int32) throws -> Int {
            let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
            // Fields after the command name, which is in parentheses.
            let fields = stat[stat.index(after: try #require(stat.lastIndex(of: ")")))...].split(separator: " ")
            return try #require(Int(fields[11])) + #require(Int(fields[12]))
        }

        static func stats(_ gateway: GatewayProcess) async throws -> Stats {
            let connection = try await gateway.connect(name: "stats")
            defer { Task { await connection.close() } }
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            return stats
        }

        @Test func theSoftLimitIsRaisedToTheHardOne() async throws {
            // prlimit starts the gateway with a soft limit of 64 and a hard one of 512.
            let gateway = try GatewayProcess(arguments: [], launcher: ["/usr/bin/prlimit", "--nofile=64:512", "--"])
            var open: [Int32] = []
            defer { open.forEach { close($0) } }
            for _ in 0..<200 {
                guard let fd = Self.rawConnect(gateway.socketPath) else { break }
                open.append(fd)
            }
            // Every one of them accepted: a fresh connection is still served.
            let connection = try await gateway.connect(name: "after-200")
            #expect(try await connection.request(.ping) == .pong)
            await connection.close()
            #expect(try await Self.stats(gateway).values["acceptBackoffs"] == .count(0))
        }

        @Test func pastTheLimitAcceptingPausesWithoutSpinningAndResumes() async throws {
            let gateway = try GatewayProcess(arguments: [], launcher: ["/usr/bin/prlimit", "--nofile=64:64", "--"])
            var open: [Int32] = []
            defer { open.forEach { close($0) } }
            // Far more than 64: the rest wait in the listen backlog.
            for _ in 0..<150 {
                guard let fd = Self.rawConnect(gateway.socketPath) else { break }
                open.append(fd)
            }
            #expect(open.count > 64)
            // Out of descriptors for two seconds: accepting pauses, it does not spin.
            let before = try Self.cpuTicks(gateway.pid)
            try await Task.sleep(for: .seconds(2))
            let used = try Self.cpuTicks(gateway.pid) - before
            let ticksPerSecond = sysconf(Int32(_SC_CLK_TCK))
            #expect(used < ticksPerSecond / 2, "the gateway used \(used) ticks of CPU in 2 s while out of descriptors")
            // Once connections close, it accepts again and counts the pauses.
            open.forEach { close($0) }
            open = []
            let connection = try await gateway.connect(name: "after", timeout: .seconds(30))
            #expect(try await connection.request(.ping) == .pong)
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            guard case .count(let backoffs) = stats.values["acceptBackoffs"] else { throw TestFailure("no acceptBackoffs in \(stats)") }
            #expect(backoffs >= 1)
            await connection.close()
            #expect(gateway.log.contains("no file descriptor left"))
        }
    }
}
