#if os(Linux)
import GatewayProtocol
import GatewayTestSupport
import Glibc
import NIOCore
import Testing

@testable import Gateway

/// The sending half of the gateway's own connections, on a real socket
/// pair: every byte arrives once and in order, whether the buffers go out
/// one by one, gathered into one `sendmsg`, or in parts while the socket is full.
@Suite struct IOPendingWritesTests {
    /// A non-blocking Unix stream socket pair with a small send buffer,
    /// closed by `close()`.
    struct SocketPair {
        let writer: Int32
        let reader: Int32

        init(sendBuffer: Int32 = 16 * 1024) throws {
            var descriptors: [Int32] = [0, 0]
            guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &descriptors) == 0 else {
                throw TestFailure("socketpair failed: \(errno)")
            }
            self.writer = descriptors[0]
            self.reader = descriptors[1]
            var size = sendBuffer
            _ = setsockopt(self.writer, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }

        /// Everything readable now.
        func readAvailable() -> [UInt8] {
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            while true {
                let count = chunk.withUnsafeMutableBytes { Glibc.read(self.reader, $0.baseAddress, $0.count) }
                guard count > 0 else { return bytes }
                bytes += chunk[0..<count]
            }
        }

        func close() {
            Glibc.close(self.writer)
            Glibc.close(self.reader)
        }
    }

    /// Buffers of distinct bytes, so that a reordering or a repeat shows.
    static func buffers(sizes: [Int]) -> (buffers: [ByteBuffer], expected: [UInt8]) {
        var expected: [UInt8] = []
        var buffers: [ByteBuffer] = []
        for (index, size) in sizes.enumerated() {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7) }
            expected += bytes
            buffers.append(ByteBuffer(bytes: bytes))
        }
        return (buffers, expected)
    }

    @Test(arguments: [[100], [100, 0, 200], Array(repeating: 50, count: 10), Array(repeating: 7, count: 200)])
    func whatFitsGoesOutWholeAndInOrder(sizes: [Int]) throws {
        let pair = try SocketPair(sendBuffer: 256 * 1024)
        defer { pair.close() }
        var pending = IOPendingWrites()
        let (buffers, expected) = Self.buffers(sizes: sizes)
        for buffer in buffers { pending.append(buffer) }
        let outcome = try pending.write(to: pair.writer)
        #expect(outcome.drained)
        #expect(outcome.written == expected.count)
        #expect(pending.isEmpty)
        #expect(pair.readAvailable() == expected)
    }

    /// More than the socket takes: each write stops where the socket is
    /// full, keeps the rest (a buffer's unwritten part included), and the
    /// next write goes on from there.
    @Test func aFullSocketTakesTheRestLater() throws {
        let pair = try SocketPair()
        defer { pair.close() }
        var pending = IOPendingWrites()
        let sizes = (0..<300).map { [1, 700, 5000, 0, 65_536][$0 % 5] }
        let (buffers, expected) = Self.buffers(sizes: sizes)
        for buffer in buffers { pending.append(buffer) }
        var received: [UInt8] = []
        var total = 0
        var partialWrites = 0
        while true {
            let outcome = try pending.write(to: pair.writer)
            total += outcome.written
            if outcome.drained { break }
            partialWrites += 1
            #expect(!pending.isEmpty)
            received += pair.readAvailable()
        }
        received += pair.readAvailable()
        #expect(partialWrites > 0, "the socket should have filled up at least once")
        #expect(total == expected.count)
        #expect(received == expected)
        #expect(pending.isEmpty)
    }

    /// A peer that is gone is an error, not a silent loss.
    @Test func aClosedPeerIsAnError() throws {
        let pair = try SocketPair()
        defer { Glibc.close(pair.writer) }
        Glibc.close(pair.reader)
        var pending = IOPendingWrites()
        pending.append(ByteBuffer(bytes: [1, 2, 3]))
        pending.append(ByteBuffer(bytes: [4, 5]))
        #expect(throws: GatewayError.self) { try pending.write(to: pair.writer) }
    }
}
#endif
