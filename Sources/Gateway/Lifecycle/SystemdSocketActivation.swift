#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import GatewaySystem

/// systemd's socket activation protocol (`sd_listen_fds(3)`), without libsystemd.
///
/// With a `.socket` unit, systemd binds the socket itself and starts the
/// gateway on the first connection (or at boot), handing over the listening
/// socket as descriptor 3 with `LISTEN_PID` (the process it is meant for) and
/// `LISTEN_FDS` (how many) in the environment. Connections that arrive while
/// the gateway starts or restarts wait in the socket's backlog instead of
/// failing, which is what makes activation worth having.
public enum SystemdSocketActivation {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    static let firstDescriptor: Int32 = 3

    /// The socket systemd passed to this process: its descriptor and path; nil
    /// when the process was not socket-activated.
    ///
    /// The variables are removed from the environment (as `sd_listen_fds(1)`
    /// does), so that no child process takes them for its own, and the
    /// descriptor is marked close-on-exec. Throws `.invalidConfiguration` when
    /// the variables are malformed, when more than one socket is passed (the
    /// gateway serves one), or when the socket is not a listening Unix stream
    /// socket bound to a path.
    public static func inheritedListener() throws -> (descriptor: Int32, path: String)? {
        let environment = (pid: getenv("LISTEN_PID").map { String(cString: $0) }, fds: getenv("LISTEN_FDS").map { String(cString: $0) })
        defer {
            unsetenv("LISTEN_PID")
            unsetenv("LISTEN_FDS")
            unsetenv("LISTEN_FDNAMES")
        }
        guard let pidText = environment.pid, let countText = environment.fds else { return nil }
        // Meant for another process (a parent that was activated and started us).
        guard let pid = Int32(pidText), pid == getpid() else { return nil }
        guard let count = Int32(countText), count >= 0 else {
            throw GatewayError(.invalidConfiguration, "LISTEN_FDS is \(countText), not a count of descriptors")
        }
        guard count > 0 else { return nil }
        guard count == 1 else {
            throw GatewayError(.invalidConfiguration, "systemd passed \(count) sockets; the gateway serves one (use one ListenStream= in the .socket unit)")
        }
        let fd = Self.firstDescriptor
        try systemCall("fcntl(F_SETFD)", on: "descriptor \(fd) from systemd", code: .invalidConfiguration) { fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fd, try Self.listeningUnixPath(fd))
    }

    /// The path of `fd`, checked to be a listening Unix stream socket.
    static func listeningUnixPath(_ fd: Int32) throws -> String {
        func option(_ name: Int32) -> Int32? {
            var value: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            return (try? systemCall("getsockopt") { getsockopt(fd, SOL_SOCKET, name, &value, &length) }).map { _ in value }
        }
        guard option(SO_DOMAIN) == AF_UNIX, option(SO_TYPE) == Int32(SOCK_STREAM.rawValue) else {
            throw GatewayError(.invalidConfiguration, "the socket systemd passed (descriptor \(fd)) is not a Unix stream socket (ListenStream=/path)")
        }
        guard option(SO_ACCEPTCONN) == 1 else {
            throw GatewayError(.invalidConfiguration, "the socket systemd passed (descriptor \(fd)) is not listening (Accept=no is required)")
        }
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let status = try? systemCall("getsockname") {
            withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
        }
        let pathLength = Int(length) - MemoryLayout<sa_family_t>.size
        guard status != nil, pathLength > 1 else {
            throw GatewayError(.invalidConfiguration, "the socket systemd passed (descriptor \(fd)) has no path")
        }
        let path = withUnsafeBytes(of: &address.sun_path) { raw in
            String(decoding: raw.prefix(pathLength).prefix { $0 != 0 }, as: UTF8.self)
        }
        guard !path.isEmpty else {
            throw GatewayError(.invalidConfiguration, "the socket systemd passed (descriptor \(fd)) is in the abstract namespace; give it a path")
        }
        return path
    }
}
