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
/// answered `malformedFrame` (id 0) and closed. Idle connections between
/// frames are not affected.
///
/// This is one handler where there were two (NIO's `ByteToMessageHandler`
/// around `FrameDecoder`, and a deadline handler that followed the frame
/// boundaries byte by byte): the generic handler resolved its type metadata
/// and checked exclusivity at run time on every read, and each handler is a
/// hop. On the hit path, measured with everything on one CPU, that was about
/// a tenth of the gateway's time per request.
final class FrameReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let decoder: FrameDecoder
    private let timeout: TimeAmount
    /// The bytes of an incomplete frame (empty between frames).
    private var pending = ByteBuffer()
    private var deadline: Scheduled<Void>?
    /// Set after `.frameTooLarge`: the stream cannot be followed any more.
    private var failed = false

    init(maxFrameSize: Int, timeout: TimeAmount) {
        self.decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        var bytes = Self.unwrapInboundIn(data)
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
        if self.deadline == nil { self.arm(context: context) }
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

    private func arm(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = self.timeout
        self.deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.deadline = nil
            guard handler.pending.readableBytes > 0 else { return }
            let error = GatewayError(.malformedMessage, "a frame was not completed within \(timeout.nanoseconds / 1_000_000) ms")
            if let frame = try? GatewayMessage(id: 0, .error(ErrorReply(error))).encodedFrame(allocator: context.channel.allocator) {
                context.writeAndFlush(NIOAny(frame), promise: nil)
            }
            context.close(promise: nil)
        }
    }
}
