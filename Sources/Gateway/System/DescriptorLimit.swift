#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import GatewaySystem

/// The process's limit on open file descriptors (RLIMIT_NOFILE), which
/// bounds how many workers can be connected at once: one descriptor each,
/// plus the listener, Redis and the metrics server.
public enum DescriptorLimit {
    /// The soft and hard limits now.
    public static func current() throws(GatewayError) -> (soft: UInt64, hard: UInt64) {
        var limit = rlimit()
        try systemCall("getrlimit") { getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        return (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
    }

    /// Raises the soft limit to the hard one (the most an unprivileged
    /// process may have; systemd's `LimitNOFILE=` sets both), and returns the
    /// soft limit in force afterwards. Distributions keep the soft limit at
    /// 1,024 for programs that use `select`; the gateway uses epoll, which
    /// has no such bound.
    @discardableResult
    public static func raiseToHard() throws(GatewayError) -> UInt64 {
        var limit = rlimit()
        try systemCall("getrlimit") { getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        guard limit.rlim_cur < limit.rlim_max else { return UInt64(limit.rlim_cur) }
        limit.rlim_cur = limit.rlim_max
        try systemCall("setrlimit") { setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }
        return UInt64(limit.rlim_cur)
    }
}
