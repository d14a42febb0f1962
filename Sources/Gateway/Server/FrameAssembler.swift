import GatewayProtocol
import NIOCore

/// A worker connection's frames, from the bytes of each read, and the
/// deadline of a frame left incomplete: the rules that `FrameReader` carries
/// out on SwiftNIO, as a value with no I/O and no clock, so that they are
/// tested alone and any transport can carry them out.
///
/// **Framing.** Each complete frame's payload (a slice, not a copy) is
/// delivered as `FrameDecoder` reads it; a length above the limit is
/// `.frameTooLarge`, and nothing more is read after it. The bytes of an
/// incomplete frame wait for the rest; a read that holds whole frames, the
/// usual case, is never copied.
///
/// **Deadline.** A timer runs while a frame is incomplete; more bytes of the
/// same frame do not extend it, and a new frame that starts gets its own.
/// `keep` says what to do with the timer after a read; `deadlinePassed` whether the frame
/// has expired. The deadline does not run while the gateway, not the peer,
/// holds the frame back (reading paused, see `ReadingState`).
struct FrameAssembler {
    /// What to do with the frame timer after a read.
    enum TimerAction: Equatable {
        /// No frame is incomplete: stop the timer.
        case stop
        /// A new frame was left incomplete: start the timer afresh.
        case restart
        /// The incomplete frame goes on from an earlier read: keep the timer
        /// (start it if it is not running).
        case keep
    }

    /// What a passed deadline means.
    enum Expiry: Equatable {
        /// Nothing waits any more.
        case nothing
        /// Not the peer's fault (yet): wait this much longer.
        case wait(TimeAmount)
        /// The frame has expired: the connection is answered and closed.
        case expired
    }

    private let decoder: FrameDecoder
    private var pending = ByteBuffer()
    /// Set after `.frameTooLarge` or an expired frame: the stream cannot be followed any more.
    private(set) var failed = false

    /// An assembler for frames of at most `maxFrameSize` bytes.
    init(maxFrameSize: Int) {
        self.decoder = FrameDecoder(maxFrameSize: maxFrameSize)
    }

    /// The bytes to split after a read: what an incomplete frame left, then
    /// `input` (which is not copied when nothing was left).
    ///
    /// A read is `take`, then `nextPayload` until it returns nil, then
    /// `keep`: separate calls, so that the caller delivers each payload
    /// while no access to the assembler is held (a payload may close the
    /// connection, which calls `reset`).
    mutating func take(_ input: ByteBuffer) -> ByteBuffer {
        guard self.pending.readableBytes > 0 else { return input }
        var input = input
        var bytes = self.pending
        self.pending = ByteBuffer()
        bytes.writeBuffer(&input)
        return bytes
    }

    /// The next complete frame's payload in `bytes` (a slice), or nil.
    /// Throws `.frameTooLarge`; nothing more is read after it.
    mutating func nextPayload(from bytes: inout ByteBuffer) throws -> ByteBuffer? {
        guard !self.failed else { return nil }
        do {
            return try self.decoder.readPayload(from: &bytes)
        } catch {
            self.failed = true
            throw error
        }
    }

    /// Keeps what is left of `bytes` when the connection `isOpen`, and says
    /// what to do with the frame timer; `completedAFrame`: whether this read
    /// completed at least one frame.
    mutating func keep(_ bytes: ByteBuffer, completedAFrame: Bool, isOpen: Bool) -> TimerAction {
        guard !self.failed, bytes.readableBytes > 0, isOpen else { return .stop }
        self.pending = bytes
        return completedAFrame ? .restart : .keep
    }

    /// The frame timer, armed at `armedAt`, fired at `now`; `reading` is the
    /// connection's reading state and `timeout` the frame timeout.
    mutating func deadlinePassed(armedAt: NIODeadline, now: NIODeadline, timeout: TimeAmount, reading: ReadingState) -> Expiry {
        guard self.pending.readableBytes > 0 else { return .nothing }
        // The gateway stopped reading: the peer's bytes may be waiting in the
        // socket, unread by us, so the frame is not the peer's fault.
        if reading.isPaused { return .wait(timeout) }
        // Reading was paused and has resumed since: a whole timeout from then.
        if let resumedAt = reading.resumedAt, resumedAt > armedAt {
            let remaining = resumedAt + timeout - now
            if remaining > .zero { return .wait(remaining) }
        }
        self.failed = true
        self.pending = ByteBuffer()
        return .expired
    }

    /// The error an expired frame is answered with.
    static func expiredError(timeout: TimeAmount) -> GatewayError {
        GatewayError(.malformedMessage, "a frame was not completed within \(timeout.nanoseconds / 1_000_000) ms")
    }

    /// The connection is gone: an incomplete frame has nobody to be answered.
    mutating func reset() {
        self.pending = ByteBuffer()
    }
}
