#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol
import GatewaySystem

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
        try removeFile(path, code: .invalidConfiguration)
    }

    /// Whether something accepts connections on the socket at `path`.
    static func acceptsConnections(_ path: String) -> Bool {
        guard let address = try? UnixSocketAddress(path: path),
            let fd = try? systemCall("socket", { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) })
        else { return false }
        defer { close(fd) }
        return (try? systemCall("connect", on: path) { address.withSocketAddress { connect(fd, $0, $1) } }) != nil
    }

    /// Sets the socket file's mode and, when given, its group (a name or a number).
    static func applyPermissions(_ path: String, mode: UInt32, group: String?) throws {
        try systemCall("chmod", on: "\(path), mode \(String(mode, radix: 8))", code: .invalidConfiguration) { chmod(path, mode_t(mode)) }
        guard let group else { return }
        let gid: gid_t
        if let number = gid_t(group) {
            gid = number
        } else if let entry = getgrnam(group) {
            gid = entry.pointee.gr_gid
        } else {
            throw GatewayError(.invalidConfiguration, "no group called \(group)")
        }
        try systemCall("chown", on: "\(path), group \(group)", code: .invalidConfiguration) { chown(path, uid_t.max, gid) }
    }
}
