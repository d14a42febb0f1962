#if canImport(Glibc)
import Glibc
#endif
import GatewaySystem
import NIOCore

/// Reads `SO_PEERCRED` and `SO_PEERGROUPS` from an accepted Unix socket.
///
/// NIO has no channel option for them, but its socket channels implement
/// `SocketOptionProvider`, whose generic `unsafeGetSocketOption` calls
/// getsockopt(2) on the channel's own descriptor with a zeroed buffer of the
/// value's size. Glibc's `struct ucred` is hidden from Swift (it needs
/// _GNU_SOURCE), so `KernelCredentials` mirrors the kernel's layout: three
/// 32-bit fields, pid, uid, gid, in that order (include/linux/socket.h).
enum PeerCredentialsReader {
    private struct KernelCredentials: Sendable {
        var pid: Int32 = 0
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    /// Linux's SO_PEERGROUPS (asm-generic/socket.h; Glibc does not export it).
    private static let peerGroupsOption: Int32 = 59

    /// The most supplementary groups read; a peer in more groups is judged by
    /// its uid and effective gid only (getsockopt fails with ERANGE).
    static let maximumGroups = 64

    /// A buffer for `SO_PEERGROUPS`: `maximumGroups` gids.
    private struct KernelGroups: Sendable {
        var gids: (
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
            UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64
        ) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    }

    /// The groups in a `SO_PEERGROUPS` buffer.
    ///
    /// NIO does not return how many bytes getsockopt wrote, and the buffer
    /// starts zeroed, so the end of the list has to be found in the values:
    /// the kernel keeps a process's groups sorted in ascending order, so the
    /// list ends where the values stop ascending. A 0 can only be a real
    /// group first in the list; a list of zeros alone is read as no groups
    /// (erring towards refusing: group 0 is then only matched as the peer's
    /// effective gid).
    static func groups(fromKernelList gids: [UInt32]) -> Set<UInt32> {
        var groups: Set<UInt32> = []
        var previous: UInt32?
        for gid in gids {
            if let previous, gid < previous { break }
            groups.insert(gid)
            previous = gid
        }
        if groups == [0] { return [] }
        return groups
    }

    /// The credentials of the peer of the Unix socket `fd`, or nil when
    /// they cannot be read. Here getsockopt says how many groups it wrote.
    static func read(fromDescriptor fd: Int32) -> PeerCredentials? {
        #if os(Linux)
        var credentials = KernelCredentials()
        var length = socklen_t(MemoryLayout<KernelCredentials>.size)
        guard (try? systemCall("getsockopt(SO_PEERCRED)", { getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) })) != nil else {
            return nil
        }
        var buffer = KernelGroups()
        var groupsLength = socklen_t(MemoryLayout<KernelGroups>.size)
        var groups: Set<UInt32> = []
        if (try? systemCall("getsockopt(SO_PEERGROUPS)", { getsockopt(fd, SOL_SOCKET, Self.peerGroupsOption, &buffer, &groupsLength) })) != nil {
            let count = Int(groupsLength) / MemoryLayout<UInt32>.size
            groups = withUnsafeBytes(of: buffer.gids) { Set($0.bindMemory(to: UInt32.self).prefix(count)) }
        }
        return PeerCredentials(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, groups: groups)
        #else
        return nil
        #endif
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
        let groups: EventLoopFuture<KernelGroups> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(Self.peerGroupsOption)
        )
        // Groups that cannot be read (more than `maximumGroups`, an old
        // kernel) leave the uid and the effective gid to decide.
        let supplementary = groups.map { buffer -> Set<UInt32> in
            let gids = withUnsafeBytes(of: buffer.gids) { Array($0.bindMemory(to: UInt32.self)) }
            return Self.groups(fromKernelList: gids)
        }.recover { _ in [] }
        return future.and(supplementary).map { credentials, groups -> PeerCredentials? in
            PeerCredentials(uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, groups: groups)
        }.recover { _ in nil }
        #else
        return channel.eventLoop.makeSucceededFuture(nil)
        #endif
    }
}
