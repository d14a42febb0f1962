import Foundation
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
        let listener = try systemCall("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0) }
        _ = try systemCall("unlink", on: path, unless: ENOENT) { unlink(path) }
        let address = try UnixSocketAddress(path: path)
        try systemCall("bind", on: path) { address.withSocketAddress { bind(listener, $0, $1) } }
        try systemCall("listen", on: path) { listen(listener, 128) }
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

/// A ping floor server started as a child process of this benchmark binary.
final class PingFloorUnderTest {
    let process = Process()
    let socketPath: String
    private let directory: String

    /// Starts `GatewayBenchmarks serve-ping KIND PATH` and waits until it listens.
    init(kind: String) throws {
        self.directory = NSTemporaryDirectory() + "cg-ping-\(kind)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/ping.sock"
        self.process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        self.process.arguments = ["serve-ping", kind, self.socketPath]
        try self.process.run()
        try waitUntilListening(self.socketPath, what: "the \(kind) ping server")
    }

    var pid: Int32 { self.process.processIdentifier }

    func stop() {
        stopProcess(self.process, removing: self.directory)
    }
}
