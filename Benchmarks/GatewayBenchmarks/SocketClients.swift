import Foundation
import GatewayProtocol
import GatewaySystem
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// Connects a blocking Unix stream socket to `path`.
func connectUnixSocket(_ path: String) throws -> Int32 {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw BenchmarkFailure("socket: errno \(errno)") }
    let address = try UnixSocketAddress(path: path)
    let status = address.withSocketAddress { connect(fd, $0, $1) }
    guard status == 0 else {
        close(fd)
        throw BenchmarkFailure("connect \(path): errno \(errno)")
    }
    return fd
}

/// A gateway client as lean as hiredis's blocking client, so that the two
/// measure the servers and not the clients: one socket, one request at a
/// time, frames written and read with plain system calls.
final class BlockingGatewayClient {
    let fd: Int32
    private var readBuffer = [UInt8](repeating: 0, count: 1 << 20)

    init(socketPath: String) throws {
        self.fd = try connectUnixSocket(socketPath)
        let hello = try GatewayMessage(id: 1, .hello(Hello(clientName: "bench", pid: UInt64(getpid())))).encodedFrame()
        _ = try self.roundTrip(Array(hello.readableBytesView))
    }

    deinit { close(self.fd) }

    /// Writes one request frame and reads one reply frame; returns the reply's payload length.
    @discardableResult
    func roundTrip(_ frame: [UInt8]) throws -> Int {
        var written = 0
        while written < frame.count {
            let count = frame[written...].withUnsafeBytes { send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw BenchmarkFailure("send: errno \(errno)") }
            written += count
        }
        var have = 0
        var needed = 4
        while have < needed {
            let count = self.readBuffer.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress! + have, $0.count - have, 0) }
            guard count > 0 else { throw BenchmarkFailure("recv: \(count == 0 ? "closed" : "errno \(errno)")") }
            have += count
            if have >= 4 && needed == 4 {
                needed = 4 + (Int(self.readBuffer[0]) << 24 | Int(self.readBuffer[1]) << 16 | Int(self.readBuffer[2]) << 8 | Int(self.readBuffer[3]))
            }
        }
        return needed - 4
    }

    /// Sends a stats request and returns its `nearCacheHits` (0 when absent).
    func nearCacheHits(statsFrame: [UInt8]) throws -> UInt64 {
        let length = try self.roundTrip(statsFrame)
        let message = try GatewayMessage(payload: ByteBuffer(bytes: self.readBuffer[4..<(4 + length)]))
        guard case .statsReply(let stats) = message.body else { throw BenchmarkFailure("no stats reply") }
        return stats[count: "nearCacheHits"] ?? 0
    }
}

/// Drives many connections from one thread, each with one request
/// outstanding (as redis-benchmark does without -P), and counts replies per
/// second. `frame` is the request; `replyLength` the exact length of each
/// reply, including any prefix.
func runClosedLoop(fds: [Int32], frame: [UInt8], replyLength: Int, duration: Duration) throws -> Double {
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    var pending = [Int](repeating: 0, count: fds.count)  // reply bytes still expected per connection
    var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    var scratch = [UInt8](repeating: 0, count: 1 << 16)
    func sendRequest(_ index: Int) throws {
        let count = frame.withUnsafeBytes { send(fds[index], $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard count == frame.count else { throw BenchmarkFailure("short send on connection \(index)") }
        pending[index] = replyLength
    }
    for index in fds.indices { try sendRequest(index) }
    var completed = 0
    let clock = ContinuousClock()
    let start = clock.now
    let end = start + duration
    while clock.now < end {
        guard poll(&polls, nfds_t(polls.count), 1_000) > 0 else { continue }
        for index in polls.indices where polls[index].revents != 0 {
            polls[index].revents = 0
            let count = scratch.withUnsafeMutableBytes { recv(fds[index], $0.baseAddress, min($0.count, pending[index]), 0) }
            guard count > 0 else {
                if count < 0 && errno == EAGAIN { continue }
                throw BenchmarkFailure("connection \(index) closed")
            }
            pending[index] -= count
            if pending[index] == 0 {
                completed += 1
                try sendRequest(index)
            }
        }
    }
    let elapsed = clock.now - start
    // Drain the requests still outstanding, so the next run starts clean.
    for index in fds.indices {
        _ = fcntl(fds[index], F_SETFL, fcntl(fds[index], F_GETFL) & ~O_NONBLOCK)
        while pending[index] > 0 {
            let count = scratch.withUnsafeMutableBytes { recv(fds[index], $0.baseAddress, min($0.count, pending[index]), 0) }
            guard count > 0 else { break }
            pending[index] -= count
        }
    }
    return Double(completed) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
}

/// Pins this process (every thread) to one CPU. (glibc's sched_setaffinity
/// is not visible from Swift without _GNU_SOURCE, so this asks taskset.)
func pinProcess(toCPU cpu: Int) {
    do {
        try pin(pid: getpid(), cpus: "\(cpu)")
    } catch {
        print("warning: could not pin to CPU \(cpu): \(error)")
    }
}

/// Pins another process (and its threads) to `cpus`, e.g. "0" or "0,1", with taskset.
func pin(pid: Int32, cpus: String) throws {
    let taskset = Process()
    taskset.executableURL = URL(fileURLWithPath: "/usr/bin/taskset")
    taskset.arguments = ["-a", "-p", "-c", cpus, "\(pid)"]
    taskset.standardOutput = FileHandle.nullDevice
    try taskset.run()
    taskset.waitUntilExit()
    guard taskset.terminationStatus == 0 else { throw BenchmarkFailure("taskset -p \(cpus) \(pid) failed") }
}

struct BenchmarkFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
