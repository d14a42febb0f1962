import GatewayDigest
import GatewayProtocol
import NIOCore
import Testing

@Suite("Message round trips")
struct MessageRoundTripTests {
    static let keyA = CacheKey(bytes: [UInt8](repeating: 0xab, count: 32))!
    static let keyB = CacheKey(bytes: (0..<32).map { UInt8($0 * 7) })!
    static let function = FunctionVersion(function: "Billing.InvoiceService.total(for:currency:)", version: String(repeating: "0f", count: 32))

    /// A value whose readable bytes start after the beginning of its storage.
    static var slicedValue: ByteBuffer {
        let bytes: [UInt8] = [0xde, 0xad] + (0..<200).map { UInt8($0) } + [0xbe, 0xef]
        var value = ByteBuffer(bytes: bytes)
        value.moveReaderIndex(forwardBy: 2)
        value.moveWriterIndex(to: value.writerIndex - 2)
        return value
    }

    static let messages: [GatewayMessage] = [
        GatewayMessage(id: 1, .hello(Hello(clientName: "worker-é", pid: 4242))),
        GatewayMessage(id: 2, .hello(Hello(protocolVersion: 99, clientName: "", pid: 0))),
        GatewayMessage(id: 3, .ping),
        GatewayMessage(id: 4, .lookup(Lookup(function: function, key: keyA))),
        GatewayMessage(id: .max, .lookup(Lookup(function: FunctionVersion(function: "f", version: "1"), key: keyB))),
        GatewayMessage(id: 5, .store(Store(function: function, key: keyB, ttlMilliseconds: 1, computeMicroseconds: 0, value: ByteBuffer()))),
        GatewayMessage(id: 6, .store(Store(
            function: function, key: keyA, ttlMilliseconds: Store.maximumTTLMilliseconds,
            computeMicroseconds: .max, value: ByteBuffer(bytes: [UInt8](repeating: 0x42, count: 70_000))
        ))),
        GatewayMessage(id: 7, .store(Store(function: function, key: keyA, ttlMilliseconds: 60_000, computeMicroseconds: 1234, value: slicedValue))),
        GatewayMessage(id: 8, .register(function)),
        GatewayMessage(id: 9, .invalidate(Invalidate(function: "f(x:)"))),
        GatewayMessage(id: 10, .invalidate(Invalidate(function: "f(x:)", version: "v1"))),
        GatewayMessage(id: 11, .invalidate(Invalidate(function: "f(x:)", version: "v1", key: keyA))),
        GatewayMessage(id: 12, .stats),
        GatewayMessage(id: 13, .helloReply(HelloReply(protocolVersion: 1, gatewayVersion: "0.1.0", maxFrameSize: 8_388_608, maxValueSize: 4_194_304))),
        GatewayMessage(id: 14, .pong),
        GatewayMessage(id: 15, .lookupReply(.hit(ByteBuffer(bytes: [0x01, 0x02, 0x03])))),
        GatewayMessage(id: 16, .lookupReply(.hit(ByteBuffer()))),
        GatewayMessage(id: 17, .lookupReply(.hit(slicedValue))),
        GatewayMessage(id: 18, .lookupReply(.miss)),
        GatewayMessage(id: 19, .lookupReply(.missDoNotStore)),
        GatewayMessage(id: 19, .lookupReply(.wait)),
        GatewayMessage(id: 20, .hello(Hello(clientName: "held", pid: 7, holdMilliseconds: 3000))),
        GatewayMessage(id: 21, .lookup(Lookup(function: function, key: keyA, holdMilliseconds: 2500))),
        GatewayMessage(id: 23, .lookup(Lookup(function: function, key: keyA, refresh: true))),
        GatewayMessage(id: 24, .lookup(Lookup(function: function, key: keyA, holdMilliseconds: 2500, refresh: true))),
        GatewayMessage(id: 25, .lookupReply(.refresh(ByteBuffer(bytes: [1, 2, 3])))),
        GatewayMessage(id: 22, .helloReply(HelloReply(protocolVersion: 1, gatewayVersion: "0.1.0", maxFrameSize: 8_388_608, maxValueSize: 4_194_304, holdMilliseconds: 2000))),
        GatewayMessage(id: 20, .storeReply(stored: true)),
        GatewayMessage(id: 21, .storeReply(stored: false)),
        GatewayMessage(id: 22, .registerReply),
        GatewayMessage(id: 23, .invalidateReply(deleted: 0)),
        GatewayMessage(id: 24, .invalidateReply(deleted: UInt64(UInt32.max) + 1)),
        GatewayMessage(id: 25, .statsReply(Stats(values: [
            "hits": .count(10), "misses": .count(0), "stores": .count(.max), "errors": .count(3),
            "connections": .count(2), "backend": .text("memory"), "backendHealth": .text("up"),
        ]))),
        GatewayMessage(id: 26, .statsReply(Stats(values: [:]))),
        GatewayMessage(id: 27, .error(ErrorReply(code: .invalidField, message: "message type 3, field 4 (key): must be 32 bytes"))),
        GatewayMessage(id: 0, .error(ErrorReply(code: ErrorCode(rawValue: 1000), message: ""))),
        GatewayMessage(id: 28, .error(ErrorReply(GatewayError(.frameTooLarge, "too big")))),
        GatewayMessage(id: 29, .invalidate(Invalidate(function: "f(x:)", key: keyB))),
        GatewayMessage(id: 30, .functions),
        GatewayMessage(id: 31, .functionsReply([])),
        GatewayMessage(id: 32, .functionsReply([
            FunctionInfo(function: "Billing.total(for:)", hits: 5, misses: 2, computeSavedMicroseconds: .max, versions: [
                VersionInfo(version: "ab12", firstSeenMilliseconds: 1_700_000_000_000, lastSeenMilliseconds: 1_700_000_360_000, entries: 40, state: "active", leases: [
                    LeaseInfo(gateway: "host-a:12", expiresMilliseconds: 1_700_000_390_000),
                    LeaseInfo(gateway: "host-b:7", expiresMilliseconds: 1_700_000_391_000),
                ]),
                VersionInfo(version: "9f00", firstSeenMilliseconds: 1, lastSeenMilliseconds: 2, entries: 0, state: "retired", leases: []),
            ]),
            FunctionInfo(function: "f"),
        ])),
    ]

