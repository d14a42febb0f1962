#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// Accepts worker connections on a listening Unix socket, on the first of
/// its loops, and serves each on the next loop in turn (`IOWorkerConnection`
/// under a `WorkerSession`).
final class IOWorkerListener: IOReadinessHandler, @unchecked Sendable {
    private let fd: Int32
    private let loops: [IOLoop]
    private var nextLoop = 0
    private var token: UInt64 = 0
    private let makeSession: @Sendable (IOWorkerConnection, ReadingState) -> WorkerSession
    private let maxFrameSize: Int
    private let frameTimeout: TimeAmount
    /// The open connections, by descriptor, for draining and shutdown.
    let connections = NIOLockedValueBox<[Int32: IOWorkerConnection]>([:])

    init(fd: Int32, loops: [IOLoop], maxFrameSize: Int, frameTimeout: TimeAmount, makeSession: @escaping @Sendable (IOWorkerConnection, ReadingState) -> WorkerSession) {
        self.fd = fd
        self.loops = loops
        self.maxFrameSize = maxFrameSize
        self.frameTimeout = frameTimeout
        self.makeSession = makeSession
    }

    /// Starts accepting (on the first loop's thread).
    func start() {
        let loop = self.loops[0]
        loop.execute {
            _ = try? nonBlockingSystemCall("fcntl") { fcntl(self.fd, F_SETFL, fcntl(self.fd, F_GETFL) | O_NONBLOCK) }
            self.token = (try? loop.register(self.fd, for: .readable, handler: self)) ?? 0
        }
    }

    func ready(_ events: EpollEvents) {
        while let accepted = (try? acceptNonBlocking(self.fd)) ?? nil {
            let loop = self.loops[self.nextLoop % self.loops.count]
            self.nextLoop &+= 1
            let maxFrameSize = self.maxFrameSize
            let frameTimeout = self.frameTimeout
            let makeSession = self.makeSession
            let connections = self.connections
            loop.execute {
                let reading = ReadingState()
                let connection = IOWorkerConnection(fd: accepted, loop: loop, maxFrameSize: maxFrameSize, frameTimeout: frameTimeout, reading: reading) { closed in
                    connections.withLockedValue { $0[closed.fd] = nil }
                }
                connections.withLockedValue { $0[accepted] = connection }
                do {
                    try connection.start(session: makeSession(connection, reading))
                } catch {
                    connection.close()
                }
            }
        }
    }
}
#endif
