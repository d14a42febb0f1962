// The only file that touches hiredis. Every pointer, handle and return code of
// hiredis stays here; the rest of the package sees `RedisCommand`,
// `RESPValue`, `HiredisReader` and `BlockingRedisClient`.
//
// hiredis (Debian's 0.14) is used for the RESP2 wire format only:
// `redisFormatCommandArgv` encodes commands and a `redisReader` parses replies.
// SwiftNIO does all the socket I/O of the gateway. The one exception is
// `BlockingRedisClient`, hiredis's own blocking client, which exists only as
// the benchmarks' "direct hiredis" baseline.
internal import CHiredis
import GatewayProtocol
import NIOCore

// MARK: - Return codes

/// Runs one hiredis call that returns a status or a length, and turns
/// `REDIS_ERR` (-1) into a `GatewayError`.
///
/// Every integer-returning hiredis call in this file goes through here, so no
/// status is ignored (the pattern of swift-nio's `syscall` in
/// NIOPosix/System.swift). `code` and `detail` are evaluated only on failure,
/// after the call, so they can read the error the call left in a context or
/// reader.
@inline(__always)
@discardableResult
private func hiredisCall(
    _ function: StaticString,
    failure code: @autoclosure () -> GatewayError.Code = .libraryFailure,
    detail: @autoclosure () -> String = "",
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Int32
) throws -> Int32 {
    let status = body()
    guard status != REDIS_ERR else {
        let detail = detail()
        throw GatewayError(
            code(),
            "hiredis \(function) failed" + (detail.isEmpty ? "" : ": \(detail)"),
            fileID: fileID,
            line: line
        )
    }
    return status
}

/// Runs one hiredis call that returns a pointer and turns NULL into a
/// `GatewayError(.libraryFailure)`; hiredis returns NULL only when it cannot
/// allocate.
@inline(__always)
private func hiredisCall<Pointee>(
    _ function: StaticString,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> UnsafeMutablePointer<Pointee>?
) throws -> UnsafeMutablePointer<Pointee> {
    guard let pointer = body() else {
        throw GatewayError(.libraryFailure, "hiredis \(function) returned NULL (out of memory)", fileID: fileID, line: line)
    }
    return pointer
}

/// The text of a fixed-size, NUL-terminated C `errstr[128]` field. Reads at
/// most the field's size, so a missing terminator cannot run past it.
private func errorString<T>(_ field: T) -> String {
    withUnsafeBytes(of: field) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - Encoding

/// Limits of hiredis's command encoder.
enum HiredisLimits {
    /// The largest RESP-encoded command: `redisFormatCommandArgv` returns the
    /// length as a C `int`.
    static let maximumEncodedCommandSize = Int(Int32.max)

    /// An upper bound for the RESP framing of one argument: `$`, up to 20
    /// length digits, and two CRLFs.
    static let framingPerArgument = 25

    /// An upper bound for the encoded size of `argv`, used to refuse a
    /// command before hiredis's `int` length could overflow.
    static func encodedSizeBound(_ argv: [ByteBuffer]) -> Int {
        argv.reduce(framingPerArgument) { $0 + $1.readableBytes + framingPerArgument }
    }
}

/// Calls `body` with C argv/argvlen arrays describing `argv`.
///
/// The arguments are first copied into one contiguous scratch allocation so
/// that every argv pointer stays valid for the whole call (nesting one
/// `withUnsafeReadableBytes` per argument would recurse once per argument).
/// A zero-length argument still gets a valid, non-NULL pointer.
private func withArgv<R>(
    _ argv: [ByteBuffer],
    _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) throws -> R
) throws -> R {
    guard !argv.isEmpty else {
        throw GatewayError(.unencodable, "a Redis command needs at least a name")
    }
    let bound = HiredisLimits.encodedSizeBound(argv)
    guard bound <= HiredisLimits.maximumEncodedCommandSize else {
        throw GatewayError(
            .valueTooLarge,
            "a Redis command of \(bound) bytes is larger than hiredis can encode (\(HiredisLimits.maximumEncodedCommandSize))"
        )
    }
    let total = argv.reduce(0) { $0 + $1.readableBytes }
    return try withUnsafeTemporaryAllocation(byteCount: max(total, 1), alignment: 1) { scratch in
        try withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: argv.count) { pointers in
            try withUnsafeTemporaryAllocation(of: Int.self, capacity: argv.count) { lengths in
                let base = scratch.baseAddress!
                var offset = 0
                for (index, argument) in argv.enumerated() {
                    let count = argument.readableBytes
                    argument.withUnsafeReadableBytes { source in
                        if let from = source.baseAddress, count > 0 {
                            (base + offset).copyMemory(from: from, byteCount: count)
                        }
                    }
                    pointers[index] = UnsafePointer((base + offset).assumingMemoryBound(to: CChar.self))
                    lengths[index] = count
                    offset += count
                }
                return try body(Int32(argv.count), pointers.baseAddress!, UnsafePointer(lengths.baseAddress!))
            }
        }
    }
}

