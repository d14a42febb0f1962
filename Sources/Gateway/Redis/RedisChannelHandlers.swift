import GatewayProtocol
import Logging
import NIOCore

// The pipeline of a Redis data channel, from the socket inwards (after the
// TLS handlers, if any), is one handler:
//
//   RedisCommandHandler    bytes in, replies decoded (RESPReplyDecoder) and matched;
//                          RedisOutbound in, commands encoded (RESPCommandEncoder)
//
// The near-cache's listener and the Sentinel subscriber have
// `ByteToMessageHandler(RESPReplyDecoder)` for their replies and write
// `RedisCommand`s through `MessageToByteHandler(RESPCommandEncoder)`.

// MARK: - Codec

/// Decodes RESP2 replies: bulk strings straight from the inbound bytes,
/// everything else with hiredis's reader.
///
/// **Bulk strings.** A lookup's reply is one bulk string (`$N` CRLF, N
/// bytes, CRLF, or `$-1` CRLF for none). While the reader holds no bytes, a
/// bulk string that is complete in the inbound buffer is read here as a slice
/// of that buffer: no copy into the reader, no reply object, no copy out of
/// it. Whatever is not such a reply (another type, a bulk string cut off by
/// the end of the read, or anything malformed) goes to the reader with all
/// the bytes after it, and the reader decides, so there is one parser for
/// everything but the common case and the replies stay in order. A slice
/// shares the buffer the socket was read into: whoever keeps a value for long
/// copies it (`NearCache` does).
///
/// **The reader.** Every other inbound byte is handed to it at once (it keeps
/// its own buffer), and every reply completed by those bytes is fired before
/// `decode` returns: `ByteToMessageHandler` does not call `decode` again for
/// an empty buffer, so replies must not be left inside the reader.
/// Errors (`GatewayError(.backendError)`) leave the stream unusable; the
/// channel is closed by `RedisCommandHandler`.
struct RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    private let reader: HiredisReader

    /// A decoder refusing replies larger than `maximumReplySize` bytes.
    init(maximumReplySize: Int) throws {
        self.reader = try HiredisReader(maximumReplySize: maximumReplySize)
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        try self.decode(&buffer, allocator: context.channel.allocator) { reply in
            context.fireChannelRead(Self.wrapInboundOut(reply))
            return true
        }
        return .needMoreData
    }

    /// Consumes all of `buffer` and hands every reply that its bytes complete
    /// to `body`, in order, until `body` returns false (the bytes not yet
    /// decoded are then dropped: the stream is being abandoned). A reply cut
    /// off by the end of `buffer` waits in the reader for the next call.
    /// Throws `GatewayError(.backendError)` for a malformed or oversized reply
    /// (and every later call throws it again).
    func decode(_ buffer: inout ByteBuffer, allocator: ByteBufferAllocator, _ body: (RESPValue) -> Bool) throws {
        do {
            while self.reader.isIdle, let reply = try RESPBulkString.read(from: &buffer, maximumReplySize: self.reader.maximumReplySize) {
                guard body(reply) else {
                    buffer.moveReaderIndex(to: buffer.writerIndex)
                    return
                }
            }
        } catch let error as GatewayError {
            self.reader.fail(error)
            throw error
        }
        if buffer.readableBytes > 0 {
            try self.reader.feed(buffer)
            buffer.moveReaderIndex(to: buffer.writerIndex)
        }
        while let reply = try self.reader.nextReply(allocator: allocator) {
            guard body(reply) else { return }
        }
    }

    mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        // A reply cut off by EOF is dropped without an error: the channel is
        // closing, and the command waiting for it fails with `.connectionClosed`.
        _ = try self.decode(context: context, buffer: &buffer)
        return .needMoreData
    }
}

/// Encodes each command as a RESP array of bulk strings, the bytes hiredis's
/// `redisFormatCommandArgv` writes (`*N`, then `$length`, the bytes and CRLF
/// for each argument), written straight into the outbound buffer.
struct RESPCommandEncoder: MessageToByteEncoder {
    typealias OutboundIn = RedisCommand