    @Test("the sample covers all 17 message types")
    func sampleCoversEveryType() {
        let types = Set(Self.messages.map(\.body.type.rawValue))
        #expect(types == [1, 2, 3, 4, 5, 6, 7, 8, 129, 130, 131, 132, 133, 134, 135, 136, 255])
    }

    @Test("encodeFrame → FrameDecoder → GatewayMessage(payload:) gives the message back", arguments: messages)
    func roundTrip(_ original: GatewayMessage) throws {
        var stream = ByteBuffer()
        try original.encodeFrame(into: &stream)
        let length = try #require(stream.getInteger(at: stream.readerIndex, endianness: .big, as: UInt32.self))
        #expect(Int(length) == stream.readableBytes - 4, "the prefix counts the payload")
        let payload = try #require(try FrameDecoder().readPayload(from: &stream))
        #expect(stream.readableBytes == 0)
        #expect(try GatewayMessage(payload: payload) == original)
        #expect(GatewayMessage.requestID(inPayload: payload) == original.id)
        let again = try original.encodedFrame()
        #expect(try original.encodedFrame() == again, "encoding is deterministic")
    }

    @Test("many frames in one stream decode in order")
    func manyFramesInOneStream() throws {
        var stream = ByteBuffer()
        for message in Self.messages { try message.encodeFrame(into: &stream) }
        let decoder = FrameDecoder()
        var decoded: [GatewayMessage] = []
        while let payload = try decoder.readPayload(from: &stream) {
            decoded.append(try GatewayMessage(payload: payload))
        }
        #expect(decoded == Self.messages)
        #expect(stream.readableBytes == 0)
    }

    @Test("lookup frame bytes match the hand-assembled MessagePack of docs/PROTOCOL.md section 7")
    func lookupFrameMatchesDocsExample() throws {
        let message = GatewayMessage(id: 7, .lookup(Lookup(function: FunctionVersion(function: "f(x:)", version: "v1"), key: Self.keyA)))
        let payload: [UInt8] =
            [0x95]  // fixarray, 5 elements
            + [0x03]  // positive fixint 3: lookup
            + [0x07]  // positive fixint 7: id
            + [0xa5, 0x66, 0x28, 0x78, 0x3a, 0x29]  // fixstr "f(x:)"
            + [0xa2, 0x76, 0x31]  // fixstr "v1"
            + [0xc4, 0x20] + [UInt8](repeating: 0xab, count: 32)  // bin8, 32 bytes
        #expect(payload.count == 46)
        let expected: [UInt8] = [0x00, 0x00, 0x00, 0x2e] + payload
        let encoded = try message.encodedFrame()
        #expect(Array(encoded.readableBytesView) == expected, "got \(hex(encoded.readableBytesView))")
        #expect(try GatewayMessage(payload: buffer(payload)) == message)
    }

