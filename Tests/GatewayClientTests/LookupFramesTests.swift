@testable import GatewayClientRuntime
import GatewayProtocol
import NIOCore
import Testing

/// The hand-written lookup frames are byte for byte what `MessageCodec`
/// writes and reads.
@Suite struct LookupFramesTests {
    static let ids: [UInt64] = [1, 127, 128, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, .max]

    @Test(arguments: ids)
    func aLookupFrameIsWhatTheCodecWrites(id: UInt64) throws {
        for function in [FunctionVersion(function: "f", version: "v"), FunctionVersion(function: "Billing.InvoiceService.total(for:currency:)", version: String(repeating: "ab", count: 32)), FunctionVersion(function: String(repeating: "é", count: 200), version: "1")] {
            let key = try CacheKey(hashing: id)
            var fast = ByteBuffer()
            LookupFrames.appendLookup(id: id, fields: LookupFrames.fields(of: function), key: key, to: &fast)
            let expected = try GatewayMessage(id: id, .lookup(Lookup(function: function, key: key))).encodedFrame()
            #expect(fast == expected)
        }
    }

    @Test(arguments: ids)
    func aLookupReplyReadsAsTheCodecReadsIt(id: UInt64) throws {
        let decoder = FrameDecoder()
        for size in [0, 1, 255, 256, 65_535, 65_536] {
            for reply in [LookupReply.hit(ByteBuffer(repeating: 7, count: size)), .miss, .missDoNotStore] {
                var frame = try GatewayMessage(id: id, .lookupReply(reply)).encodedFrame()
                let payload = try #require(try decoder.readPayload(from: &frame))
                let fast = try #require(LookupFrames.lookupReply(payload))
                #expect(fast == GatewayMessage(id: id, .lookupReply(reply)))
                #expect(fast == (try GatewayMessage(payload: payload)))
            }
        }
    }

    @Test func otherMessagesAreLeftToTheCodec() throws {
        let decoder = FrameDecoder()
        for message in [GatewayMessage(id: 3, .pong), GatewayMessage(id: 4, .storeReply(stored: true)), GatewayMessage(id: 5, .error(ErrorReply(code: .timeout, message: "slow")))] {
            var frame = try message.encodedFrame()
            let payload = try #require(try decoder.readPayload(from: &frame))
            #expect(LookupFrames.lookupReply(payload) == nil)
        }
        // A lookup reply with a field appended (a later revision): left to the codec.
        let appended = ByteBuffer(bytes: [0x95, 0xcc, 0x83, 0x07, 0x01, 0xc0, 0x2a])
        #expect(LookupFrames.lookupReply(appended) == nil)
        #expect(try GatewayMessage(payload: appended) == GatewayMessage(id: 7, .lookupReply(.miss)))
        // Truncated: nil, not a crash.
        #expect(LookupFrames.lookupReply(ByteBuffer(bytes: [0x94, 0xcc, 0x83, 0x07, 0x00, 0xc4, 0x05, 0x01])) == nil)
    }
}