    func encode(data: RedisCommand, out: inout ByteBuffer) throws {
        Self.append(data.argv, to: &out)
    }

    /// Appends `argv` as one RESP command to `buffer`: the size is bounded
    /// first, and every byte is then written through one pointer, with one
    /// capacity check for the whole command.
    static func append(_ argv: [ByteBuffer], to buffer: inout ByteBuffer) {
        // `*N` CRLF, then per argument `$length` CRLF, its bytes, CRLF: with
        // at most 20 digits (Int.max has 19), 23 bytes of framing before the
        // bytes and 2 after, within the 32 counted for each.
        var size = 32
        for argument in argv { size += argument.readableBytes + 32 }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { out in
            var offset = Self.writeHeader(UInt8(ascii: "*"), argv.count, to: out, at: 0)
            for argument in argv {
                offset = Self.writeHeader(UInt8(ascii: "$"), argument.readableBytes, to: out, at: offset)
                argument.withUnsafeReadableBytes { bytes in
                    if let base = bytes.baseAddress, bytes.count > 0 {
                        (out.baseAddress! + offset).copyMemory(from: base, byteCount: bytes.count)
                    }
                    offset += bytes.count
                }
                out[offset] = 0x0D
                out[offset + 1] = 0x0A
                offset += 2
            }
            return offset
        }
    }

    /// Writes `*3` CRLF or `$5` CRLF (a type byte, a length in decimal and
    /// CRLF) at `offset`; returns the offset after it.
    private static func writeHeader(_ type: UInt8, _ length: Int, to out: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        var offset = offset
        out[offset] = type
        offset += 1
        if length < 10 {
            out[offset] = UInt8(ascii: "0") &+ UInt8(length)
            offset += 1
        } else {
            var digits = 0
            var rest = length
            while rest > 0 {
                digits += 1
                rest /= 10
            }
            rest = length
            for index in stride(from: offset + digits - 1, through: offset, by: -1) {
                out[index] = UInt8(ascii: "0") &+ UInt8(rest % 10)
                rest /= 10
            }
            offset += digits
        }
        out[offset] = 0x0D
        out[offset + 1] = 0x0A
        return offset + 2
    }
}

// MARK: - Requests

/// Where a command's reply goes: a promise, or a callback, called on the
/// connection's event loop (the lookup path's, with no future in between).
enum RedisReplyTarget: Sendable {
    case promise(EventLoopPromise<RESPValue>)
    case callback(@Sendable (Result<RESPValue, any Error>) -> Void)

    /// Hands over the reply.
    func succeed(_ reply: RESPValue) {
        switch self {
        case .promise(let promise): promise.succeed(reply)
        case .callback(let callback): callback(.success(reply))
        }
    }

    /// Hands over the error instead of a reply.
    func fail(_ error: any Error) {
        switch self {
        case .promise(let promise): promise.fail(error)
        case .callback(let callback): callback(.failure(error))
        }
    }
}

/// One command and where its reply goes.
struct RedisRequest: Sendable {
    var command: RedisCommand
    var reply: RedisReplyTarget
    /// How long to wait for the reply once the command is queued; nil waits
    /// until the connection closes.
    var timeout: TimeAmount?

    /// A command whose reply completes `promise`.
    init(command: RedisCommand, promise: EventLoopPromise<RESPValue>, timeout: TimeAmount?) {
        self.init(command: command, reply: .promise(promise), timeout: timeout)
    }

    /// A command whose reply goes to `reply`.
    init(command: RedisCommand, reply: RedisReplyTarget, timeout: TimeAmount?) {
        self.command = command
        self.reply = reply
        self.timeout = timeout
    }
}