    @Test("lookup frame with a uint16 id and a str8 function matches hand-assembled bytes")
    func lookupFrameWithWiderHeaders() throws {
        let function = String(repeating: "x", count: 40)
        let version = String(repeating: "0", count: 64)
        let key = Self.keyB
        let message = GatewayMessage(id: 300, .lookup(Lookup(function: FunctionVersion(function: function, version: version), key: key)))
        let payload: [UInt8] =
            [0x95, 0x03]
            + [0xcd, 0x01, 0x2c]  // uint16 300
            + [0xd9, 0x28] + [UInt8](repeating: 0x78, count: 40)  // str8, 40 bytes
            + [0xd9, 0x40] + [UInt8](repeating: 0x30, count: 64)  // str8, 64 bytes
            + [0xc4, 0x20] + (0..<32).map { UInt8($0 * 7) }  // bin8, 32 bytes
        let expected = frame(payload)
        #expect(Array(try message.encodedFrame().readableBytesView) == expected)
    }

    @Test("hit reply frame matches the hand-assembled bytes of docs/PROTOCOL.md section 7")
    func hitReplyMatchesDocsExample() throws {
        let message = GatewayMessage(id: 7, .lookupReply(.hit(ByteBuffer(bytes: [0x01, 0x02, 0x03]))))
        let expected: [UInt8] = [0x00, 0x00, 0x00, 0x0a, 0x94, 0xcc, 0x83, 0x07, 0x00, 0xc4, 0x03, 0x01, 0x02, 0x03]
        #expect(Array(try message.encodedFrame().readableBytesView) == expected)
    }

