import Foundation
import Gateway
import GatewayProtocol
import GatewaySystem
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

/// Two servers that answer every frame with a pong and do nothing else: the
/// floors under the gateway's ping, one on SwiftNIO with a single handler,
/// one on a plain `poll` loop. Run as child processes of the benchmark
/// (`GatewayBenchmarks serve-ping nio|poll PATH`), so that they are pinned
/// like the gateway. Each assumes well-behaved clients (whole frames of at
/// most 255 bytes, ids below 128): they measure transports, not parsing.
enum PingFloorServer {
    /// The pong frame answering the request `id` (`[130, id]`, 4 bytes of
    /// MessagePack after the length), as two big-endian words.
    static func pong(id: UInt8) -> (length: UInt32, payload: UInt32) { (4, 0x92CC_8200 | UInt32(id)) }

    /// Serves on SwiftNIO (the singleton group) until killed.
    static func runNIO(path: String) throws -> Never {
        let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(PongHandler()) }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true)
            .wait()
        try channel.closeFuture.wait()
        exit(0)
    }

    /// One handler: each read's frames answered into one buffer, flushed
    /// when the read is done.
    final class PongHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        private var pending = false

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Self.unwrapInboundIn(data)
            var out = context.channel.allocator.buffer(capacity: 64)
            bytes.withUnsafeReadableBytes { input in
                var offset = 0
                while offset + 7 <= input.count {
                    let pong = PingFloorServer.pong(id: input[offset + 6])
                    out.writeMultipleIntegers(pong.length, pong.payload)
                    offset += 4 + Int(input[offset + 3])
                }
            }
            context.write(Self.wrapOutboundOut(out), promise: nil)
            self.pending = true
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            if self.pending {
                self.pending = false
                context.flush()
            }
        }
    }

    /// Serves on one thread with `poll` and plain system calls (each through
    /// `systemCall`, as everywhere) until killed (a handful of descriptors:
    /// `poll` costs what `epoll_wait` does).
    static func runPoll(path: String) throws -> Never {
        let listener = try listenUnixSocket(path)
        var descriptors = [pollfd(fd: listener, events: Int16(POLLIN), revents: 0)]
        var input = [UInt8](repeating: 0, count: 65_536)
        var output = [UInt8](repeating: 0, count: 65_536)
        while true {
            try systemCall("poll") { poll(&descriptors, nfds_t(descriptors.count), -1) }
            var closed: [Int] = []
            for index in descriptors.indices where descriptors[index].revents != 0 {
                descriptors[index].revents = 0
                let descriptor = descriptors[index].fd
                if descriptor == listener {
                    if let connection = try? systemCall("accept", { accept(listener, nil, nil) }) {
                        descriptors.append(pollfd(fd: connection, events: Int16(POLLIN), revents: 0))
                    }
                    continue
                }
                guard let count = try? systemCall("read", { read(descriptor, &input, input.count) }), count > 0 else {
                    close(descriptor)
                    closed.append(index)
                    continue
                }
                var offset = 0
                var written = 0
                while offset + 7 <= count {
                    let pong = Self.pong(id: input[offset + 6])
                    withUnsafeBytes(of: (pong.length.bigEndian, pong.payload.bigEndian)) { frame in
                        for byte in frame {
                            output[written] = byte
                            written += 1
                        }
                    }
                    offset += 4 + Int(input[offset + 3])
                }
                _ = try? systemCall("write") { write(descriptor, output, written) }
            }
            for index in closed.reversed() { descriptors.remove(at: index) }
        }
    }
}

