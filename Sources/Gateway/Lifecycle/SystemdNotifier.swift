#if canImport(Glibc)
import Glibc
#endif
import GatewaySystem

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
        guard let address = try? UnixSocketAddress(path: path, abstractWhenPrefixed: true),
            let fd = try? systemCall("socket", { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) })
        else { return false }
        defer { close(fd) }
        let message = Array(state.utf8)
        let sent = try? systemCall("sendto", on: path) {
            address.withSocketAddress { sendto(fd, message, message.count, Int32(MSG_NOSIGNAL), $0, $1) }
        }
        return sent == message.count
        #else
        return false
        #endif
    }
}
