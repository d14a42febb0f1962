import GatewayProtocol
import NIOCore

/// Splits a connection's bytes into frame payloads, and closes a connection
/// whose frame, once started, does not complete in time.
///
/// **Framing.** Each complete frame's payload (a slice, not a copy) goes to
/// the next handler, as `FrameDecoder` reads it: a length above the limit is
/// `.frameTooLarge`, passed on with `fireErrorCaught` (the connection answers
/// and closes); nothing more is read after it. The bytes of an incomplete
/// frame wait here for the rest; a read that holds whole frames, the usual
/// case, is never copied.
///
/// **Deadline.** A peer that sends the start of a frame and then nothing
/// would otherwise hold its connection (and up to the frame limit of buffered
/// bytes) for as long as it stays connected. A timer is armed when a read
/// leaves a frame incomplete; more bytes of the same frame do not extend it,
/// and a new frame that starts gets its own. At the deadline the connection is
/// answered `malformedFrame` (id 0) and closed (the error goes down the
/// pipeline, so the connection counts and logs it like any framing error).
/// Idle connections between frames are not affected, and neither is a frame
/// left incomplete because the gateway itself stopped reading (backpressure,
/// see `ReadingState`): the deadline does not run while reading is paused,
/// and starts afresh when reading resumes.
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

    private let decoder: FrameDecoder
    private let timeout: TimeAmount
    private let reading: ReadingState
    /// The bytes of an incomplete frame (empty between frames).
    private var pending = ByteBuffer()
    private var deadline: Scheduled<Void>?
    /// Set after `.frameTooLarge`: the stream cannot be followed any more.
    private var failed = false

    init(maxFrameSize: Int, timeout: TimeAmount, reading: ReadingState) {
        self.decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        self.timeout = timeout
        self.reading = reading
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        var bytes = Self.unwrapInboundIn(data)
        // Room left in the buffer the socket was read into: the read took all there was.
        self.reading.read(emptied: bytes.writableBytes > 0)
        if self.pending.readableBytes > 0 {
            self.pending.writeBuffer(&bytes)
            bytes = self.pending
            self.pending = ByteBuffer()
        }
        var completed = false
        do {
            while let payload = try self.decoder.readPayload(from: &bytes) {
                completed = true
                context.fireChannelRead(Self.wrapInboundOut(payload))
                // A frame may have closed the connection (a refused peer's):
                // then nothing more is read. Asked only when more bytes wait,
                // not after the usual read of one frame, because each look at
                // the channel's state retains and releases it.
                guard bytes.readableBytes > 0, context.channel.isActive else { break }
            }
        } catch {
            self.failed = true
            self.cancelDeadline()
            context.fireErrorCaught(error)
            return
        }
        // Closed meanwhile (a request the connection refused, say): nothing to wait for.
        guard bytes.readableBytes > 0, context.channel.isActive else {
            self.cancelDeadline()
            return
        }
        // An incomplete frame: kept, and timed from now if it started in this
        // read (a frame that goes on from an earlier read keeps its deadline).
        self.pending = bytes
        if completed { self.cancelDeadline() }
        if self.deadline == nil { self.arm(in: self.timeout, context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        // The peer is gone: an incomplete frame has nobody to be answered.
        self.cancelDeadline()
        self.pending = ByteBuffer()
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
        guard self.pending.readableBytes > 0 else { return }
        // The gateway stopped reading: the peer's bytes may be waiting in the
        // socket, unread by us, so the frame is not the peer's fault.
        if self.reading.isPaused {
            self.arm(in: self.timeout, context: context)
            return
        }
        // Reading was paused and has resumed since: a whole timeout from then.
        if let resumedAt = self.reading.resumedAt, resumedAt > armedAt {
            let remaining = resumedAt + self.timeout - context.eventLoop.now
            if remaining > .zero {
                self.arm(in: remaining, context: context)
                return
            }
        }
        self.failed = true
        self.pending = ByteBuffer()
        let milliseconds = self.timeout.nanoseconds / 1_000_000
        context.fireErrorCaught(GatewayError(.malformedMessage, "a frame was not completed within \(milliseconds) ms"))
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