/// The gateway's hot-hit work on a plain `poll` loop: what the gateway's
/// hit would cost without SwiftNIO, measured beside the real gateway in the
/// same run (`GatewayBenchmarks serve-ping hit PATH`).
///
/// Per lookup it does what the gateway does on an in-memory hit: the frame
/// read by `LookupFrames.lookupRequest` (with the function memo), the entry
/// found by `MemoryStore.lookupImmediately` (under its lock, with its LRU
/// and expiry), the reply framed by `LookupFrames.appendHit`, and the
/// replies of one read written with one system call. Any other frame is
/// decoded by `MessageCodec`: a store is kept in the store, anything else
/// is answered with a pong. Like the ping floors it assumes well-behaved
/// clients (whole frames in each read): it measures a transport, not framing.
/// The store's futures complete on a SwiftNIO loop, which lookups never touch.
enum HitFloorServer {
    /// Serves on one thread until killed.
    static func run(path: String) throws -> Never {
        let listener = try listenUnixSocket(path)
        let store = MemoryStore()
        let codec = try MessageCodec()
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        var connections = FloorConnections(listener: listener)
        var input = ByteBuffer()
        var output = ByteBuffer()
        while true {
            for descriptor in try connections.wait() {
                guard connections.read(descriptor, into: &input) else { continue }
                output.clear()
                while let length = input.readInteger(as: UInt32.self), let payload = input.readSlice(length: Int(length)) {
                    if let (id, key) = LookupFrames.lookupRequest(payload, memo: &connections.memos[descriptor, default: LookupFunctionMemo()]),
                        let function = connections.memos[descriptor]?.function,
                        case .hit(let value, _, _)? = store.lookupImmediately(StorageKey(namespace: "bench", function: function, key: key))
                    {
                        _ = LookupFrames.appendHit(id: id, value: value, to: &output)
                        continue
                    }
                    let message = try codec.decodeRequest(payload: payload)
                    if case .store(let request) = message.body {
                        let entry = StoreEntry(value: request.value, ttl: .milliseconds(Int64(request.ttlMilliseconds)), computeMicroseconds: request.computeMicroseconds)
                        _ = store.store(StorageKey(namespace: "bench", function: request.function, key: request.key), entry: entry, on: loop)
                        try codec.encodeFrame(GatewayMessage(id: message.id, .storeReply(stored: true)), into: &output)
                    } else {
                        try codec.encodeFrame(GatewayMessage(id: message.id, .pong), into: &output)
                    }
                }
                _ = try? output.withUnsafeReadableBytes { bytes in
                    try systemCall("write") { write(descriptor, bytes.baseAddress, bytes.count) }
                }
            }
        }
    }
}

/// The gateway's cold-hit work on a plain `poll` loop, twemproxy's way: what
/// a cold hit (gateway, then Redis) would cost without SwiftNIO
/// (`GatewayBenchmarks serve-ping cold PATH REDIS-SOCKET`).
///
/// Per lookup: the frame read by `LookupFrames.lookupRequest`, an entry key
/// of the gateway's single-node shape (`cg:<ns>:e:<function>:<version>:<hex>`,
/// with the function's name where the gateway puts its id) and its `GET`,
/// written by hand (the gateway's RESP encoder is internal to its module); the `GET`s of all the lookups that one `poll`
/// found go to Redis in one write, on one connection. Each bulk-string reply
/// is matched to its lookup in order and framed by `LookupFrames.appendHit`
/// (a nil reply: a miss), and each connection's replies go out with one
/// write. A store is a `SET` in the same queue. Less than the gateway does
/// (no near-cache fill, no timeouts, no counters, no reconnects), so it is a
/// floor, not an estimate.
enum ColdFloorServer {
    /// What a reply from Redis answers.
    enum Pending {
        case lookup(descriptor: Int32, id: UInt64)
        case store(descriptor: Int32, id: UInt64)
    }