/// What `RedisConnection` writes into the channel: one request, or several
/// that are queued together (a pipeline, flushed once).
enum RedisOutbound: Sendable {
    case one(RedisRequest)
    case many([RedisRequest])
}

// MARK: - Command handler

/// Matches replies to commands, enforces timeouts, and fails what is in
/// flight when the connection ends.
///
/// RESP2 answers commands strictly in order, one reply each, so the handler
/// keeps a FIFO of the commands written and pairs each inbound reply with the
/// oldest entry. Any number of commands may be in flight.
///
/// **Ownership.** Once a request reaches `write` (or `enqueueDirectly`), the
/// handler owns its reply target (`RedisReplyTarget`) and completes it exactly once: with the reply, with `.timeout`, with
/// `.valueTooLarge`, or with `.connectionClosed`. It completes the write's own
/// promise at once, so a failed write promise means that the request never
/// reached the handler (the channel was already torn down).
///
/// **Timeouts measure Redis, not the queue.** A command's timeout is the
/// longest Redis may stay silent while the command waits: it fails with
/// `.timeout` once no byte has come from Redis for `timeout`, counted from
/// when it was queued or from the last byte that arrived, whichever is later.
/// So a deep pipeline, whose last command waits while Redis answers the ones
/// before it, does not time out for as long as Redis keeps answering, and a
/// large reply does not time out while its bytes keep coming; a Redis that
/// stops answering fails every waiting command one timeout after its last
/// byte (and a turn of the event loop, which tells Redis's silence from the
/// gateway's own: see `timerFired`). How long a command can wait in all is
/// bounded by `maximumInFlight`
/// instead: past it, a command fails at once with `.tooManyRequests` and is
/// not sent.
///
/// One timer per channel, armed for the earliest deadline, not one per
/// command: when it fires, every expired entry fails with `.timeout`, and the
/// timer is re-armed for the earliest remaining deadline (bytes arriving only
/// move deadlines later, so the timer is not re-armed for them). A timed-out
/// entry keeps its place in the FIFO (its reply will still arrive and must be
/// consumed to keep the pairing right) and its reply is dropped. If the oldest
/// entry stays unanswered for `unresponsiveTimeout` beyond its deadline, the
/// server is considered dead (for example, a network partition that TCP will
/// not notice for minutes) and the channel is closed, so that the pool can
/// reconnect.
///
/// **Flushes.** Commands written during one turn of the event loop (every
/// lookup of every worker connection served in that turn) are encoded into
/// one buffer and go out with one write and one flush at the end of the
/// turn: a burst is pipelined into one write, the way twemproxy pipelines its
/// clients' requests, instead of a buffer and a system call each.
///
/// **Errors.** A decoding error or a reply nobody asked for means the stream
/// is out of step; the channel is closed. When the channel goes inactive,
/// everything in flight fails with `.connectionClosed`, and so does any later
/// write.
final class RedisCommandHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    private struct InFlight {
        /// nil once the entry has timed out: its reply is then dropped.
        var promise: RedisReplyTarget?
        /// When the command was queued.
        let queued: NIODeadline
        let timeout: TimeAmount?
        /// When the command was queued (uptime nanoseconds), for the round-trip
        /// metric; 0 when no metrics are recorded.
        let queuedAt: UInt64
        /// The command's name, for error messages (shares the command's storage).
        let name: ByteBuffer
    }

    private var inFlight = CircularBuffer<InFlight>(initialCapacity: 16)
    private var isOpen = true
    /// Whether this side asked the channel to close: an error after that
    /// (a TLS server that answers the close without `close_notify`) is no news.
    private var isClosing = false
    /// Why the channel is being closed, for the error given to pending commands.
    private var closeReason: String?
    private var timer: Scheduled<Void>?
    private var timerDeadline: NIODeadline?
    /// When the last bytes came from Redis.
    private var lastProgress = NIODeadline.uptimeNanoseconds(0)
    /// Whether a flush is due at the end of this turn of the event loop.
    private var flushScheduled = false
    /// The commands queued in this turn of the event loop, encoded, written
    /// and flushed together at its end.
    private var pending: ByteBuffer?
    /// When the timer found deadlines passed and started confirming them
    /// (see `timerFired`); nil when it is not confirming.
    private var expiryConfirmationStarted: NIODeadline?
    /// How long after a deadline passes it is confirmed: long enough that the
    /// event loop polls its sockets in between, unless it stays busy with
    /// tasks all that time.
    static let expiryConfirmationDelay = TimeAmount.milliseconds(1)

    /// Decodes the replies in the channel's bytes, in the handler rather than
    /// in a handler of its own before it: on the lookup path, every reply
    /// would otherwise be one more hop through the pipeline.
    private let decoder: RESPReplyDecoder
    private let unresponsiveTimeout: TimeAmount?
    private let maximumCommandSize: Int
    private let maximumInFlight: Int
    private let logger: Logger
    private let metrics: GatewayMetrics?

    /// A handler refusing replies larger than `maximumReplySize` bytes and
    /// commands larger than `maximumCommandSize`; throws `.libraryFailure`
    /// if hiredis cannot allocate its reader.
    init(
        unresponsiveTimeout: TimeAmount?,
        maximumReplySize: Int,
        maximumCommandSize: Int,
        maximumInFlight: Int = .max,
        logger: Logger,
        metrics: GatewayMetrics? = nil
    ) throws {
        self.decoder = try RESPReplyDecoder(maximumReplySize: maximumReplySize)
        self.unresponsiveTimeout = unresponsiveTimeout
        self.maximumCommandSize = maximumCommandSize
        self.maximumInFlight = maximumInFlight
        self.logger = logger
        self.metrics = metrics
    }

    /// The deadline of an entry: its timeout after it was queued or after
    /// Redis last sent something, whichever is later.
    private func deadline(of entry: InFlight) -> NIODeadline {
        guard let timeout = entry.timeout else { return .distantFuture }
        return max(entry.queued, self.lastProgress) + timeout
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // The handler takes ownership of the requests' promises here; see the type's documentation.
        promise?.succeed(())
        guard self.inFlight.count < self.maximumInFlight else {
            let error = GatewayError(.tooManyRequests, "\(self.inFlight.count) Redis commands are waiting on this connection; the limit is \(self.maximumInFlight)")
            switch Self.unwrapOutboundIn(data) {
            case .one(let request): request.reply.fail(error)
            case .many(let requests): for request in requests { request.reply.fail(error) }
            }
            return
        }
        switch Self.unwrapOutboundIn(data) {
        case .one(let request):
            self.enqueue(request, context: context)
        case .many(let requests):
            for request in requests {
                self.enqueue(request, context: context)
            }
        }
    }

    /// Queues `request` as `write` does and flushes it at the end of this
    /// turn of the event loop, without passing through the pipeline: the
    /// lookup path's way in, called by `RedisConnection` on the channel's
    /// event loop.
    func enqueueDirectly(_ request: RedisRequest, context: ChannelHandlerContext) {
        guard self.inFlight.count < self.maximumInFlight else {
            request.reply.fail(GatewayError(.tooManyRequests, "\(self.inFlight.count) Redis commands are waiting on this connection; the limit is \(self.maximumInFlight)"))
            return
        }
        self.enqueue(request, context: context)
        self.scheduleFlush(context: context)
    }

    private func enqueue(_ request: RedisRequest, context: ChannelHandlerContext) {
        guard self.isOpen else {
            request.reply.fail(self.closedError(inFlight: 0))
            return
        }
        // Refused here rather than in the encoder: an encoder error would
        // close the channel, failing every other command in flight.
        let size = HiredisLimits.encodedSizeBound(request.command.argv)
        guard size <= self.maximumCommandSize else {
            request.reply.fail(
                GatewayError(
                    .valueTooLarge,
                    "the Redis command \(request.command.name) is about \(size) bytes; the limit is \(self.maximumCommandSize)"
                )
            )
            return
        }
        let now = context.eventLoop.now
        let queuedAt = self.metrics?.startTime() ?? 0
        self.inFlight.append(
            InFlight(promise: request.reply, queued: now, timeout: request.timeout, queuedAt: queuedAt, name: request.command.argv[0])
        )
        if let timeout = request.timeout {
            self.armTimer(for: now + timeout, context: context)
        }
        if self.pending == nil {
            self.pending = context.channel.allocator.buffer(capacity: 256)
        }
        RESPCommandEncoder.append(request.command.argv, to: &self.pending!)
    }

    func flush(context: ChannelHandlerContext) {
        self.scheduleFlush(context: context)
    }

    private func scheduleFlush(context: ChannelHandlerContext) {
        guard !self.flushScheduled else { return }
        self.flushScheduled = true
        // Run after what this turn of the loop is doing (serving the workers'
        // reads, say), so that every command it queues shares the write.
        context.eventLoop.assumeIsolated().execute {
            self.flushScheduled = false
            // Closed meanwhile: nothing left to send.
            guard self.isOpen, let pending = self.pending.take() else { return }
            context.writeAndFlush(Self.wrapOutboundOut(pending), promise: nil)
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        guard self.isOpen else { return }
        do {
            try self.decoder.decode(&bytes, allocator: context.channel.allocator) { reply in
                self.received(reply, context: context)
                // A reply (or its callback) may have closed the channel: the rest is not read.
                return self.isOpen && self.closeReason == nil
            }
        } catch {
            // A decoding error: the stream is out of step.
            self.fail(context: context, reason: "\(error)")
        }
    }

    /// Pairs `reply` with the oldest command in flight.
    private func received(_ reply: RESPValue, context: ChannelHandlerContext) {
        guard let entry = self.inFlight.popFirst() else {
            self.fail(context: context, reason: "Redis sent a reply that no command was waiting for (\(reply))")
            return
        }
        // Late replies too: the round trip is what Redis took, answered or not.
        if entry.queuedAt != 0 {
            self.metrics?.recordRedisCommand(nanoseconds: Int64(clamping: NIODeadline.now().uptimeNanoseconds &- entry.queuedAt))
        }
        // nil when the command timed out: the reply is consumed and dropped.
        entry.promise?.succeed(reply)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        // Bytes came from Redis (a reply, or part of a large one): it is
        // answering, so no waiting command's silence starts before now.
        self.lastProgress = context.eventLoop.now
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Not forwarded: this is the last handler, and the error is reported
        // to every pending command through the close. A connection refused
        // while being established (`.unavailable`, such as a TLS server that
        // rejects this client) is reported by the pool, rate-limited: not here.
        let establishing = (error as? GatewayError)?.code == .unavailable
        self.fail(context: context, reason: "\(error)", level: establishing || self.isClosing ? .debug : .warning)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.isClosing = true
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.shutDown()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.shutDown()
    }

    // MARK: Closing

    private func fail(context: ChannelHandlerContext, reason: String, level: Logger.Level = .warning) {
        guard self.isOpen else { return }
        if self.closeReason == nil { self.closeReason = reason }
        self.logger.log(
            level: level,
            "closing the Redis connection",
            metadata: ["redis.reason": "\(reason)", "redis.in_flight": "\(self.inFlight.count)"]
        )
        context.close(promise: nil)
    }

    /// Fails everything in flight and refuses later writes. The queue is
    /// detached before any promise is completed, because a promise's callbacks
    /// may write again on this channel.
    private func shutDown() {
        self.isOpen = false
        self.pending = nil
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
        guard !self.inFlight.isEmpty else { return }
        let pending = self.inFlight
        self.inFlight.removeAll()
        let error = self.closedError(inFlight: pending.count)
        for entry in pending {
            entry.promise?.fail(error)
        }
    }

    private func closedError(inFlight: Int) -> GatewayError {
        let reason = self.closeReason.map { ": \($0)" } ?? ""
        let pending = inFlight > 0 ? " with \(inFlight) commands in flight" : ""
        return GatewayError(.connectionClosed, "the Redis connection closed\(pending)\(reason)")
    }

    // MARK: Timeouts

    private func armTimer(for deadline: NIODeadline, context: ChannelHandlerContext) {
        if let current = self.timerDeadline, current <= deadline { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        let loopBoundContext = context
        self.timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired(context: loopBoundContext)
        }
    }

    private func timerFired(context: ChannelHandlerContext) {
        self.timer = nil
        self.timerDeadline = nil
        guard self.isOpen else { return }
        let now = context.eventLoop.now
        // A deadline that has passed is confirmed a turn of the event loop
        // later: the loop may have been busy (serving a worker's burst) while
        // Redis's replies waited unread in the socket, and that silence is the
        // gateway's own, not Redis's. The confirmation runs after the loop has
        // polled its sockets again; if Redis's bytes came meanwhile, Redis is
        // answering and nothing expires (deadlines count from those bytes).
        if let started = self.expiryConfirmationStarted {
            self.expiryConfirmationStarted = nil
            if self.lastProgress >= started {
                let earliest = self.inFlight.lazy.filter { $0.promise != nil }.map { self.deadline(of: $0) }.min()
                if let earliest, earliest != .distantFuture {
                    self.armTimer(for: max(earliest, now + Self.expiryConfirmationDelay), context: context)
                }
                return
            }
        } else if self.inFlight.contains(where: { $0.promise != nil && self.deadline(of: $0) <= now }) {
            self.expiryConfirmationStarted = now
            self.armTimer(for: now + Self.expiryConfirmationDelay, context: context)
            return
        }
        var expired: [InFlight] = []
        var next: NIODeadline? = nil
        for index in self.inFlight.indices where self.inFlight[index].promise != nil {
            let deadline = self.deadline(of: self.inFlight[index])
            if deadline <= now {
                expired.append(self.inFlight[index])
                self.inFlight[index].promise = nil
            } else if deadline != .distantFuture {
                next = min(next ?? deadline, deadline)
            }
        }
        var unresponsive = false
        if let unresponsiveTimeout = self.unresponsiveTimeout, let oldest = self.inFlight.first, oldest.promise == nil {
            let giveUp = self.deadline(of: oldest) + unresponsiveTimeout
            if giveUp <= now {
                unresponsive = true
            } else {
                next = min(next ?? giveUp, giveUp)
            }
        }
        if let next, !unresponsive {
            self.armTimer(for: next, context: context)
        }
        // Completed last: callbacks may write to this channel and change the queue.
        for entry in expired {
            let timeout = entry.timeout.map { " within \($0.redisLogDescription)" } ?? ""
            entry.promise?.fail(GatewayError(.timeout, "Redis did not answer \(String(buffer: entry.name))\(timeout)"))
        }
        if unresponsive, let unresponsiveTimeout = self.unresponsiveTimeout {
            self.fail(
                context: context,
                reason: "Redis has not answered for \(unresponsiveTimeout.redisLogDescription) past a command's timeout"
            )
        }
    }
}

@available(*, unavailable)
extension RedisCommandHandler: Sendable {}

extension TimeAmount {
    /// `50 ms`, `1.5 s`: for error messages.
    var redisLogDescription: String {
        let nanoseconds = self.nanoseconds
        if nanoseconds % 1_000_000_000 == 0 { return "\(nanoseconds / 1_000_000_000) s" }
        if nanoseconds >= 1_000_000_000 { return "\(Double(nanoseconds) / 1e9) s" }
        if nanoseconds % 1_000_000 == 0 { return "\(nanoseconds / 1_000_000) ms" }
        return "\(Double(nanoseconds) / 1e6) ms"
    }
}
