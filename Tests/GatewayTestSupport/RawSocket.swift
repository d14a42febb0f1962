import Foundation
import GatewayProtocol
import GatewaySystem
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A plain blocking Unix stream socket, for sending bytes no well-behaved client would.
// Unchecked: a test uses one socket from one thread at a time (a background
// writer thread owns it while the test only watches the gateway).
public final class RawSocket: @unchecked Sendable {
    public let fd: Int32

    public init(path: String) throws {
        self.fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard self.fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        let address = try UnixSocketAddress(path: path)
        let status = address.withSocketAddress { connect(self.fd, $0, $1) }
        guard status == 0 else {
            let error = errno
            close(self.fd)
            throw TestFailure("connect \(path): errno \(error)")
        }
    }

    deinit { close(self.fd) }

    public func write(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TestFailure("send: errno \(errno)") }
            offset += written
        }
    }

    public func write(_ message: GatewayMessage) throws {
        let frame = try message.encodedFrame()
        try self.write(Array(frame.readableBytesView))
    }

    /// Reads until `count` bytes arrived, the peer closed, or `timeout` passed.
    public func read(upTo count: Int, timeout: Duration = .seconds(5)) throws -> [UInt8] {
        var result: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while result.count < count {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { break }
            var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            let milliseconds = Int32(max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            guard poll(&poller, 1, milliseconds) == 1 else { break }
            var buffer = [UInt8](repeating: 0, count: count - result.count)
            let received = recv(self.fd, &buffer, buffer.count, 0)
            if received <= 0 { break }
            result += buffer[..<received]
        }
        return result
    }

    /// Reads one frame and decodes it.
    public func readMessage(timeout: Duration = .seconds(5)) throws -> GatewayMessage {
        let prefix = try self.read(upTo: 4, timeout: timeout)
        guard prefix.count == 4 else { throw TestFailure("the connection closed before a reply (got \(prefix.count) bytes)") }
        let length = Int(prefix[0]) << 24 | Int(prefix[1]) << 16 | Int(prefix[2]) << 8 | Int(prefix[3])
        let payload = try self.read(upTo: length, timeout: timeout)
        guard payload.count == length else { throw TestFailure("short frame: \(payload.count) of \(length)") }
        return try GatewayMessage(payload: ByteBuffer(bytes: payload))
    }

    /// Whether the peer closed the connection within `timeout` (reads what remains).
    public func isClosedByPeer(timeout: Duration = .seconds(5)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 100) >= 0 else { return false }
            if poller.revents != 0 {
                var buffer = [UInt8](repeating: 0, count: 4096)
                let received = recv(self.fd, &buffer, buffer.count, 0)
                if received == 0 { return true }
                if received < 0 { return errno == ECONNRESET }
            }
        }
        return false
    }
}