    /// Serves on one thread until killed.
    static func run(path: String, redisPath: String) throws -> Never {
        let listener = try listenUnixSocket(path)
        let redis = try connectUnixSocket(redisPath)
        let codec = try MessageCodec()
        var connections = FloorConnections(listener: listener, also: redis)
        var pending = CircularBuffer<Pending>()
        var input = ByteBuffer()
        var replies = ByteBuffer()
        var commands = ByteBuffer()
        var outputs: [Int32: ByteBuffer] = [:]
        while true {
            commands.clear()
            for descriptor in try connections.wait() {
                if descriptor == redis {
                    let count = try replies.writeWithUnsafeMutableBytes(minimumWritableBytes: 65_536) { buffer in
                        try systemCall("read") { read(redis, buffer.baseAddress, buffer.count) }
                    }
                    guard count > 0 else { throw BenchmarkFailure("redis-server closed the connection") }
                    try Self.answer(&replies, pending: &pending, outputs: &outputs, codec: codec)
                    continue
                }
                guard connections.read(descriptor, into: &input) else { continue }
                while let length = input.readInteger(as: UInt32.self), let payload = input.readSlice(length: Int(length)) {
                    if let (id, key) = LookupFrames.lookupRequest(payload, memo: &connections.memos[descriptor, default: LookupFunctionMemo()]),
                        let function = connections.memos[descriptor]?.function
                    {
                        Self.appendCommand([ByteBuffer(string: "GET"), Self.entryKey(function, key)], to: &commands)
                        pending.append(.lookup(descriptor: descriptor, id: id))
                        continue
                    }
                    let message = try codec.decodeRequest(payload: payload)
                    if case .store(let request) = message.body {
                        Self.appendCommand([ByteBuffer(string: "SET"), Self.entryKey(request.function, request.key), request.value], to: &commands)
                        pending.append(.store(descriptor: descriptor, id: message.id))
                    } else {
                        try codec.encodeFrame(GatewayMessage(id: message.id, .pong), into: &outputs[descriptor, default: ByteBuffer()])
                    }
                }
            }
            // Every lookup this poll found, in one write to Redis.
            if commands.readableBytes > 0 {
                try commands.withUnsafeReadableBytes { bytes in
                    var offset = 0
                    while offset < bytes.count {
                        offset += try systemCall("write") { write(redis, bytes.baseAddress! + offset, bytes.count - offset) }
                    }
                }
            }
            for (descriptor, output) in outputs where output.readableBytes > 0 {
                _ = try? output.withUnsafeReadableBytes { bytes in
                    try systemCall("write") { write(descriptor, bytes.baseAddress, bytes.count) }
                }
            }
            outputs.removeAll(keepingCapacity: true)
        }
    }

    /// The entry key of `key` under `function`, in the gateway's shape.
    static func entryKey(_ function: FunctionVersion, _ key: CacheKey) -> ByteBuffer {
        ByteBuffer(string: "cg:bench:e:\(function.function):\(function.version):\(key)")
    }

    /// Appends a RESP command to `buffer`.
    static func appendCommand(_ arguments: [ByteBuffer], to buffer: inout ByteBuffer) {
        buffer.writeString("*\(arguments.count)\r\n")
        for var argument in arguments {
            buffer.writeString("$\(argument.readableBytes)\r\n")
            buffer.writeBuffer(&argument)
            buffer.writeString("\r\n")
        }
    }

    /// Answers every complete reply in `replies` (bulk strings, nil, or a
    /// status for a store) to the lookup or store it belongs to.
    static func answer(_ replies: inout ByteBuffer, pending: inout CircularBuffer<Pending>, outputs: inout [Int32: ByteBuffer], codec: MessageCodec) throws {
        while let end = replies.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let header = replies.getString(at: replies.readerIndex, length: end - replies.readerIndex - 1) ?? ""
            var value: ByteBuffer?
            var consumed = end - replies.readerIndex + 1
            if header.hasPrefix("$"), let length = Int(header.dropFirst()), length >= 0 {
                guard replies.readableBytes >= consumed + length + 2 else { break }
                value = replies.getSlice(at: replies.readerIndex + consumed, length: length)
                consumed += length + 2
            }
            replies.moveReaderIndex(forwardBy: consumed)
            guard let answered = pending.popFirst() else { throw BenchmarkFailure("a reply from Redis answers nothing") }
            switch answered {
            case .lookup(let descriptor, let id):
                if let value {
                    _ = LookupFrames.appendHit(id: id, value: value, to: &outputs[descriptor, default: ByteBuffer()])
                } else {
                    try codec.encodeFrame(GatewayMessage(id: id, .lookupReply(.miss)), into: &outputs[descriptor, default: ByteBuffer()])
                }
            case .store(let descriptor, let id):
                try codec.encodeFrame(GatewayMessage(id: id, .storeReply(stored: header == "+OK")), into: &outputs[descriptor, default: ByteBuffer()])
            }
        }
        replies.discardReadBytes()
    }
}

