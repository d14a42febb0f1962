#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Dispatch
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// A Redis data connection on an `IOLoop`, with plain system calls: the
/// transport under a `RedisCommandQueue`, without SwiftNIO's channel, on the
/// same loop as the worker connections whose lookups it carries, so that a
/// lookup and its reply never change threads.
///
/// Reads go into one buffer that the queue decodes (bulk strings as slices
/// of it); the commands of one turn of the loop arrive as one buffer and are
/// written with one system call where the socket takes them, and what it
/// does not take is written, in order, when the socket is writable again.
/// Plain TCP and Unix sockets only: TLS connections are SwiftNIO's
/// (`RedisConnection.connect`). Its stored properties skip the runtime's
/// exclusivity checks, as `IOLoop` explains.
final class IORedisConnection: IOReadinessHandler, IOTurnEndHandler, RedisCommandTransport, @unchecked Sendable {
    private enum State {
        case connecting(EventLoopPromise<IORedisConnection>, Scheduled<Void>?)
        case open
        case closed
    }

    /// The loop that runs the connection.
    let loop: IOLoop
    /// The commands in flight and their replies (on the loop's thread only).
    let queue: RedisCommandQueue
    private let fd: Int32
    private let endpoint: RedisURL.Endpoint
    @exclusivity(unchecked) private var token: UInt64 = 0
    @exclusivity(unchecked) private var state: State
    @exclusivity(unchecked) private var input = ByteBuffer()
    @exclusivity(unchecked) private var sending = IOPendingWrites()
    @exclusivity(unchecked) private var waitingToWrite = false
    private let active = Atomic<Bool>(false)
    private let closed: EventLoopPromise<Void>

    private init(fd: Int32, endpoint: RedisURL.Endpoint, loop: IOLoop, queue: RedisCommandQueue, connected: EventLoopPromise<IORedisConnection>) {
        self.fd = fd
        self.endpoint = endpoint
        self.loop = loop
        self.queue = queue
        self.state = .connecting(connected, nil)
        self.closed = loop.makePromise()
    }

    /// Connects to `endpoint` on `loop` within `timeout`; the future fails
    /// with `.unavailable` when the socket cannot be connected. `makeQueue`
    /// makes the connection's queue, on the loop.
    static func connect(
        to endpoint: RedisURL.Endpoint,
        timeout: TimeAmount,
        on loop: IOLoop,
        makeQueue: @escaping @Sendable () throws -> RedisCommandQueue
    ) -> EventLoopFuture<IORedisConnection> {
        let deadline = NIODeadline.now() + timeout
        return Self.resolve(endpoint, within: timeout, on: loop).flatMap { address in
            let promise = loop.makePromise(of: IORedisConnection.self)
            do {
                try Self.start(to: endpoint, address: address, timeout: max(.zero, deadline - .now()), on: loop, queue: try makeQueue(), promise: promise)
            } catch {
                promise.fail(GatewayError(.unavailable, "cannot connect to Redis at \(endpoint): \(error)"))
            }
            return promise.futureResult
        }
    }

    /// The address of a TCP endpoint (nil for a Unix socket), found on
    /// another thread: `getaddrinfo` blocks, and the loop serves workers.
    /// Fails with `.unavailable` when the name does not resolve within `timeout`.
    private static func resolve(_ endpoint: RedisURL.Endpoint, within timeout: TimeAmount, on loop: IOLoop) -> EventLoopFuture<SocketAddress?> {
        guard case .tcp(let host, let port) = endpoint else { return loop.makeSucceededFuture(nil) }
        let promise = loop.makePromise(of: SocketAddress?.self)
        // Completed once, on the loop, by whichever comes first.
        let settled = NIOLockedValueBox(false)
        let settle: @Sendable (Result<SocketAddress?, any Error>) -> Void = { result in
            guard !settled.withLockedValue({ done in defer { done = true }; return done }) else { return }
            promise.completeWith(result)
        }
        DispatchQueue.global().async {
            let result: Result<SocketAddress?, any Error>
            do {
                result = .success(try SocketAddress.makeAddressResolvingHost(host, port: port))
            } catch {
                result = .failure(GatewayError(.unavailable, "cannot connect to Redis at \(endpoint): cannot resolve \(host) (\(error))"))
            }
            loop.execute { settle(result) }
        }
        loop.scheduleTask(in: timeout) {
            settle(.failure(GatewayError(.unavailable, "cannot connect to Redis at \(endpoint): \(host) did not resolve within \(timeout.redisLogDescription)")))
        }
        return promise.futureResult
    }

    private static func start(
        to endpoint: RedisURL.Endpoint,
        address: SocketAddress?,
        timeout: TimeAmount,
        on loop: IOLoop,
        queue: RedisCommandQueue,
        promise: EventLoopPromise<IORedisConnection>
    ) throws {
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd: Int32
        let inProgress: Bool
        switch endpoint {
        case .unixSocket(let path):
            let address = try UnixSocketAddress(path: path)
            fd = try systemCall("socket") { socket(AF_UNIX, flags, 0) }
            do {
                // A Unix socket connects at once or not at once: EAGAIN means
                // its backlog is full, which is a failure here.
                try systemCall("connect", on: path) { address.withSocketAddress { Glibc.connect(fd, $0, $1) } }
            } catch {
                Glibc.close(fd)
                throw error
            }
            inProgress = false
        case .tcp:
            guard let address else { throw GatewayError(.unavailable, "no address for \(endpoint)") }
            let family = address.protocol.rawValue
            fd = try systemCall("socket") { socket(family, flags, 0) }
            do {
                var one: Int32 = 1
                try systemCall("setsockopt(TCP_NODELAY)") {
                    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                }
                inProgress = try Self.connect(fd, to: address, endpoint: endpoint)
            } catch {
                Glibc.close(fd)
                throw error
            }
        }
        let connection = IORedisConnection(fd: fd, endpoint: endpoint, loop: loop, queue: queue, connected: promise)
        queue.attach(connection)
        do {
            connection.token = try loop.register(fd, for: inProgress ? .writable : .readable, handler: connection)
        } catch {
            connection.state = .closed
            queue.shutDown()
            Glibc.close(fd)
            throw error
        }
        if inProgress {
            let timer = loop.scheduleTask(in: timeout) {
                connection.fail(GatewayError(.unavailable, "cannot connect to Redis at \(endpoint): no connection within \(timeout.redisLogDescription)"))
            }
            connection.state = .connecting(promise, timer)
        } else {
            connection.connected()
        }
    }

