import GatewayProtocol
import NIOCore

/// Splits a connection's bytes into frame payloads, and closes a connection
/// whose frame, once started, does not complete in time: `FrameAssembler`'s
/// rules, carried out on SwiftNIO. Each payload goes to the next handler; a
/// frame that is too large, or that expires, goes down the pipeline as an
/// error (`malformedFrame` or `frameTooLarge`, id 0), so that the connection
/// answers, counts, logs and closes it like any framing error.
///
/// Framing and the deadline are one handler rather than two (NIO's
/// `ByteToMessageHandler` around `FrameDecoder`, and a deadline handler
/// following the frame boundaries byte by byte): the generic handler resolves
/// its type metadata and checks exclusivity at run time on every read, and
/// each handler is a hop. On the hit path, measured with everything on one
/// CPU, the two handlers cost about a tenth of the gateway's time per request.
final class FrameReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private var assembler: FrameAssembler
    private let timeout: TimeAmount
    private let reading: ReadingState
    private var deadline: Scheduled<Void>?

    init(maxFrameSize: Int, timeout: TimeAmount, reading: ReadingState) {
        self.assembler = FrameAssembler(maxFrameSize: maxFrameSize)
        self.timeout = timeout
        self.reading = reading
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.assembler.failed else { return }
        let input = Self.unwrapInboundIn(data)
        // Room left in the buffer the socket was read into: the read took all there was.
        self.reading.read(emptied: input.writableBytes > 0)
        var bytes = self.assembler.take(input)
        var completed = false
        do {
            while let payload = try self.assembler.nextPayload(from: &bytes) {
                completed = true
                context.fireChannelRead(Self.wrapInboundOut(payload))
                // A frame may have closed the connection (a refused peer's):
                // then nothing more is read. Asked only when more bytes wait,
                // not after the usual read of one frame, because each look at
                // the channel's state retains and releases it.
                guard bytes.readableBytes > 0, context.channel.isActive else { break }
            }
        } catch {
            self.cancelDeadline()
            context.fireErrorCaught(error)
            return
        }
        switch self.assembler.keep(bytes, completedAFrame: completed, isOpen: context.channel.isActive) {
        case .stop:
            self.cancelDeadline()
        case .restart:
            self.cancelDeadline()
            self.arm(in: self.timeout, context: context)
        case .keep:
            if self.deadline == nil { self.arm(in: self.timeout, context: context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.cancelDeadline()
        self.assembler.reset()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelDeadline()
    }

    private func cancelDeadline() {
        self.deadline?.cancel()
        self.deadline = nil
    }

    private func arm(in delay: TimeAmount, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let armedAt = context.eventLoop.now
        self.deadline = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = bound.value
            handler.deadlinePassed(armedAt: armedAt, context: context)
        }
    }

    private func deadlinePassed(armedAt: NIODeadline, context: ChannelHandlerContext) {
        self.deadline = nil
        switch self.assembler.deadlinePassed(armedAt: armedAt, now: context.eventLoop.now, timeout: self.timeout, reading: self.reading) {
        case .nothing:
            break
        case .wait(let delay):
            self.arm(in: delay, context: context)
        case .expired:
            context.fireErrorCaught(FrameAssembler.expiredError(timeout: self.timeout))
        }
    }
}

/// Whether a connection has stopped reading from its peer (the peer does not
/// take its replies, or the in-flight limit is reached), shared by the
/// connection's `WorkerSession`, which decides, and its
/// `FrameReader`, whose frame deadline must not count the time when the
/// gateway, not the peer, held the frame back. Used on the connection's event
/// loop only.
final class ReadingState {
    /// Whether reading is paused now.
    private(set) var isPaused = false
    /// When reading last resumed, if it ever paused.
    private(set) var resumedAt: NIODeadline?
    /// How many reads of the socket delivered bytes (a draining
    /// `WorkerSession` tells one read from the next by it).
    private(set) var reads: UInt64 = 0
    /// Whether the last read found the socket empty: it returned less than
    /// its buffer could take, so nothing more was waiting in the kernel.
    private(set) var lastReadEmptied = false

    init() {}

    /// Reading stops.
    func pause() { self.isPaused = true }

    /// A read of the socket delivered its bytes; `emptied` when it did not
    /// fill its buffer. No clock is read here: only a draining connection
    /// needs the time, and it reads the clock itself.
    func read(emptied: Bool) {
        self.reads &+= 1
        self.lastReadEmptied = emptied
    }

    /// Reading goes on, as of `now` (the event loop's clock).
    func resume(at now: NIODeadline) {
        self.isPaused = false
        self.resumedAt = now
    }
}

@available(*, unavailable)
extension ReadingState: Sendable {}
