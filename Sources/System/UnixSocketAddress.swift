#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayProtocol

/// A Unix socket address (`sockaddr_un`) filled from a path, for `connect`,
/// `bind` and `sendto`: the one place where a path is copied into `sun_path`
/// and checked against its size.
public struct UnixSocketAddress {
    /// The longest path a Unix socket address holds, in bytes: `sun_path`
    /// less its terminating NUL (107 on Linux, 103 on macOS).
    public static let maximumPathLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path) - 1

    /// The address.
    public private(set) var storage: sockaddr_un
    /// The address's length, as `connect`, `bind` and `sendto` take it.
    public let length: socklen_t

    /// The address of the socket at `path`; throws `.invalidConfiguration`
    /// when the path is longer than `maximumPathLength` bytes.
    ///
    /// With `abstractWhenPrefixed`, a path starting with `@` names a socket
    /// in Linux's abstract namespace (as `NOTIFY_SOCKET` does): the `@`
    /// becomes a NUL, and the length, not a terminating NUL, says where the
    /// name ends.
    public init(path: String, abstractWhenPrefixed: Bool = false) throws(GatewayError) {
        var bytes = Array(path.utf8)
        guard bytes.count <= Self.maximumPathLength else {
            throw GatewayError(
                .invalidConfiguration,
                "the socket path \(path) is \(bytes.count) bytes; a Unix socket path may have at most \(Self.maximumPathLength)"
            )
        }
        let abstract = abstractWhenPrefixed && bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 } else { bytes.append(0) }
        var storage = sockaddr_un()
        storage.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &storage.sun_path) { $0.copyBytes(from: bytes) }
        self.storage = storage
        self.length = abstract ? socklen_t(MemoryLayout<sa_family_t>.size + bytes.count) : socklen_t(MemoryLayout<sockaddr_un>.size)
    }

    /// Calls `body` with the address as a `sockaddr` and its length.
    @inlinable
    public func withSocketAddress<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        withUnsafePointer(to: self.storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, self.length) }
        }
    }
}