/// The descriptors of a floor server's `poll` loop: its listener, the
/// clients it accepted (each with its lookup memo), and any other descriptor
/// it watches.
struct FloorConnections {
    private let listener: Int32
    private var descriptors: [pollfd]
    private var closed: Set<Int32> = []
    /// Each client's lookup memo (`LookupFrames.lookupRequest(_:memo:)`).
    var memos: [Int32: LookupFunctionMemo] = [:]

    /// Watches `listener` for clients, and `also`.
    init(listener: Int32, also others: Int32...) {
        self.listener = listener
        self.descriptors = ([listener] + others).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    }

    /// Waits until something is ready; accepts new clients and returns the
    /// other descriptors that are readable.
    mutating func wait() throws -> [Int32] {
        if !self.closed.isEmpty {
            self.descriptors.removeAll { self.closed.contains($0.fd) }
            self.closed.removeAll()
        }
        try systemCall("poll") { poll(&self.descriptors, nfds_t(self.descriptors.count), -1) }
        var ready: [Int32] = []
        for index in self.descriptors.indices where self.descriptors[index].revents != 0 {
            self.descriptors[index].revents = 0
            let descriptor = self.descriptors[index].fd
            guard descriptor == self.listener else {
                ready.append(descriptor)
                continue
            }
            if let connection = try? systemCall("accept", { accept(self.listener, nil, nil) }) {
                self.descriptors.append(pollfd(fd: connection, events: Int16(POLLIN), revents: 0))
                self.memos[connection] = LookupFunctionMemo()
            }
        }
        return ready
    }

    /// Reads what the client `descriptor` sent into `input` (emptied first);
    /// false when the client is gone (it is then closed and forgotten).
    mutating func read(_ descriptor: Int32, into input: inout ByteBuffer) -> Bool {
        input.clear()
        let count = try? input.writeWithUnsafeMutableBytes(minimumWritableBytes: 65_536) { buffer in
            try systemCall("read") { Glibc.read(descriptor, buffer.baseAddress, buffer.count) }
        }
        guard let count, count > 0 else {
            close(descriptor)
            self.memos[descriptor] = nil
            self.closed.insert(descriptor)
            return false
        }
        return true
    }
}

/// A Unix stream socket listening on `path` (any file there is replaced).
func listenUnixSocket(_ path: String) throws -> Int32 {
    let listener = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
    _ = try systemCall("unlink", on: path, unless: ENOENT) { unlink(path) }
    let address = try UnixSocketAddress(path: path)
    try systemCall("bind", on: path) { address.withSocketAddress { bind(listener, $0, $1) } }
    try systemCall("listen", on: path) { listen(listener, 128) }
    return listener
}

/// A ping floor server started as a child process of this benchmark binary.
final class PingFloorUnderTest {
    let process = Process()
    let socketPath: String
    private let directory: String

    /// Starts `GatewayBenchmarks serve-ping KIND PATH [REDIS-SOCKET]` (KIND:
    /// nio, poll, hit, or cold with a Redis socket) and waits until it listens.
    init(kind: String, redisSocket: String? = nil) throws {
        self.directory = NSTemporaryDirectory() + "cg-ping-\(kind)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/ping.sock"
        self.process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        self.process.arguments = ["serve-ping", kind, self.socketPath] + (redisSocket.map { [$0] } ?? [])
        try self.process.run()
        try waitUntilListening(self.socketPath, what: "the \(kind) ping server")
    }

    var pid: Int32 { self.process.processIdentifier }

    func stop() {
        stopProcess(self.process, removing: self.directory)
    }
}