/// Appends the RESP encoding of `argv` (an array of bulk strings) to `out`,
/// using hiredis's `redisFormatCommandArgv`.
///
/// Throws `.unencodable` for an empty argv, `.valueTooLarge` when the command
/// would not fit hiredis's `int` length, and `.libraryFailure` when hiredis
/// cannot allocate.
func hiredisFormatCommand(_ argv: [ByteBuffer], into out: inout ByteBuffer) throws {
    try withArgv(argv) { argc, pointers, lengths in
        var target: UnsafeMutablePointer<CChar>? = nil
        let length = try hiredisCall("redisFormatCommandArgv") {
            redisFormatCommandArgv(&target, argc, pointers, lengths)
        }
        defer { redisFreeCommand(target) }
        guard let target else {
            throw GatewayError(.libraryFailure, "hiredis redisFormatCommandArgv returned no buffer")
        }
        out.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(length)))
    }
}

// MARK: - Parsing

// hiredis 0.14 builds the same REDIS_REPLY_NIL object for a null bulk string
// (`$-1`) and a null array (`*-1`). To tell them apart, the reader's function
// table wraps the default `createNil`: it looks at the type of the read task
// (the type byte that announced the null) and marks null arrays in the NIL
// object's otherwise unused `integer` field. freeReplyObject ignores that
// field for NIL objects, so the default destructor still frees everything.

/// The marker stored in `redisReply.integer` of a NIL reply that was a null array.
private let nullArrayMarker: Int64 = 1

/// hiredis's default reply functions (a static table inside libhiredis),
/// read once from a throwaway reader. The table is immutable and its entries
/// are plain C function pointers, so it is shared between threads.
private let defaultReplyFunctions: redisReplyObjectFunctions? = {
    guard let reader = redisReaderCreate() else { return nil }
    defer { redisReaderFree(reader) }
    return reader.pointee.fn?.pointee
}()

/// The default `createNil`, then the null-array mark described above.
private let createNilMarkingNullArrays: @convention(c) (UnsafePointer<redisReadTask>?) -> UnsafeMutableRawPointer? = {
    task in
    guard let reply = defaultReplyFunctions?.createNil?(task) else { return nil }
    if let task, task.pointee.type == REDIS_REPLY_ARRAY {
        reply.assumingMemoryBound(to: redisReply.self).pointee.integer = nullArrayMarker
    }
    return reply
}

/// Parses RESP2 replies with a hiredis `redisReader`: feed it bytes as they
/// arrive, then take out complete replies as `RESPValue`s.
///
/// The reader copies fed bytes into its own buffer, so fed buffers can be
/// released at once. Each complete reply is copied out of hiredis's reply
/// tree into Swift values and the tree is freed immediately.
///
/// Safety limits, because the bytes come from the network:
/// - a reply (including what has been buffered for it so far) larger than
///   `maximumReplySize` bytes is refused, so a runaway or hostile length
///   prefix cannot make the reader buffer without bound;
/// - more than 8 nested arrays is a protocol error (hiredis's limit, which
///   also bounds the recursion of the conversion; no Redis command nests
///   that deep);
/// - after any error the reader is poisoned: hiredis has dropped its buffer,
///   so the stream cannot be resynchronised and the connection must close.
///
/// Not thread-safe: one reader per channel, used on its event loop.
final class HiredisReader {
    private let reader: UnsafeMutablePointer<redisReader>
    // The reader keeps a pointer to its function table, so the table lives
    // exactly as long as the reader.
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>

    /// The largest reply accepted, in bytes of RESP.
    let maximumReplySize: Int
    /// Bytes fed for the reply being parsed: what hiredis has consumed of it
    /// plus what is buffered after it.
    private var bytesInCurrentReply = 0
    /// The first error; every later call throws it again.
    private var failure: GatewayError?

    /// Creates a reader; throws `.libraryFailure` if hiredis cannot allocate one.
    init(maximumReplySize: Int) throws {
        guard let defaults = defaultReplyFunctions else {
            throw GatewayError(.libraryFailure, "hiredis redisReaderCreate returned NULL (out of memory)")
        }
        self.maximumReplySize = maximumReplySize
        let functions = UnsafeMutablePointer<redisReplyObjectFunctions>.allocate(capacity: 1)
        functions.initialize(to: defaults)
        functions.pointee.createNil = createNilMarkingNullArrays
        do {
            self.reader = try hiredisCall("redisReaderCreateWithFunctions") {
                redisReaderCreateWithFunctions(functions)
            }
        } catch {
            functions.deallocate()
            throw error
        }
        self.functions = functions
    }

