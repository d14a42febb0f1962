import GatewayProtocol
import GatewaySystem
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The few system calls the client makes on its socket, each made through
/// `systemCall` (GatewaySystem), so that it returns a `GatewayError` instead
/// of a C status and `errno`.
///
/// The client talks to the gateway with plain POSIX calls from its callers'
/// own threads (see `GatewayLink`), so it needs nothing more than socket,
/// connect, send, recv and poll.
enum UnixSocket {
    /// The longest one waiting `receive` blocks: the socket's receive timeout.
    ///
    /// A reader waits for a reply inside `recv` itself, one system call per
    /// reply, where waiting in `poll` first would take two (a hit is two
    /// system calls on each side, like a hiredis GET). The kernel's receive
    /// timeout bounds each wait, so the reader looks at its deadlines at least
    /// this often; it is the same granularity as `poll`'s milliseconds.
    static let receiveSlice = TimeAmount.milliseconds(1)

    /// Connects a close-on-exec Unix stream socket to `path`.
    ///
    /// It connects non-blocking, so that it never waits for the peer: it
    /// succeeds or fails at once (a full accept backlog fails with EAGAIN,
    /// reported as `.unavailable` like an absent gateway). The connected
    /// socket is then made blocking with a receive timeout of `receiveSlice`:
    /// `send` never waits all the same (MSG_DONTWAIT), and `receive` waits only
    /// when asked to.
    static func connect(path: String) throws(GatewayError) -> Int32 {
        let address = try UnixSocketAddress(path: path)
        let fd = try systemCall("socket", code: .unavailable) {
            socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        do {
            try systemCall("connect", on: path, code: .unavailable) { address.withSocketAddress { Glibc.connect(fd, $0, $1) } }
            let flags = try systemCall("fcntl(F_GETFL)", code: .unavailable) { fcntl(fd, F_GETFL) }
            try systemCall("fcntl(F_SETFL)", code: .unavailable) { fcntl(fd, F_SETFL, flags & ~Int32(O_NONBLOCK)) }
            var timeout = timeval(tv_sec: 0, tv_usec: Int(Self.receiveSlice.nanoseconds / 1_000))
            try systemCall("setsockopt(SO_RCVTIMEO)", code: .unavailable) {
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return fd
    }

    /// A pair of connected non-blocking sockets, used to wake a thread that waits in `poll`.
    static func pair() throws(GatewayError) -> (Int32, Int32) {
        var fds: [Int32] = [-1, -1]
        try systemCall("socketpair", code: .unavailable) {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
        }
        return (fds[0], fds[1])
    }

    /// Sends what the socket takes now; returns the number of bytes sent (0
    /// when its buffer is full).
    static func send(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) throws(GatewayError) -> Int {
        guard !bytes.isEmpty else { return 0 }
        return try nonBlockingSystemCall("send", code: .connectionClosed) {
            Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
        } ?? 0
    }

    /// Receives what has arrived: the number of bytes, nil when nothing has
    /// arrived; throws `.connectionClosed` at the end of the stream. With
    /// `waiting`, a socket from `connect` waits up to `receiveSlice` for
    /// something to arrive; otherwise it never waits.
    static func receive(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, waiting: Bool = false) throws(GatewayError) -> Int? {
        let received = try nonBlockingSystemCall("recv", code: .connectionClosed) {
            recv(fd, buffer.baseAddress, buffer.count, waiting ? 0 : Int32(MSG_DONTWAIT))
        }
        if received == 0 { throw GatewayError(.connectionClosed, "the gateway closed the connection") }
        return received
    }

    /// Waits in the kernel until one of `fds` is ready or `milliseconds` pass
    /// (-1: no limit). Interrupted waits return as if nothing were ready.
    static func poll(_ fds: UnsafeMutableBufferPointer<pollfd>, milliseconds: Int32) {
        _ = Glibc.poll(fds.baseAddress, nfds_t(fds.count), milliseconds)
    }

    /// Closes `fd`, ignoring the outcome (there is nothing left to do about it).
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// Stops both directions of `fd` so that a thread waiting on it wakes up,
    /// without closing the descriptor under that thread's feet.
    static func shutdown(_ fd: Int32) {
        _ = Glibc.shutdown(fd, Int32(SHUT_RDWR))
    }
}
