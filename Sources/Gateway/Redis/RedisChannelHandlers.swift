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

/// The SwiftNIO transport under a `RedisCommandQueue`: the last handler of a
/// data channel, which hands the queue its bytes and writes its commands.
///
/// The handler keeps its context only while it is in the pipeline: the
/// context holds the handler, so the queue lets go of it in `handlerRemoved`.
final class RedisCommandHandler: ChannelDuplexHandler, RedisCommandTransport {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RedisOutbound
    typealias OutboundOut = ByteBuffer

    /// The commands in flight and their replies.
    let queue: RedisCommandQueue
    private var context: ChannelHandlerContext?

    /// A handler that serves `queue`.
    init(queue: RedisCommandQueue) {
        self.queue = queue
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.queue.attach(self)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.queue.shutDown()
        self.context = nil
    }

    // MARK: RedisCommandTransport

    var eventLoop: any EventLoop { self.context!.eventLoop }

    func makeBuffer(capacity: Int) -> ByteBuffer {
        self.context?.channel.allocator.buffer(capacity: capacity) ?? ByteBuffer()
    }

    func send(_ bytes: ByteBuffer) {
        self.context?.writeAndFlush(Self.wrapOutboundOut(bytes), promise: nil)
    }

    func flushAtEndOfTurn() {
        self.context?.eventLoop.assumeIsolated().execute { self.queue.flushPending() }
    }

    func closeTransport() {
        self.context?.close(promise: nil)
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // The queue takes ownership of the requests' promises here; see `RedisCommandQueue`.
        promise?.succeed(())
        self.queue.accept(Self.unwrapOutboundIn(data))
    }

    func flush(context: ChannelHandlerContext) {
        self.queue.scheduleFlush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        self.queue.closing()
        context.close(mode: mode, promise: promise)
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = Self.unwrapInboundIn(data)
        self.queue.received(&bytes)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.queue.readComplete()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Not forwarded: this is the last handler, and the error is reported
        // to every pending command through the close.
        self.queue.transportFailed(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.queue.shutDown()
        context.fireChannelInactive()
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
