import GatewayProtocol
import NIOCore

/// Closes a connection whose frame, once started, does not complete in time.
///
/// A peer that sends the start of a frame and then nothing would otherwise hold
/// its connection (and up to the frame limit of buffered bytes) for as long as
/// it stays connected. This handler sits before the frame decoder, follows the
/// frame boundaries in the raw bytes (a 4-byte length, then that many bytes),
/// and arms a timer when a frame starts; when the frame is still incomplete at
/// the deadline, it answers `malformedFrame` (id 0) and closes the connection.
/// Idle connections between frames are not affected.
final class FrameDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// Where the stream is, relative to frame boundaries.
    private enum Position {
        /// Between frames.
        case idle
        /// Inside a frame's length prefix: the bytes seen so far (big-endian).
        case prefix(seen: Int, length: UInt64)
        /// Inside a frame's payload: the bytes still to come.
        case payload(remaining: UInt64)
    }

    private let timeout: TimeAmount
    private var position = Position.idle
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount) {
        self.timeout = timeout
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Self.unwrapInboundIn(data)
        self.advance(over: bytes.readableBytesView)
        if case .idle = self.position {
            self.deadline?.cancel()
            self.deadline = nil
        } else if self.deadline == nil {
            // A frame started in this read: time it from now. (A frame that goes
            // on from an earlier read keeps the deadline it started with.)
            self.arm(context: context)
        }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.deadline?.cancel()
        self.deadline = nil
        context.fireChannelInactive()
    }

    /// Follows the boundaries over `bytes`. When a frame completes and another
    /// starts in the same read, the deadline is re-armed for the new one.
    private func advance(over bytes: ByteBufferView) {
        var index = bytes.startIndex
        while index < bytes.endIndex {
            switch self.position {
            case .idle:
                self.position = .prefix(seen: 0, length: 0)
                self.deadline?.cancel()
                self.deadline = nil
            case .prefix(let seen, let length):
                let length = length << 8 | UInt64(bytes[index])
                index += 1
                if seen + 1 == FrameLimits.prefixLength {
                    self.position = length == 0 ? .idle : .payload(remaining: length)
                } else {
                    self.position = .prefix(seen: seen + 1, length: length)
                }
            case .payload(let remaining):
                let available = UInt64(bytes.endIndex - index)
                if available >= remaining {
                    index += Int(remaining)
                    self.position = .idle
                } else {
                    index = bytes.endIndex
                    self.position = .payload(remaining: remaining - available)
                }
            }
        }
    }

    private func arm(context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = self.timeout
        self.deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = bound.value
            handler.deadline = nil
            if case .idle = handler.position { return }
            let error = GatewayError(.malformedMessage, "a frame was not completed within \(timeout.nanoseconds / 1_000_000) ms")
            if let frame = try? GatewayMessage(id: 0, .error(ErrorReply(error))).encodedFrame(allocator: context.channel.allocator) {
                context.writeAndFlush(NIOAny(frame), promise: nil)
            }
            context.close(promise: nil)
        }
    }
}