    deinit {
        redisReaderFree(self.reader)
        self.functions.deallocate()
    }

    /// Whether the reader holds nothing: no byte of a reply, complete or
    /// not, and no error. Bytes may then be parsed elsewhere without
    /// reordering replies (see `RESPReplyDecoder`).
    ///
    /// After a reply, the reader looks for the next one as soon as it is
    /// asked: it then stands at the start of an empty task (`ridx` 0, the
    /// task's type not yet read), which holds nothing either.
    var isIdle: Bool {
        let reader = self.reader.pointee
        guard self.failure == nil, reader.pos == reader.len else { return false }
        return reader.ridx == -1 || (reader.ridx == 0 && reader.rstack.0.type == -1)
    }

    /// Fails the reader with `error`, found in its stream by someone else:
    /// every later call throws it.
    func fail(_ error: GatewayError) {
        if self.failure == nil { self.failure = error }
    }

    /// Hands `buffer`'s readable bytes to the reader.
    func feed(_ buffer: ByteBuffer) throws {
        try self.poisonOnError {
            try buffer.withUnsafeReadableBytes { bytes in
                guard let base = bytes.baseAddress, bytes.count > 0 else { return }
                try hiredisCall(
                    "redisReaderFeed",
                    failure: self.failureCode,
                    detail: self.errorDescription
                ) {
                    redisReaderFeed(self.reader, base.assumingMemoryBound(to: CChar.self), bytes.count)
                }
                self.bytesInCurrentReply += bytes.count
            }
        }
    }

    /// The next complete reply, or nil when more bytes are needed.
    ///
    /// Throws `GatewayError(.backendError)` on a protocol error or an
    /// oversized reply, and `.libraryFailure` when hiredis runs out of memory.
    func nextReply(allocator: ByteBufferAllocator) throws -> RESPValue? {
        try self.poisonOnError {
            var reply: UnsafeMutablePointer<redisReply>? = nil
            try hiredisCall(
                "redisReaderGetReply",
                failure: self.failureCode,
                detail: "Redis sent an invalid reply (\(self.errorDescription))"
            ) {
                cache_gateway_redis_reader_get_reply(self.reader, &reply)
            }
            guard let reply else {
                if self.bytesInCurrentReply > self.maximumReplySize {
                    throw GatewayError(
                        .backendError,
                        "a Redis reply is larger than the limit of \(self.maximumReplySize) bytes"
                    )
                }
                return nil
            }
            defer { freeReplyObject(reply) }
            // What is still buffered belongs to the following replies; the
            // rest was this one's, complete now but perhaps still too large.
            let buffered = self.reader.pointee.len - self.reader.pointee.pos
            guard self.bytesInCurrentReply - buffered <= self.maximumReplySize else {
                throw GatewayError(.backendError, "a Redis reply is larger than the limit of \(self.maximumReplySize) bytes")
            }
            self.bytesInCurrentReply = buffered
            return try Self.value(of: reply, allocator: allocator)
        }
    }

    /// Runs `body` unless an earlier call failed, and remembers its failure.
    private func poisonOnError<R>(_ body: () throws -> R) throws -> R {
        if let failure = self.failure { throw failure }
        do {
            return try body()
        } catch let error as GatewayError {
            self.failure = error
            throw error
        }
    }

    /// How a failed reader call is reported: running out of memory is the
    /// library's failure, anything else is Redis sending something invalid.
    private var failureCode: GatewayError.Code {
        self.reader.pointee.err == REDIS_ERR_OOM ? .libraryFailure : .backendError
    }

    private var errorDescription: String { errorString(self.reader.pointee.errstr) }