    @Test("a decoded value is a slice of the payload, byte for byte")
    func decodedValueIsExact() throws {
        let value = ByteBuffer(bytes: (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        let original = GatewayMessage(id: 1, .store(Store(function: Self.function, key: Self.keyA, ttlMilliseconds: 5, computeMicroseconds: 6, value: value)))
        var stream = try original.encodedFrame()
        let payload = try #require(try FrameDecoder().readPayload(from: &stream))
        guard case .store(let store) = try GatewayMessage(payload: payload).body else {
            Issue.record("not a store")
            return
        }
        #expect(Array(store.value.readableBytesView) == Array(value.readableBytesView))
    }

    @Test("fields appended by a later minor version are ignored")
    func extraFieldsIgnored() throws {
        // [2, 5, "future", [1, 2]]: a ping with two extra elements.
        let decoded = try message(payload: [0x94, 0x02, 0x05, 0xa6, 0x66, 0x75, 0x74, 0x75, 0x72, 0x65, 0x92, 0x01, 0x02])
        #expect(decoded == GatewayMessage(id: 5, .ping))
    }

    @Test("stampede fields: appended only when set, so old peers see the original bytes")
    func stampedeFieldsAppendedOnlyWhenSet() throws {
        // A hello without holdMilliseconds is the original 5-element array.
        let plain = try GatewayMessage(id: 1, .hello(Hello(clientName: "a", pid: 2))).encodedFrame()
        #expect(plain.getInteger(at: plain.readerIndex + 4, as: UInt8.self) == 0x95)
        let held = try GatewayMessage(id: 1, .hello(Hello(clientName: "a", pid: 2, holdMilliseconds: 5))).encodedFrame()
        #expect(held.getInteger(at: held.readerIndex + 4, as: UInt8.self) == 0x96)
        // [3, 7, "f", "v", key, 0x2a]: a held lookup.
        let lookup: [UInt8] = [0x96, 0x03, 0x07, 0xa1, 0x66, 0xa1, 0x76, 0xc4, 0x20] + [UInt8](repeating: 0xab, count: 32) + [0x2a]
        #expect(try message(payload: lookup) == GatewayMessage(id: 7, .lookup(Lookup(function: FunctionVersion(function: "f", version: "v"), key: Self.keyA, holdMilliseconds: 42))))
        // nil there is a plain lookup; anything else is an invalid field.
        var withNil = lookup
        withNil[withNil.count - 1] = 0xc0
        #expect(try message(payload: withNil) == GatewayMessage(id: 7, .lookup(Lookup(function: FunctionVersion(function: "f", version: "v"), key: Self.keyA))))
        var withString = lookup
        withString[withString.count - 1] = 0xa0
        #expect(throws: GatewayError.self) { try message(payload: withString) }
        // Status 3 is read by the hand-written reader too.
        let wait = ByteBuffer(bytes: [0x94, 0xcc, 0x83, 0x07, 0x03, 0xc0])
        #expect(LookupFrames.lookupReply(wait) == GatewayMessage(id: 7, .lookupReply(.wait)))
    }

    @Test("early refresh: the lookup's refresh field and status 4")
    func refreshFieldAndStatus() throws {
        // [3, 7, "f", "v", key, 0, true]: a lookup whose caller can refresh.
        let lookup: [UInt8] = [0x97, 0x03, 0x07, 0xa1, 0x66, 0xa1, 0x76, 0xc4, 0x20] + [UInt8](repeating: 0xab, count: 32) + [0x00, 0xc3]
        let function = FunctionVersion(function: "f", version: "v")
        #expect(try message(payload: lookup) == GatewayMessage(id: 7, .lookup(Lookup(function: function, key: Self.keyA, refresh: true))))
        // It is what the codec writes, and what the hand-written writer writes.
        let encoded = try GatewayMessage(id: 7, .lookup(Lookup(function: function, key: Self.keyA, refresh: true))).encodedFrame()
        #expect(Array(encoded.readableBytesView.dropFirst(4)) == lookup)
        var fast = ByteBuffer()
        LookupFrames.appendLookup(id: 7, fields: LookupFrames.fields(of: function), key: Self.keyA, refresh: true, to: &fast)
        #expect(fast == encoded)
        // false or nil there is a plain lookup; anything else is an invalid field.
        var withFalse = lookup
        withFalse[withFalse.count - 1] = 0xc2
        #expect(try message(payload: withFalse) == GatewayMessage(id: 7, .lookup(Lookup(function: function, key: Self.keyA))))
        var withNil = lookup
        withNil[withNil.count - 1] = 0xc0
        #expect(try message(payload: withNil) == GatewayMessage(id: 7, .lookup(Lookup(function: function, key: Self.keyA))))
        var withNumber = lookup
        withNumber[withNumber.count - 1] = 0x01
        #expect(throws: GatewayError.self) { try message(payload: withNumber) }
        // A plain lookup is the original 5-element array, and the hand-written
        // request reader leaves a refresh lookup to the codec.
        let plain = try GatewayMessage(id: 7, .lookup(Lookup(function: function, key: Self.keyA))).encodedFrame()
        #expect(plain.getInteger(at: plain.readerIndex + 4, as: UInt8.self) == 0x95)
        #expect(LookupFrames.lookupRequest(ByteBuffer(bytes: lookup)) == nil)
        // Status 4 carries the value; both readers read it, and the hand-written
        // writer writes what the codec does.
        let reply: [UInt8] = [0x94, 0xcc, 0x83, 0x07, 0x04, 0xc4, 0x03, 0x01, 0x02, 0x03]
        let refresh = GatewayMessage(id: 7, .lookupReply(.refresh(ByteBuffer(bytes: [1, 2, 3]))))
        #expect(try message(payload: reply) == refresh)
        #expect(LookupFrames.lookupReply(ByteBuffer(bytes: reply)) == refresh)
        var hit = ByteBuffer()
        #expect(LookupFrames.appendHit(id: 7, value: ByteBuffer(bytes: [1, 2, 3]), refresh: true, to: &hit))
        #expect(hit == (try refresh.encodedFrame()))
        #expect(LookupReply.refresh(ByteBuffer()).status == 4)
        // Status 5 is not defined.
        var unknown = reply
        unknown[4] = 0x05
        #expect(throws: GatewayError.self) { try message(payload: unknown) }
    }

    @Test("integer fields are accepted in every width")
    func nonShortestIntegersAccepted() throws {
        // [cf 00..02, cd 00 09] = ping with type as uint64 and id as uint16.
        let decoded = try message(payload: [0x92, 0xcf, 0, 0, 0, 0, 0, 0, 0, 0x02, 0xcd, 0x00, 0x09])
        #expect(decoded == GatewayMessage(id: 9, .ping))
    }
}
