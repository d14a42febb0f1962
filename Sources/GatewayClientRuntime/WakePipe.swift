import GatewayProtocol
#if canImport(Glibc)
import Glibc
#endif

/// A socket pair that wakes a link's background thread out of `poll`: any
/// thread writes a byte (`wake`); the background thread watches `readEnd`
/// and drains it (`drain`). Closed by its owner (`close`).
struct WakePipe {
    /// The end the background thread polls.
    let readEnd: Int32
    private let writeEnd: Int32

    /// A new pair of sockets.
    init() throws(GatewayError) {
        (self.readEnd, self.writeEnd) = try UnixSocket.pair()
    }

    /// Makes `readEnd` readable (a byte more; a full pipe is readable already).
    func wake() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? UnixSocket.send(self.writeEnd, $0) }
    }

    /// Reads every byte waiting on `readEnd`.
    func drain() {
        var drain = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &drain) { while (try? UnixSocket.receive(self.readEnd, into: $0)) ?? nil != nil {} }
    }

    /// Closes both ends.
    func close() {
        UnixSocket.close(self.readEnd)
        UnixSocket.close(self.writeEnd)
    }
}
