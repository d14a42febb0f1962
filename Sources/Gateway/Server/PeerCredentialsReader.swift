#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Reads `SO_PEERCRED` from an accepted Unix socket.
///
/// NIO has no channel option for it, but its socket channels implement
/// `SocketOptionProvider`, whose generic `unsafeGetSocketOption` calls
/// getsockopt(2) on the channel's own descriptor with a buffer of the value's
/// size. Glibc's `struct ucred` is hidden from Swift (it needs _GNU_SOURCE),
/// so `KernelCredentials` mirrors the kernel's layout: three 32-bit fields,
/// pid, uid, gid, in that order (include/linux/socket.h).
enum PeerCredentialsReader {
    private struct KernelCredentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// The peer's credentials, or nil when they cannot be read (not Linux,
    /// not a socket channel, or getsockopt failed). Completes at once when
    /// called on the channel's event loop.
    static func read(from channel: any Channel) -> EventLoopFuture<PeerCredentials?> {
        #if os(Linux)
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeSucceededFuture(nil)
        }
        let future: EventLoopFuture<KernelCredentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        return future.map { credentials -> PeerCredentials? in
            PeerCredentials(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid)
        }.recover { _ in nil }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }
}
