#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import NIOCore

extension ByteBuffer {
    /// Empties the buffer and reads what the non-blocking socket `fd` holds
    /// into it, up to 64 KiB (the buffer's storage is reused when nothing
    /// else holds it): the reading half of `IOWorkerConnection` and
    /// `IORedisConnection`. Returns the bytes read, 0 at end of stream, or
    /// nil when there was nothing to read; throws when the socket fails.
    mutating func readAvailable(from fd: Int32) throws(GatewayError) -> Int? {
        self.clear()
        var wouldBlock = false
        let count = try self.writeWithUnsafeMutableBytes(minimumWritableBytes: 65_536) { buffer throws(GatewayError) in
            guard let count = try nonBlockingSystemCall("read", { Glibc.read(fd, buffer.baseAddress, buffer.count) }) else {
                wouldBlock = true
                return 0
            }
            return count
        }
        return wouldBlock ? nil : count
    }
}
#endif
