import GatewayProtocol
import NIOCore
import NIOEmbedded
import Testing

/// Bad input gets a typed error with the right code: never a crash, never an allocation
/// sized by what the input claims rather than by what it holds.
@Suite("Bad input")
struct BadInputTests {
    static let key32 = [UInt8](repeating: 0x11, count: 32)

    /// `[3, 1, "f", "v", bin(key)]` with the given function field bytes and key bytes.
    static func lookupPayload(function: [UInt8] = [0xa1, 0x66], key: [UInt8] = key32) -> [UInt8] {
        [0x95, 0x03, 0x01] + function + [0xa1, 0x76, 0xc4, UInt8(key.count)] + key
    }

    /// `[4, 1, "f", "v", bin(key), ttl, 0, bin(value)]` with the given ttl bytes.
    static func storePayload(ttl: [UInt8]) -> [UInt8] {
        [0x98, 0x04, 0x01, 0xa1, 0x66, 0xa1, 0x76, 0xc4, 0x20] + key32 + ttl + [0x00, 0xc4, 0x01, 0x2a]
    }

    // MARK: Framing

    @Test("a stream that ends in the middle of a frame throws truncatedFrame")
    func truncatedFrame() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        let whole = frame([0x92, 0x02, 0x01, 0xc0, 0xc0, 0xc0])
        try channel.writeInbound(buffer(Array(whole[..<5])))
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        expectGatewayError(.truncatedFrame) { try channel.finish() }
    }

    @Test("a stream that ends inside the length prefix throws truncatedFrame")
    func truncatedPrefix() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        // One complete frame, then two bytes of the next prefix.
        try channel.writeInbound(buffer(frame([0xc0]) + [0x00, 0x00]))
        let first = try #require(try channel.readInbound(as: ByteBuffer.self))
        #expect(Array(first.readableBytesView) == [0xc0])
        expectGatewayError(.truncatedFrame) { try channel.finish() }
    }

    @Test("a length prefix above the limit throws frameTooLarge as soon as its 4 bytes arrive")
    func prefixAboveLimit() throws {
        let limit = 1024
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: limit)))
        // Three bytes: not yet a length, nothing happens.
        try channel.writeInbound(buffer([0x00, 0x00, 0x04]))
        // The fourth byte completes 0x00000401 = limit + 1; no body byte has been sent.
        expectGatewayError(.frameTooLarge) { try channel.writeInbound(buffer([0x01])) }
        #expect(try channel.readInbound(as: ByteBuffer.self) == nil)
        _ = try? channel.finish()

        // The same through readPayload: 4 bytes are enough to refuse, and nothing is consumed.
        var prefixOnly = buffer([0x00, 0x00, 0x04, 0x01])
        expectGatewayError(.frameTooLarge) { try FrameDecoder(maxFrameSize: limit).readPayload(from: &prefixOnly) }
        // At the limit, the decoder waits for the body instead.
        var atLimit = buffer([0x00, 0x00, 0x04, 0x00])
        #expect(try FrameDecoder(maxFrameSize: limit).readPayload(from: &atLimit) == nil)
    }

    @Test("a length prefix of 0xFFFFFFFF (4 GiB) throws frameTooLarge without waiting for the body")
    func prefixOf4GiB() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder()))
        expectGatewayError(.frameTooLarge) { try channel.writeInbound(buffer([0xff, 0xff, 0xff, 0xff])) }
        _ = try? channel.finish()
        var prefixOnly = buffer([0xff, 0xff, 0xff, 0xff])
        expectGatewayError(.frameTooLarge) { try FrameDecoder().readPayload(from: &prefixOnly) }
    }

    // MARK: Invalid MessagePack

    @Test("an empty payload is malformed")
    func emptyPayload() throws {
        expectGatewayError(.malformedMessage) { try message(payload: []) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode(Int.self, from: [UInt8]()) }
    }

    @Test("the reserved byte 0xc1 is malformed")
    func reservedByte() throws {
        expectGatewayError(.malformedMessage) { try message(payload: [0xc1]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x93, 0x02, 0x01, 0xc1]) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode(Int?.self, from: [0xc1]) }
    }

    @Test("bytes after the MessagePack value are malformed")
    func trailingBytes() throws {
        #expect(try message(payload: [0x92, 0x02, 0x01]) == GatewayMessage(id: 1, .ping))
        expectGatewayError(.malformedMessage) { try message(payload: [0x92, 0x02, 0x01, 0x00]) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode(Int.self, from: [0x01, 0x02]) }
    }

    @Test("a value that ends early is malformed")
    func valueEndsEarly() throws {
        expectGatewayError(.malformedMessage) { try message(payload: [0x93, 0x02, 0x01]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x95, 0x03, 0x01, 0xa5, 0x66]) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode(UInt32.self, from: [0xce, 0x00, 0x01]) }
    }

    @Test("an array header claiming 2^32-1 elements in a 5-byte payload is malformed, not allocated")
    func hugeArrayHeader() throws {
        // Were msgpack-c to see it, it would try to allocate (2^32-1) × 24 bytes and fail with
        // NOMEM (.libraryFailure); .malformedMessage shows the size was refused up front.
        let payload: [UInt8] = [0xdd, 0xff, 0xff, 0xff, 0xff]
        expectGatewayError(.malformedMessage) { try message(payload: payload) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode([Int].self, from: payload) }
        #expect(GatewayMessage.requestID(inPayload: buffer(payload)) == nil)
    }

    @Test("a map header claiming 2^32-1 entries is malformed, not allocated")
    func hugeMapHeader() throws {
        let payload: [UInt8] = [0xdf, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]
        expectGatewayError(.malformedMessage) { try message(payload: payload) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode([Int: Int].self, from: payload) }
    }

    @Test("a str32 or bin32 header claiming 4 GiB is malformed")
    func hugeStringHeader() throws {
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode(String.self, from: [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61]) }
        expectGatewayError(.malformedMessage) { try MessagePackDecoder().decode([UInt8].self, from: [0xc6, 0xff, 0xff, 0xff, 0xff, 0x61]) }
        expectGatewayError(.malformedMessage) { try message(payload: Self.lookupPayload(function: [0xdb, 0xff, 0xff, 0xff, 0xff])) }
    }

    @Test("a payload that is not an array, or whose type or id is not a uint, is malformed")
    func notAMessageArray() throws {
        expectGatewayError(.malformedMessage) { try message(payload: [0x02]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x91, 0x02]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x92, 0xff, 0x01]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x92, 0x02, 0xa1, 0x31]) }
        expectGatewayError(.malformedMessage) { try message(payload: [0x81, 0x02, 0x01]) }
    }

    // MARK: Wrong field types and ranges

    @Test("a lookup whose function is an int is invalidField")
    func lookupFunctionIsInt() throws {
        #expect(try message(payload: Self.lookupPayload()).body.type == .lookup)
        expectGatewayError(.invalidField) { try message(payload: Self.lookupPayload(function: [0x05])) }
    }

    @Test("a lookup whose key has 31 bytes is invalidField")
    func keyOf31Bytes() throws {
        expectGatewayError(.invalidField) { try message(payload: Self.lookupPayload(key: Array(Self.key32.dropLast()))) }
        expectGatewayError(.invalidField) { try message(payload: Self.lookupPayload(key: Self.key32 + [0])) }
    }

    @Test("a lookup whose key is a str is invalidField")
    func keyIsString() throws {
        let payload: [UInt8] = [0x95, 0x03, 0x01, 0xa1, 0x66, 0xa1, 0x76, 0xd9, 0x20] + Self.key32
        expectGatewayError(.invalidField) { try message(payload: payload) }
    }

    @Test("a lookup with an empty function or a missing key is invalidField")
    func lookupEmptyOrMissing() throws {
        expectGatewayError(.invalidField) { try message(payload: Self.lookupPayload(function: [0xa0])) }
        expectGatewayError(.invalidField) { try message(payload: [0x94, 0x03, 0x01, 0xa1, 0x66, 0xa1, 0x76]) }
    }

    @Test("a function name longer than 512 bytes is invalidField")
    func functionTooLong() throws {
        let ok = [0xda, 0x02, 0x00] + [UInt8](repeating: 0x66, count: 512)
        #expect(try message(payload: Self.lookupPayload(function: ok)).body.type == .lookup)
        let long = [0xda, 0x02, 0x01] + [UInt8](repeating: 0x66, count: 513)
        expectGatewayError(.invalidField) { try message(payload: Self.lookupPayload(function: long)) }
    }

    @Test("a store with ttl 0 is invalidField")
    func storeTTLZero() throws {
        #expect(try message(payload: Self.storePayload(ttl: [0x01])).body.type == .store)
        expectGatewayError(.invalidField) { try message(payload: Self.storePayload(ttl: [0x00])) }
    }

    @Test("a store with a ttl above 365 days is invalidField")
    func storeTTLTooLong() throws {
        // 31,536,000,000 = 0x00000007_57b12c00 is the maximum; one more is refused.
        #expect(try message(payload: Self.storePayload(ttl: [0xcf, 0, 0, 0, 0x07, 0x57, 0xb1, 0x2c, 0x00])).body.type == .store)
        expectGatewayError(.invalidField) { try message(payload: Self.storePayload(ttl: [0xcf, 0, 0, 0, 0x07, 0x57, 0xb1, 0x2c, 0x01])) }
    }

    @Test("an invalidate with a key but no version means that key in every version")
    func invalidateKeyWithoutVersion() throws {
        let payload: [UInt8] = [0x95, 0x06, 0x01, 0xa1, 0x66, 0xc0, 0xc4, 0x20] + Self.key32
        let decoded = try message(payload: payload)
        guard case .invalidate(let invalidate) = decoded.body else {
            Issue.record("decoded as \(decoded.body.type)")
            return
        }
        #expect(invalidate.function == "f" && invalidate.version == nil && invalidate.key?.digest.hexString.count == 64)
        // A key of the wrong size is still refused.
        expectGatewayError(.invalidField) { try message(payload: [0x95, 0x06, 0x01, 0xa1, 0x66, 0xc0, 0xc4, 0x1f] + Self.key32.dropLast()) }
    }

    @Test("a functions reply whose version lacks its leases is invalidField, naming the field")
    func functionsReplyMalformed() throws {
        // [136, 1, [["f", 0, 0, 0, [["v", 1, 2, 3, "active"]]]]]: the version has five elements, not six.
        let payload: [UInt8] = [0x93, 0xcc, 0x88, 0x01, 0x91, 0x95, 0xa1, 0x66, 0x00, 0x00, 0x00, 0x91, 0x95, 0xa1, 0x76, 0x01, 0x02, 0x03, 0xa6] + Array("active".utf8)
        expectGatewayError(.invalidField) { try message(payload: payload) }
        // A negative hit count.
        expectGatewayError(.invalidField) { try message(payload: [0x93, 0xcc, 0x88, 0x01, 0x91, 0x95, 0xa1, 0x66, 0xff, 0x00, 0x00, 0x90]) }
    }

    @Test("a lookup reply with status 5, or status 4 without a value, is invalidField")
    func lookupReplyUnknownStatus() throws {
        expectGatewayError(.invalidField) { try message(payload: [0x94, 0xcc, 0x83, 0x01, 0x05, 0xc0]) }
        expectGatewayError(.invalidField) { try message(payload: [0x94, 0xcc, 0x83, 0x01, 0x04, 0xc0]) }
    }

    @Test("a stats reply with a negative value is invalidField")
    func statsNegativeValue() throws {
        expectGatewayError(.invalidField) { try message(payload: [0x93, 0xcc, 0x87, 0x01, 0x81, 0xa1, 0x68, 0xff]) }
    }

    @Test("300 decoded into a UInt8 is valueOutOfRange")
    func valueOutOfRange() throws {
        let bytes: [UInt8] = [0xcd, 0x01, 0x2c]
        expectGatewayError(.valueOutOfRange) { try MessagePackDecoder().decode(UInt8.self, from: bytes) }
        expectGatewayError(.valueOutOfRange) { try MessagePackDecoder().decode([UInt8].self, from: [0x91] + bytes) }
        expectGatewayError(.valueOutOfRange) { try MessagePackDecoder().decode(UInt.self, from: [0xff]) }
        expectGatewayError(.valueOutOfRange) { try MessagePackDecoder().decode(Int64.self, from: [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]) }
        expectGatewayError(.valueOutOfRange) { try MessagePackDecoder().decode(Float.self, from: [0xcb, 0x3f, 0xb9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a]) }
    }

    @Test("a value of the wrong MessagePack type is typeMismatch")
    func typeMismatch() throws {
        expectGatewayError(.typeMismatch) { try MessagePackDecoder().decode(Int.self, from: [0xa1, 0x31]) }
        expectGatewayError(.typeMismatch) { try MessagePackDecoder().decode(String.self, from: [0x01]) }
        expectGatewayError(.typeMismatch) { try MessagePackDecoder().decode([Int].self, from: [0x80]) }
        expectGatewayError(.typeMismatch) { try MessagePackDecoder().decode([String: Int].self, from: [0x90]) }
    }

    @Test("a struct field that is absent is missingValue")
    func missingValue() throws {
        struct Pair: Decodable {
            var a: Int
            var b: Int
        }
        expectGatewayError(.missingValue) { try MessagePackDecoder().decode(Pair.self, from: [0x81, 0xa1, 0x61, 0x01]) }
        expectGatewayError(.missingValue) { try MessagePackDecoder().decode(TwoInts.self, from: [0x91, 0x01]) }
    }

    // MARK: Unknown message types

    @Test("message type 99 is unknownMessageType and its id can still be recovered")
    func unknownType() throws {
        let payload: [UInt8] = [0x93, 0x63, 0xcd, 0x12, 0x34, 0xa1, 0x78]
        expectGatewayError(.unknownMessageType) { try message(payload: payload) }
        #expect(GatewayMessage.requestID(inPayload: buffer(payload)) == 0x1234)
        // Also with no fields and a uint64 id.
        let bare: [UInt8] = [0x92, 0x63, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]
        expectGatewayError(.unknownMessageType) { try message(payload: bare) }
        #expect(GatewayMessage.requestID(inPayload: buffer(bare)) == UInt64.max - 1)
    }

    // MARK: Nesting

    @Test("nesting 10,000 levels deep is nestingTooDeep for GatewayMessage(payload:)")
    func deepNestingMessage() throws {
        let payload = [UInt8](repeating: 0x91, count: 10_000) + [0xc0]
        expectGatewayError(.nestingTooDeep) { try message(payload: payload) }
        #expect(GatewayMessage.requestID(inPayload: buffer(payload)) == nil)
    }

    @Test("nesting 10,000 levels deep is nestingTooDeep for MessagePackDecoder")
    func deepNestingDecoder() throws {
        let payload = [UInt8](repeating: 0x91, count: 10_000) + [0xc0]
        expectGatewayError(.nestingTooDeep) { try MessagePackDecoder().decode(Nest.self, from: payload) }
        expectGatewayError(.nestingTooDeep) { try MessagePackDecoder().decode(Int?.self, from: payload) }
        let maps = [UInt8](repeating: 0x81, count: 1) + Array([[UInt8]](repeating: [0xa0, 0x81], count: 5_000).joined()) + [0xa0, 0xc0]
        expectGatewayError(.nestingTooDeep) { try MessagePackDecoder().decode([String: Int].self, from: maps) }
    }

    @Test("depth 32 is accepted and depth 33 is nestingTooDeep, for MessagePackDecoder")
    func depthLimitDecoder() throws {
        #expect(MessagePack.maximumDepth == 32)
        let depth32 = [UInt8](repeating: 0x91, count: 32) + [0xc0]
        #expect(try MessagePackDecoder().decode(Nest.self, from: depth32) == Nest(depth: 32))
        let depth33 = [UInt8](repeating: 0x91, count: 33) + [0xc0]
        expectGatewayError(.nestingTooDeep) { try MessagePackDecoder().decode(Nest.self, from: depth33) }
    }

    @Test("depth 32 is accepted and depth 33 is nestingTooDeep, for GatewayMessage(payload:)")
    func depthLimitMessage() throws {
        // [7, 1, [[…[nil]…]]]: the message array is level 1, so 31 more arrays make 32.
        let depth32 = [0x93, 0x07, 0x01] + [UInt8](repeating: 0x91, count: 31) + [0xc0]
        #expect(try message(payload: depth32) == GatewayMessage(id: 1, .stats))
        let depth33 = [0x93, 0x07, 0x01] + [UInt8](repeating: 0x91, count: 32) + [0xc0]
        expectGatewayError(.nestingTooDeep) { try message(payload: depth33) }
    }

    @Test("MessagePackEncoder writes depth 32 and refuses a 33- or 40-deep value with nestingTooDeep")
    func depthLimitEncoder() throws {
        #expect(try MessagePackEncoder().encode(Nest(depth: 32)) == [UInt8](repeating: 0x91, count: 32) + [0xc0])
        expectGatewayError(.nestingTooDeep) { try MessagePackEncoder().encode(Nest(depth: 33)) }
        expectGatewayError(.nestingTooDeep) { try MessagePackEncoder().encode(Nest(depth: 40)) }
        expectGatewayError(.nestingTooDeep) { try MessagePackEncoder(canonical: true).encode(Nest(depth: 40)) }
        expectGatewayError(.nestingTooDeep) { try CacheKey(hashing: Nest(depth: 40)) }
    }

    @Test("an empty array inside 32 non-empty ones: decoded, or refused as nestingTooDeep")
    func emptyContainerAtDepth33() throws {
        // docs/PROTOCOL.md counts only non-empty containers towards the limit of 32, so
        // 32 one-element arrays around an empty array are within it. Either way the
        // answer must be the value or .nestingTooDeep (wire code malformedFrame), not
        // some other error.
        let bytes = [UInt8](repeating: 0x91, count: 32) + [0x90]
        do {
            let decoded = try MessagePackDecoder().decode(NestAroundEmpty.self, from: bytes)
            #expect(decoded == NestAroundEmpty(depth: 32))
        } catch let error as GatewayError {
            #expect(error.code == .nestingTooDeep, "\(error)")
        }
        let payload = [0x93, 0x07, 0x01] + [UInt8](repeating: 0x91, count: 31) + [0x90]
        do {
            #expect(try message(payload: payload) == GatewayMessage(id: 1, .stats))
        } catch let error as GatewayError {
            #expect(error.code == .nestingTooDeep, "\(error)")
        }
    }

    @Test("whatever MessagePackEncoder writes, MessagePackDecoder reads")
    func encoderOutputIsDecodable() throws {
        for depth in [31, 32, 33] {
            let value = NestAroundEmpty(depth: depth)
            let bytes: [UInt8]
            do {
                bytes = try MessagePackEncoder().encode(value)
            } catch let error as GatewayError {
                #expect(error.code == .nestingTooDeep, "depth \(depth): \(error)")
                continue
            }
            do {
                #expect(try MessagePackDecoder().decode(NestAroundEmpty.self, from: bytes) == value)
            } catch {
                Issue.record("depth \(depth): the encoder wrote \(hex(bytes)), which the decoder refuses: \(error)")
            }
        }
    }

    // MARK: UTF-8

    @Test("a lookup whose function is a str with bytes ff fe is invalidUTF8")
    func lookupFunctionNotUTF8() throws {
        expectGatewayError(.invalidUTF8) { try message(payload: Self.lookupPayload(function: [0xa2, 0xff, 0xfe])) }
        // A truncated multi-byte sequence and an encoded surrogate are not UTF-8 either.
        expectGatewayError(.invalidUTF8) { try message(payload: Self.lookupPayload(function: [0xa2, 0x61, 0xc3])) }
        expectGatewayError(.invalidUTF8) { try message(payload: Self.lookupPayload(function: [0xa3, 0xed, 0xa0, 0x80])) }
    }

    @Test("MessagePackDecoder decoding a String from bytes ff fe is invalidUTF8")
    func decoderStringNotUTF8() throws {
        expectGatewayError(.invalidUTF8) { try MessagePackDecoder().decode(String.self, from: [0xa2, 0xff, 0xfe]) }
        expectGatewayError(.invalidUTF8) { try MessagePackDecoder().decode([String].self, from: [0x91, 0xa2, 0xff, 0xfe]) }
        struct Named: Decodable {
            var name: String
        }
        expectGatewayError(.invalidUTF8) { try MessagePackDecoder().decode(Named.self, from: [0x81, 0xa4, 0x6e, 0x61, 0x6d, 0x65, 0xa2, 0xff, 0xfe]) }
    }
}

private struct TwoInts: Decodable {
    var first: Int
    var second: Int

    init(first: Int, second: Int) {
        self.first = first
        self.second = second
    }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        self.first = try container.decode(Int.self)
        self.second = try container.decode(Int.self)
    }
}
