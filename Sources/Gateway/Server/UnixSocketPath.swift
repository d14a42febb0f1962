#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol

/// Preparing the socket path before binding, and tidying it after.
enum UnixSocketPath {
    /// Makes `path` free to bind: a stale socket file (nobody accepts on it) is
    /// removed; a socket a live process accepts on is refused with a clear
    /// error; any other kind of file is refused too. Creates the parent folder.
    static func prepare(_ path: String) throws {
        let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        if !parent.isEmpty { _ = mkdir(parent, 0o755) }

        var info = stat()
        guard lstat(path, &info) == 0 else { return }  // nothing there
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw GatewayError(.invalidConfiguration, "\(path) exists and is not a socket; refusing to replace it")
        }
        if self.acceptsConnections(path) {
            throw GatewayError(
                .invalidConfiguration,
                "another gateway is already serving \(path); stop it first or choose another --socket"
            )
        }
        guard unlink(path) == 0 || errno == ENOENT else {
            throw GatewayError(.invalidConfiguration, "cannot remove the stale socket \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Whether something accepts connections on the socket at `path`.
    static func acceptsConnections(_ path: String) -> Bool {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        guard var address = self.address(path) else { return false }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        return status == 0
    }

    /// Sets the socket file's mode and, when given, its group (a name or a number).
    static func applyPermissions(_ path: String, mode: UInt32, group: String?) throws {
        guard chmod(path, mode_t(mode)) == 0 else {
            throw GatewayError(.invalidConfiguration, "chmod \(String(mode, radix: 8)) \(path): \(String(cString: strerror(errno)))")
        }
        guard let group else { return }
        let gid: gid_t
        if let number = gid_t(group) {
            gid = number
        } else if let entry = getgrnam(group) {
            gid = entry.pointee.gr_gid
        } else {
            throw GatewayError(.invalidConfiguration, "no group called \(group)")
        }
        guard chown(path, uid_t.max, gid) == 0 else {
            throw GatewayError(.invalidConfiguration, "chgrp \(group) \(path): \(String(cString: strerror(errno)))")
        }
    }

    static func address(_ path: String) -> sockaddr_un? {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return address
    }
}
