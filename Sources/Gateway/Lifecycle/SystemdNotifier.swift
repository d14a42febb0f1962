#if canImport(Glibc)
import Glibc
#endif

/// The sd_notify protocol, without libsystemd: one datagram with `KEY=value`
/// lines, sent to the Unix datagram socket named by `NOTIFY_SOCKET`.
///
/// A name starting with `@` is in the abstract namespace (its first byte
/// becomes NUL). When `NOTIFY_SOCKET` is unset, notifying does nothing.
public struct SystemdNotifier: Sendable {
    /// The socket path from the environment, if any.
    public let socketPath: String?

    /// Reads `NOTIFY_SOCKET` from the environment.
    public init() {
        self.socketPath = getenv("NOTIFY_SOCKET").map { String(cString: $0) }
    }

    /// Sends `state` (e.g. `READY=1`); returns whether a datagram was sent.
    @discardableResult
    public func notify(_ state: String) -> Bool {
        #if canImport(Glibc)
        guard let path = self.socketPath, !path.isEmpty else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        // Abstract names are not NUL-terminated: the length says where they end.
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), socketAddress, length)
            }
        }
        return sent == message.count
        #else
        return false
        #endif
    }
}
