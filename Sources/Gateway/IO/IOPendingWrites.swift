#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import NIOCore

/// The buffers a non-blocking socket has not taken yet, written in order:
/// the sending half of `IOWorkerConnection` and `IORedisConnection`.
struct IOPendingWrites {
    private var buffers = CircularBuffer<ByteBuffer>()

    /// Whether every buffer has been written.
    var isEmpty: Bool { self.buffers.isEmpty }

    /// Queues `buffer` after the others.
    mutating func append(_ buffer: ByteBuffer) {
        self.buffers.append(buffer)
    }

    /// Drops what was not written.
    mutating func removeAll() {
        self.buffers.removeAll()
    }

    /// Writes to `fd` until everything is written or the socket takes no
    /// more; returns the bytes written, and whether everything was. Throws
    /// when the socket fails (EPIPE or ECONNRESET: the peer is gone).
    ///
    /// One buffer goes out with `send`; several (a pipelined burst's
    /// replies, a turn's commands) with one `sendmsg` of up to
    /// `maximumGather` of them, so that a burst costs one system call, not
    /// one per reply.
    mutating func write(to fd: Int32) throws(GatewayError) -> (written: Int, drained: Bool) {
        var total = 0
        while let first = self.buffers.first {
            let attempt: (written: Int?, attempted: Int)
            if self.buffers.count == 1 {
                let written = try first.withUnsafeReadableBytes { bytes throws(GatewayError) in
                    try nonBlockingSystemCall("send") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
                }
                attempt = (written, first.readableBytes)
            } else {
                attempt = try self.gatheredWrite(to: fd)
            }
            guard let written = attempt.written else { return (total, false) }
            total += written
            self.consume(written)
            if written < attempt.attempted { return (total, false) }
        }
        return (total, true)
    }

    /// The most buffers one `sendmsg` takes (Linux allows 1,024).
    static let maximumGather = 64

    /// One `sendmsg` of the first `maximumGather` buffers; returns what it
    /// wrote (nil when the socket takes nothing now) and what it tried to.
    private func gatheredWrite(to fd: Int32) throws(GatewayError) -> (written: Int?, attempted: Int) {
        let count = min(self.buffers.count, Self.maximumGather)
        let outcome = withUnsafeTemporaryAllocation(of: iovec.self, capacity: count) { vectors in
            withUnsafeTemporaryAllocation(of: Unmanaged<AnyObject>.self, capacity: count) { storages in
                // Each buffer's storage is retained while the kernel reads from it.
                var attempted = 0
                for (index, buffer) in self.buffers.prefix(count).enumerated() {
                    buffer.withUnsafeReadableBytesWithStorageManagement { bytes, storage in
                        storages[index] = storage.retain()
                        vectors[index] = iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                    }
                    attempted += buffer.readableBytes
                }
                defer { for index in 0..<count { storages[index].release() } }
                var message = msghdr()
                message.msg_iov = vectors.baseAddress
                message.msg_iovlen = count
                let written = Result { () throws(GatewayError) -> Int? in
                    try nonBlockingSystemCall("sendmsg") { Glibc.sendmsg(fd, &message, Int32(MSG_NOSIGNAL)) }
                }
                return (written, attempted)
            }
        }
        return (try outcome.0.get(), outcome.1)
    }

    /// Drops the first `count` bytes: the buffers written whole (and any
    /// empty ones before the rest), and the front of a buffer written in part.
    private mutating func consume(_ count: Int) {
        var left = count
        while let first = self.buffers.first, first.readableBytes <= left {
            left -= first.readableBytes
            self.buffers.removeFirst()
        }
        if left > 0 {
            self.buffers[self.buffers.startIndex].moveReaderIndex(forwardBy: left)
        }
    }
}
#endif
