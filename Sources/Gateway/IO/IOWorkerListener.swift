#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import NIOConcurrencyHelpers
import NIOCore

/// Accepts worker connections on a listening Unix socket, on the first of
/// its loops, and serves each on the next loop in turn (`IOWorkerConnection`
/// under a `WorkerSession`). Out of descriptors, it pauses accepting as
/// `AcceptGate` decides, with a reserve descriptor, as `AcceptLimiter` does
/// on SwiftNIO.
final class IOWorkerListener: IOReadinessHandler, @unchecked Sendable {
    private let fd: Int32
    private let loops: [IOLoop]
    private var nextLoop = 0
    private var token: UInt64 = 0
    private let makeSession: @Sendable (IOWorkerConnection, ReadingState) throws -> WorkerSession
    private let maxFrameSize: Int
    private let statistics: GatewayStatistics
    private let log: RateLimitedLog
    /// On the first loop's thread only.
    private var gate = AcceptGate()
    private var reserve: Int32?
    private var retry: Scheduled<Void>?
    private let frameTimeout: TimeAmount
    /// The open connections, for draining and shutdown, and who waits for
    /// them all to close.
    private let openConnections = NIOLockedValueBox<(connections: [ObjectIdentifier: IOWorkerConnection], waiters: [CheckedContinuation<Void, Never>])>(([:], []))

    init(fd: Int32, loops: [IOLoop], maxFrameSize: Int, frameTimeout: TimeAmount, statistics: GatewayStatistics, log: RateLimitedLog, makeSession: @escaping @Sendable (IOWorkerConnection, ReadingState) throws -> WorkerSession) {
        self.fd = fd
        self.loops = loops
        self.maxFrameSize = maxFrameSize
        self.statistics = statistics
        self.log = log
        self.reserve = try? systemCall("open") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
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

    /// Stops accepting and closes the listening socket (on the first loop's thread).
    func stop() {
        let loop = self.loops[0]
        loop.execute {
            loop.deregister(self.fd, token: self.token)
            close(self.fd)
        }
    }

    /// The connections open now.
    var connections: [IOWorkerConnection] {
        self.openConnections.withLockedValue { Array($0.connections.values) }
    }

    /// Returns once no connection is open.
    func waitUntilAllClosed() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let closed = self.openConnections.withLockedValue { state -> Bool in
                guard !state.connections.isEmpty else { return true }
                state.waiters.append(waiter)
                return false
            }
            if closed { waiter.resume() }
        }
    }

    func ready(_ events: EpollEvents) {
        while !self.gate.isPaused {
            switch (try? acceptNonBlocking(self.fd)) ?? .noneWaiting {
            case .accepted(let accepted):
                self.gate.accepted()
                self.serve(accepted)
            case .outOfDescriptors:
                self.descriptorsExhausted()
            case .noneWaiting:
                return
            }
        }
    }

    private func serve(_ accepted: Int32) {
        let loop = self.loops[self.nextLoop % self.loops.count]
        self.nextLoop &+= 1
        let maxFrameSize = self.maxFrameSize
        let frameTimeout = self.frameTimeout
        let makeSession = self.makeSession
        let openConnections = self.openConnections
        let first = self.loops[0]
        loop.execute {
            let reading = ReadingState()
            let connection = IOWorkerConnection(fd: accepted, loop: loop, maxFrameSize: maxFrameSize, frameTimeout: frameTimeout, reading: reading) { closed in
                let waiters = openConnections.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
                    state.connections[ObjectIdentifier(closed)] = nil
                    guard state.connections.isEmpty else { return [] }
                    defer { state.waiters.removeAll() }
                    return state.waiters
                }
                for waiter in waiters { waiter.resume() }
                first.execute { if self.gate.closed() { self.takeReserveBack() } }
            }
            openConnections.withLockedValue { $0.connections[ObjectIdentifier(connection)] = connection }
            do {
                try connection.start(session: makeSession(connection, reading))
            } catch {
                connection.close()
            }
        }
    }

    /// `accept` failed for lack of descriptors: pause, let the reserve go
    /// (so that the next `accept` succeeds), count and log the pause.
    private func descriptorsExhausted() {
        let wasPaused = self.gate.isPaused
        if self.gate.descriptorsExhausted(), let reserve = self.reserve {
            _ = Glibc.close(reserve)
            self.reserve = nil
            // One more accept, with the reserve's descriptor.
            if case .accepted(let accepted)? = try? acceptNonBlocking(self.fd) {
                self.gate.accepted()
                self.serve(accepted)
            }
        }
        self.watch(false)
        guard !wasPaused else { return }
        self.statistics.increment(.acceptBackoffs)
        self.log.log(
            "accept-descriptors",
            "no file descriptor left to accept a connection; accepting pauses until one is free (raise LimitNOFILE)",
            metadata: ["connections": "\(self.gate.open)"]
        )
        self.scheduleRetry()
    }

    private func takeReserveBack() {
        if self.reserve == nil { self.reserve = try? systemCall("open") { open("/dev/null", O_RDONLY | O_CLOEXEC) } }
        _ = self.gate.reserveTaken(self.reserve != nil)
        if self.gate.isPaused {
            self.scheduleRetry()
        } else {
            self.retry?.cancel()
            self.retry = nil
            self.watch(true)
        }
    }

    private func scheduleRetry() {
        guard self.retry == nil else { return }
        self.retry = self.loops[0].scheduleTask(in: AcceptLimiter.retryDelay) {
            self.retry = nil
            if self.gate.wantsReserve { self.takeReserveBack() }
        }
    }

    /// Watches the listener for connections, or stops watching it.
    private func watch(_ watching: Bool) {
        try? self.loops[0].modify(self.fd, token: self.token, for: watching ? .readable : [])
    }
}
#endif