    /// Copies a hiredis reply tree into a `RESPValue`. Recursion is bounded by
    /// hiredis's nesting limit.
    private static func value(of reply: UnsafePointer<redisReply>, allocator: ByteBufferAllocator) throws -> RESPValue {
        let node = reply.pointee
        switch node.type {
        case REDIS_REPLY_STRING:
            return .bulkString(allocator.buffer(bytes: UnsafeRawBufferPointer(start: node.str, count: node.len)))
        case REDIS_REPLY_STATUS:
            return .simpleString(String(decoding: UnsafeRawBufferPointer(start: node.str, count: node.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: UnsafeRawBufferPointer(start: node.str, count: node.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(node.integer))
        case REDIS_REPLY_NIL:
            return node.integer == nullArrayMarker ? .array(nil) : .bulkString(nil)
        case REDIS_REPLY_ARRAY:
            guard node.elements > 0 else { return .array([]) }
            guard let elements = node.element else {
                throw GatewayError(.backendError, "hiredis returned an array reply without elements")
            }
            var values: [RESPValue] = []
            values.reserveCapacity(node.elements)
            for index in 0..<node.elements {
                guard let element = elements[index] else {
                    throw GatewayError(.backendError, "hiredis returned an incomplete array reply")
                }
                values.append(try Self.value(of: element, allocator: allocator))
            }
            return .array(values)
        default:
            throw GatewayError(.backendError, "hiredis returned a reply of unknown type \(node.type)")
        }
    }
}

// MARK: - Blocking client (benchmarks only)

/// hiredis's own blocking client: one socket, one command at a time.
///
/// It exists only as the benchmarks' baseline ("a direct hiredis GET") and
/// must never be used by the gateway: every call blocks the calling thread on
/// socket I/O, which on a NIO event loop would stall every channel of that
/// loop. Not thread-safe; use one client per thread.
///
/// It performs the same handshake as `RedisConnection` (AUTH, then SELECT).
/// Errors: `.unavailable` when it cannot connect, `.connectionClosed` when
/// the connection fails during a command (the client is unusable after that),
/// `.backendError` when the handshake is refused, `.timeout` when `timeout`
/// elapses.
public final class BlockingRedisClient {
    private let context: UnsafeMutablePointer<redisContext>

    /// Connects to `url` and performs the handshake. `timeout` bounds the
    /// connect and every later read and write; nil waits forever.
    public init(url: RedisURL, timeout: Duration? = .seconds(5)) throws {
        let context: UnsafeMutablePointer<redisContext>?
        switch (url.endpoint, timeout.map(Self.makeTimeval(_:))) {
        case (.unixSocket(let path), nil): context = redisConnectUnix(path)
        case (.unixSocket(let path), let tv?): context = redisConnectUnixWithTimeout(path, tv)
        case (.tcp(let host, let port), nil): context = redisConnect(host, Int32(port))
        case (.tcp(let host, let port), let tv?): context = redisConnectWithTimeout(host, Int32(port), tv)
        }
        // From here on, a throw still runs deinit (every stored property is
        // set), which frees the context: it must not be freed here as well.
        self.context = try hiredisCall("redisConnect") { context }
        guard self.context.pointee.err == 0 else {
            let reason = errorString(self.context.pointee.errstr)
            throw GatewayError(.unavailable, "cannot connect to Redis at \(url.endpoint): \(reason)")
        }
        if let tv = timeout.map(Self.makeTimeval(_:)) {
            try hiredisCall("redisSetTimeout", detail: errorString(self.context.pointee.errstr)) {
                redisSetTimeout(self.context, tv)
            }
        }
        for command in RedisConnection.handshakeCommands(for: url, clientName: nil) {
            if case .error(let message) = try self.send(command) {
                throw GatewayError(.backendError, "Redis refused \(command.name): \(message)")
            }
        }
    }

    deinit {
        redisFree(self.context)
    }

    /// Sends `command` and waits for its reply. A Redis error reply is
    /// returned as `.error`, as by `RedisConnection`.
    public func send(_ command: RedisCommand) throws -> RESPValue {
        let raw = try withArgv(command.argv) { argc, pointers, lengths in
            redisCommandArgv(self.context, argc, pointers, lengths)
        }
        guard let raw else {
            let context = self.context.pointee
            let reason = errorString(context.errstr)
            if context.err == REDIS_ERR_IO, reason.contains("temporarily unavailable") || reason.contains("timed out") {
                throw GatewayError(.timeout, "Redis did not answer \(command.name) in time: \(reason)")
            }
            throw GatewayError(.connectionClosed, "the Redis connection failed during \(command.name): \(reason)")
        }
        let reply = raw.assumingMemoryBound(to: redisReply.self)
        defer { freeReplyObject(reply) }
        return try HiredisReader.valueForBlockingClient(of: reply)
    }

    private static func makeTimeval(_ duration: Duration) -> timeval {
        let (seconds, attoseconds) = duration.components
        guard seconds >= 0 else { return timeval(tv_sec: 0, tv_usec: 0) }
        let clamped = min(seconds, Int64(Int32.max))
        return timeval(tv_sec: Int(clamped), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}

@available(*, unavailable)
extension BlockingRedisClient: Sendable {}

extension HiredisReader {
    /// Conversion for `BlockingRedisClient`, whose replies come from
    /// hiredis's default function table: there a null array cannot be told
    /// from a null bulk string, and both become `.bulkString(nil)`.
    fileprivate static func valueForBlockingClient(of reply: UnsafePointer<redisReply>) throws -> RESPValue {
        try Self.value(of: reply, allocator: ByteBufferAllocator())
    }
}