    /// Starts connecting `fd` to `address`; true when the connection is in progress.
    private static func connect(_ fd: Int32, to address: SocketAddress, endpoint: RedisURL.Endpoint) throws -> Bool {
        let outcome: Int32?
        switch address {
        case .v4(let v4):
            var storage = v4.address
            outcome = try systemCall("connect", on: "\(endpoint)", unless: EINPROGRESS) {
                withUnsafePointer(to: &storage) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        case .v6(let v6):
            var storage = v6.address
            outcome = try systemCall("connect", on: "\(endpoint)", unless: EINPROGRESS) {
                withUnsafePointer(to: &storage) { pointer in
                    pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
                }
            }
        default:
            throw GatewayError(.unavailable, "\(address) is not a TCP address")
        }
        return outcome == nil
    }

    private func connected() {
        guard case .connecting(let promise, let timer) = self.state else { return }
        timer?.cancel()
        self.state = .open
        self.active.store(true, ordering: .releasing)
        promise.succeed(self)
    }

    /// Whether the connection is open (from any thread; stale by the time it is used).
    var isActive: Bool { self.active.load(ordering: .acquiring) }

    /// Succeeds once the connection has closed.
    var closeFuture: EventLoopFuture<Void> { self.closed.futureResult }

    // MARK: Readiness

    func ready(_ events: EpollEvents) {
        switch self.state {
        case .connecting:
            self.finishConnecting()
        case .open:
            if events.contains(.writable) { self.sendQueued() }
            if case .open = self.state, !events.isDisjoint(with: [.readable, .hangUp, .error]) { self.readAvailable() }
        case .closed:
            break
        }
    }

    private func finishConnecting() {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        do {
            try systemCall("getsockopt(SO_ERROR)") { getsockopt(self.fd, SOL_SOCKET, SO_ERROR, &error, &length) }
            guard error == 0 else {
                throw GatewayError(.unavailable, "connect: \(String(cString: strerror(error)))")
            }
            try self.loop.modify(self.fd, token: self.token, for: .readable)
        } catch {
            self.fail(GatewayError(.unavailable, "cannot connect to Redis at \(self.endpoint): \(error)"))
            return
        }
        self.connected()
    }

    private func readAvailable() {
        let read: Int?
        do {
            read = try self.input.readAvailable(from: self.fd)
        } catch {
            self.fail(error)
            return
        }
        guard let count = read else { return }
        guard count > 0 else {
            self.fail(GatewayError(.connectionClosed, "Redis closed the connection"))
            return
        }
        self.queue.received(&self.input)
        self.queue.readComplete()
    }

    // MARK: RedisCommandTransport

    var eventLoop: any EventLoop { self.loop }

    func makeBuffer(capacity: Int) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.reserveCapacity(capacity)
        return buffer
    }

    func send(_ bytes: ByteBuffer) {
        guard case .open = self.state else { return }
        self.sending.append(bytes)
        if !self.waitingToWrite { self.sendQueued() }
    }

    func flushAtEndOfTurn() {
        self.loop.atEndOfTurn(self)
    }

    func turnEnded() {
        self.queue.flushPending()
    }

    func closeTransport() {
        self.close()
    }

    /// Closes the connection (on the loop's thread); commands in flight fail
    /// with `.connectionClosed`.
    func close() {
        self.fail(nil)
    }

    // MARK: Sending

    private func sendQueued() {
        let drained: Bool
        do {
            drained = try self.sending.write(to: self.fd).drained
        } catch {
            self.fail(error)
            return
        }
        self.waitForWritable(!drained)
    }

    private func waitForWritable(_ wait: Bool) {
        guard self.waitingToWrite != wait, case .open = self.state else { return }
        self.waitingToWrite = wait
        try? self.loop.modify(self.fd, token: self.token, for: wait ? [.readable, .writable] : .readable)
    }

    // MARK: Closing

    /// Closes the descriptor, tells the queue (with `error` when the
    /// connection failed) and completes the connect and close promises.
    private func fail(_ error: (any Error)?) {
        let connecting: EventLoopPromise<IORedisConnection>?
        switch self.state {
        case .closed:
            return
        case .connecting(let promise, let timer):
            timer?.cancel()
            connecting = promise
        case .open:
            connecting = nil
        }
        // Closed first: the queue closes its transport when told of the failure.
        self.state = .closed
        if let error { self.queue.transportFailed(error) }
        self.active.store(false, ordering: .releasing)
        self.loop.deregister(self.fd, token: self.token)
        Glibc.close(self.fd)
        self.sending.removeAll()
        self.queue.shutDown()
        connecting?.fail(error ?? GatewayError(.unavailable, "cannot connect to Redis at \(self.endpoint): the connection was closed"))
        self.closed.succeed(())
    }
}

#endif
