#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import NIOCore

/// A worker connection served on an `IOLoop` with plain system calls: the
/// transport under a `WorkerSession`, without SwiftNIO's channel.
///
/// Reads go into one buffer and are split into frames by `FrameAssembler`
/// (slices, no copies; an incomplete frame waits for the rest, under the
/// frame deadline). Replies are queued by `write` and sent by `flush` at the
/// latest, each read's replies with one system call where the socket takes
/// them (`IOPendingWrites`); what it does not take is sent when the socket
/// is writable again. Above `highWater` queued bytes the connection is not
/// writable (the session stops reading), and it is again below `lowWater`.
/// Its stored properties skip the runtime's exclusivity checks, as `IOLoop`
/// explains.
final class IOWorkerConnection: WorkerTransport, IOReadinessHandler, @unchecked Sendable {
    static let highWater = 1024 * 1024
    static let lowWater = 256 * 1024

    let fd: Int32
    private let loop: IOLoop
    @exclusivity(unchecked) private var token: UInt64 = 0
    @exclusivity(unchecked) private var session: WorkerSession?
    @exclusivity(unchecked) private var assembler: FrameAssembler
    private let frameTimeout: TimeAmount
    @exclusivity(unchecked) private var deadline: Scheduled<Void>?
    private let reading: ReadingState
    @exclusivity(unchecked) private var input = ByteBuffer()
    @exclusivity(unchecked) private var sending = IOPendingWrites()
    @exclusivity(unchecked) private var queuedBytes = 0
    @exclusivity(unchecked) private var writable = true
    @exclusivity(unchecked) private var paused = false
    @exclusivity(unchecked) private var waitingToWrite = false
    @exclusivity(unchecked) private var closeWhenSent = false
    @exclusivity(unchecked) private var open = true
    private let onClose: (IOWorkerConnection) -> Void

    init(fd: Int32, loop: IOLoop, maxFrameSize: Int, frameTimeout: TimeAmount, reading: ReadingState, onClose: @escaping (IOWorkerConnection) -> Void) {
        self.fd = fd
        self.loop = loop
        self.assembler = FrameAssembler(maxFrameSize: maxFrameSize)
        self.frameTimeout = frameTimeout
        self.reading = reading
        self.onClose = onClose
    }

    /// Registers on the loop and starts the session (on the loop thread).
    func start(session: WorkerSession) throws {
        self.session = session
        self.token = try self.loop.register(self.fd, for: .readable, handler: self)
        session.activate()
    }

    /// The gateway is draining (on the loop thread).
    func startDraining() {
        self.session?.startDraining()
    }

    // MARK: Readiness

    func ready(_ events: EpollEvents) {
        if events.contains(.writable) { self.send() }
        guard self.open else { return }
        if !self.paused {
            if !events.isDisjoint(with: [.readable, .hangUp, .error]) { self.readAvailable() }
        } else if !events.isDisjoint(with: [.hangUp, .error]) {
            // epoll reports these even to a connection that is not reading,
            // on every wait: the peer is gone, and nobody will read a reply.
            self.close()
        }
    }

    private func readAvailable() {
        let read: Int?
        do {
            read = try self.input.readAvailable(from: self.fd)
        } catch {
            self.session?.transportFailed(error)
            self.close()
            return
        }
        guard let count = read else { return }
        guard count > 0 else {
            self.close()
            return
        }
        self.reading.read(emptied: self.input.writableBytes > 0)
        guard !self.assembler.failed else { return }
        var bytes = self.assembler.take(self.input)
        var completed = false
        do {
            while let payload = try self.assembler.nextPayload(from: &bytes) {
                completed = true
                self.session?.receive(payload)
                guard self.open else { return }
            }
        } catch {
            self.cancelDeadline()
            self.session?.transportFailed(error)
            return
        }
        switch self.assembler.keep(bytes, completedAFrame: completed, isOpen: self.open) {
        case .stop:
            self.cancelDeadline()
        case .restart:
            self.cancelDeadline()
            self.armDeadline(in: self.frameTimeout)
        case .keep:
            if self.deadline == nil { self.armDeadline(in: self.frameTimeout) }
        }
        self.session?.readComplete()
    }

    private func cancelDeadline() {
        self.deadline?.cancel()
        self.deadline = nil
    }

    private func armDeadline(in delay: TimeAmount) {
        let armedAt = NIODeadline.now()
        self.deadline = self.loop.scheduleTask(in: delay) { [self] in
            self.deadline = nil
            switch self.assembler.deadlinePassed(armedAt: armedAt, now: .now(), timeout: self.frameTimeout, reading: self.reading) {
            case .nothing: break
            case .wait(let delay): self.armDeadline(in: delay)
            case .expired: self.session?.transportFailed(FrameAssembler.expiredError(timeout: self.frameTimeout))
            }
        }
    }

    // MARK: WorkerTransport

    var eventLoop: any EventLoop { self.loop }
    var isActive: Bool { self.open }
    var isWritable: Bool { self.writable }

    func makeBuffer(capacity: Int) -> ByteBuffer { ByteBuffer() .withCapacity(capacity) }

    func write(_ buffer: ByteBuffer) {
        guard self.open else { return }
        self.sending.append(buffer)
        self.queuedBytes += buffer.readableBytes
        if self.writable, self.queuedBytes > Self.highWater {
            self.writable = false
            self.session?.writabilityChanged()
        }
    }

    func flush() {
        guard self.open, !self.waitingToWrite else { return }
        self.send()
    }

    func writeAndFlush(_ buffer: ByteBuffer) {
        self.write(buffer)
        self.flush()
    }

    func writeThenClose(_ buffer: ByteBuffer) {
        self.writeAndFlush(buffer)
        self.closeWhenSent = true
        if self.sending.isEmpty { self.close() }
    }

    func pauseReading() {
        self.paused = true
        self.updateInterest()
    }

    func resumeReading() {
        self.paused = false
        self.updateInterest()
    }

    func close() {
        guard self.open else { return }
        self.open = false
        self.loop.deregister(self.fd, token: self.token)
        Glibc.close(self.fd)
        self.cancelDeadline()
        self.assembler.reset()
        self.sending.removeAll()
        self.session?.deactivate()
        self.session = nil
        self.onClose(self)
    }

    // MARK: Sending

    private func send() {
        let outcome: (written: Int, drained: Bool)
        do {
            outcome = try self.sending.write(to: self.fd)
        } catch {
            // The peer is gone (EPIPE, ECONNRESET).
            self.close()
            return
        }
        self.queuedBytes -= outcome.written
        guard outcome.drained else {
            self.waitForWritable(true)
            return
        }
        self.waitForWritable(false)
        if self.closeWhenSent {
            self.close()
            return
        }
        if !self.writable, self.queuedBytes < Self.lowWater {
            self.writable = true
            self.session?.writabilityChanged()
        }
    }

    private func waitForWritable(_ wait: Bool) {
        guard self.waitingToWrite != wait, self.open else { return }
        self.waitingToWrite = wait
        self.updateInterest()
    }

    private func updateInterest() {
        guard self.open else { return }
        var events: EpollEvents = []
        if !self.paused { events.insert(.readable) }
        if self.waitingToWrite { events.insert(.writable) }
        try? self.loop.modify(self.fd, token: self.token, for: events)
    }
}

extension ByteBuffer {
    fileprivate func withCapacity(_ capacity: Int) -> ByteBuffer {
        var buffer = self
        buffer.reserveCapacity(capacity)
        return buffer
    }
}
#endif
