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
    mutating func write(to fd: Int32) throws(GatewayError) -> (written: Int, drained: Bool) {
        var total = 0
        while let first = self.buffers.first {
            let written = try first.withUnsafeReadableBytes { bytes throws(GatewayError) in
                try nonBlockingSystemCall("write") { Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL)) }
            }
            guard let written else { return (total, false) }
            total += written
            if written == first.readableBytes {
                self.buffers.removeFirst()
            } else {
                self.buffers[self.buffers.startIndex].moveReaderIndex(forwardBy: written)
                return (total, false)
            }
        }
        return (total, true)
    }
}
#endif
