import GatewayProtocol
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@Suite("Frame decoder")
struct FrameDecoderTests {
    /// Payloads of assorted sizes, including empty ones and one whose length needs two prefix bytes.
    static let payloads: [[UInt8]] = [
        [],
        [0x92, 0x02, 0x01],
        Array(0...255),
        [0x00],
        [UInt8](repeating: 0xab, count: 300),
        [],
    ]

    @Test("every split is decoded by ByteToMessageDecoderVerifier")
    func verifier() throws {
        let pairs: [(ByteBuffer, [ByteBuffer])] = Self.payloads.map { payload in
            (buffer(frame(payload)), [buffer(payload)])
        }
        // Several frames in one input, including zero-length ones.
        let many = [[UInt8](), [0x01, 0x02], [], [0xff]]
        let manyPair = (buffer(many.flatMap(frame)), many.map(buffer))
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: pairs + [manyPair]) {
            FrameDecoder()
        }
    }

    @Test("a stream cut at every byte position yields the same frames")
    func everyTwoWaySplit() throws {
        let payloads: [[UInt8]] = [[0x92, 0x02, 0x07], [], [0xc4, 0x01, 0x00], Array(repeating: 0x5a, count: 300), []]
        let stream = payloads.flatMap(frame)
        for cut in 0...stream.count {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
            try channel.writeInbound(buffer(Array(stream[..<cut])))
            try channel.writeInbound(buffer(Array(stream[cut...])))
            var decoded: [[UInt8]] = []
            while let payload: ByteBuffer = try channel.readInbound() {
                decoded.append(Array(payload.readableBytesView))
            }
            #expect(decoded == payloads, "cut at \(cut)")
            #expect(try channel.finish().isClean, "cut at \(cut)")
        }
    }

    @Test("a 70,000-byte payload (three significant prefix bytes) arrives in pieces")
    func largeFrameInPieces() throws {
        let payload = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        let stream = frame(payload)
        #expect(Array(stream.prefix(4)) == [0x00, 0x01, 0x11, 0x70])
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        var start = 0
        var size = 1
        while start < stream.count {
            let end = min(start + size, stream.count)
            #expect(try channel.readInbound(as: ByteBuffer.self) == nil, "no frame before byte \(start)")
            try channel.writeInbound(buffer(Array(stream[start..<end])))
            start = end
            size = size * 2 + 1
        }
        let decoded = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(Array(decoded.readableBytesView) == payload)
        #expect(try channel.finish().isClean)
    }

    @Test("readPayload returns nil until the whole frame is there, then consumes exactly it")
    func readPayloadIncrementally() throws {
        let decoder = FrameDecoder()
        let bytes = frame([0x93, 0x07, 0x01, 0xc0]) + [0xee]
        for prefix in 0..<8 {
            var partial = buffer(Array(bytes[..<prefix]))
            #expect(try decoder.readPayload(from: &partial) == nil, "after \(prefix) bytes")
            #expect(partial.readableBytes == prefix, "nothing consumed after \(prefix) bytes")
        }
        var whole = buffer(bytes)
        let payload = try #require(try decoder.readPayload(from: &whole))
        #expect(Array(payload.readableBytesView) == [0x93, 0x07, 0x01, 0xc0])
        #expect(Array(whole.readableBytesView) == [0xee])
    }

    @Test("a frame exactly at the size limit is accepted")
    func frameAtLimit() throws {
        let decoder = FrameDecoder(maxFrameSize: 16)
        var bytes = buffer(frame(Array(repeating: 0x01, count: 16)))
        let payload = try #require(try decoder.readPayload(from: &bytes))
        #expect(payload.readableBytes == 16)
        #expect(bytes.readableBytes == 0)
    }
}
