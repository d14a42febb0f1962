import GatewayProtocol
import NIOCore
import Testing

/// The hand-written lookup frames are byte for byte what `MessageCodec`
/// writes, and read what it reads; what they do not read is left to it.
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

    static let functions = [
        FunctionVersion(function: "f", version: "v"),
        FunctionVersion(function: "Billing.InvoiceService.total(for:currency:)", version: String(repeating: "ab", count: 32)),
        FunctionVersion(function: String(repeating: "é", count: 256), version: String(repeating: "v", count: 128)),
    ]

    @Test(arguments: ids)
    func aLookupRequestReadsAsTheCodecReadsIt(id: UInt64) throws {
        let decoder = FrameDecoder()
        let codec = try MessageCodec()
        for function in Self.functions {
            let message = GatewayMessage(id: id, .lookup(Lookup(function: function, key: try CacheKey(hashing: function.function))))
            var frame = try message.encodedFrame()
            let payload = try #require(try decoder.readPayload(from: &frame))
            let fast = try #require(LookupFrames.lookupRequest(payload))
            #expect(fast == message)
            #expect(fast == (try codec.decodeRequest(payload: payload)))
        }
    }

    @Test(arguments: ids)
    func aHitFrameIsWhatTheCodecWrites(id: UInt64) throws {
        for size in [0, 1, 255, 256, 65_535, 65_536] {
            let value = ByteBuffer(repeating: UInt8(truncatingIfNeeded: size), count: size)
            var fast = ByteBuffer(string: "before")
            #expect(LookupFrames.appendHit(id: id, value: value, to: &fast))
            var expected = ByteBuffer(string: "before")
            try GatewayMessage(id: id, .lookupReply(.hit(value))).encodeFrame(into: &expected)
            #expect(fast == expected)
        }
    }

    /// Whatever the codec would refuse, or read as something else, the fast
    /// reader leaves to it (nil): it never decides an error itself.
    @Test func unusualLookupsAreLeftToTheCodec() throws {
        let key = [UInt8](repeating: 9, count: 32)
        func lookup(id: [UInt8] = [0x07], function: [UInt8] = [0xa1, 0x66], version: [UInt8] = [0xa1, 0x76], key keyField: [UInt8]? = nil, extra: [UInt8] = []) -> ByteBuffer {
            ByteBuffer(bytes: [extra.isEmpty ? 0x95 : 0x96, 0x03] + id + function + version + (keyField ?? [0xc4, 0x20] + key) + extra)
        }
        // The usual shape is read.
        #expect(LookupFrames.lookupRequest(lookup()) != nil)
        let unusual: [(String, ByteBuffer)] = [
            ("an empty function", lookup(function: [0xa0])),
            ("an empty version", lookup(version: [0xa0])),
            ("a function of 513 bytes", lookup(function: [0xda, 0x02, 0x01] + [UInt8](repeating: 0x61, count: 513))),
            ("a version of 129 bytes", lookup(version: [0xd9, 129] + [UInt8](repeating: 0x61, count: 129))),
            ("a function that is not UTF-8", lookup(function: [0xa2, 0xc3, 0x28])),
            ("a key of 31 bytes", lookup(key: [0xc4, 0x1f] + [UInt8](repeating: 1, count: 31))),
            ("a key as a string", lookup(key: [0xd9, 0x20] + key)),
            ("a negative id", lookup(id: [0xff])),
            ("an id as int 8", lookup(id: [0xd0, 0x07])),
            ("a field appended", lookup(extra: [0xc0])),
            ("a reply type", ByteBuffer(bytes: [0x95, 0xcc, 0x83, 0x07, 0xa1, 0x66, 0xa1, 0x76, 0xc4, 0x20] + key)),
            ("truncated", ByteBuffer(bytes: [0x95, 0x03, 0x07, 0xa1, 0x66, 0xa1])),
            ("empty", ByteBuffer()),
        ]
        let codec = try MessageCodec()
        for (what, payload) in unusual {
            #expect(LookupFrames.lookupRequest(payload) == nil, "\(what)")
        }
        // The codec decides these; for example the short key is its error.
        let error = #expect(throws: GatewayError.self) { try codec.decodeRequest(payload: unusual[5].1) }
        #expect(error?.code == .invalidField)
        // An id as int 8 is still a lookup, for the codec.
        #expect(try codec.decodeRequest(payload: unusual[8].1).id == 7)
    }

    /// A connection's memo of its last function: a lookup naming it again
    /// reuses it, another function replaces it, and whatever is not read
    /// leaves it alone. What is read is always what the codec reads.
    @Test func theMemoFollowsTheFunctionsLookedUp() throws {
        let codec = try MessageCodec()
        var memo = LookupFunctionMemo()
        #expect(memo.function == nil)
        func read(_ message: GatewayMessage) throws -> (id: UInt64, key: CacheKey)? {
            let payload = try Self.payload(of: message)
            let read = LookupFrames.lookupRequest(payload, memo: &memo)
            if let read, let function = memo.function {
                #expect(GatewayMessage(id: read.id, .lookup(Lookup(function: function, key: read.key))) == (try codec.decodeRequest(payload: payload)))
            }
            return read
        }
        let first = Self.functions[1]
        let second = FunctionVersion(function: first.function, version: String(repeating: "cd", count: 32))
        var generations: [UInt64] = []
        for (index, function) in [first, first, second, second, first].enumerated() {
            let key = try CacheKey(hashing: index)
            let read = try #require(try read(GatewayMessage(id: UInt64(index), .lookup(Lookup(function: function, key: key)))))
            #expect(read.id == UInt64(index))
            #expect(read.key == key)
            #expect(memo.function == function)
            generations.append(memo.generation)
        }
        // Changed on each change of function, and only then.
        #expect(generations[0] == generations[1])
        #expect(generations[2] == generations[3])
        #expect(Set([generations[0], generations[2], generations[4]]).count == 3)
        // A frame the reader leaves to the codec, even one naming the memo's
        // function (here with its key cut short), changes nothing.
        let before = memo.generation
        var short = try Self.payload(of: GatewayMessage(id: 9, .lookup(Lookup(function: first, key: try CacheKey(hashing: 9)))))
        short.moveWriterIndex(to: short.writerIndex - 1)
        #expect(LookupFrames.lookupRequest(short, memo: &memo) == nil)
        let notUTF8 = ByteBuffer(bytes: [0x95, 0x03, 0x07, 0xa2, 0xc3, 0x28, 0xa1, 0x76, 0xc4, 0x20] + [UInt8](repeating: 9, count: 32))
        #expect(LookupFrames.lookupRequest(notUTF8, memo: &memo) == nil)
        #expect(memo.generation == before)
        #expect(memo.function == first)
    }

    /// Names are read as UTF-8 exactly when they are UTF-8: well-formed text
    /// of one to four bytes per character is read, and each kind of
    /// ill-formed sequence is left to the codec, which refuses it.
    @Test func namesAreReadExactlyWhenTheyAreUTF8() throws {
        let codec = try MessageCodec()
        let wellFormed: [[UInt8]] = [Array("f".utf8), Array("é".utf8), Array("€".utf8), Array("𝄞".utf8), Array("a\u{FFFD}b".utf8), [0xef, 0xbf, 0xbd]]
        let illFormed: [[UInt8]] = [
            [0xc3], [0xc3, 0x28], [0xe2, 0x82], [0xef, 0xbf], [0xf0, 0x9d, 0x84], [0x80], [0xbf],
            [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff], [0x61, 0xfe, 0x62],
        ]
        for (name, valid) in wellFormed.map({ ($0, true) }) + illFormed.map({ ($0, false) }) {
            let payload = ByteBuffer(bytes: [0x95, 0x03, 0x07, 0xa0 | UInt8(name.count)] + name + [0xa1, 0x76, 0xc4, 0x20] + [UInt8](repeating: 9, count: 32))
            let fast = LookupFrames.lookupRequest(payload)
            #expect((fast != nil) == valid, "\(name)")
            #expect(fast.map { Array($0.lookupFunction.utf8) } == (valid ? name : nil), "\(name)")
            #expect((try? codec.decodeRequest(payload: payload)) == fast, "\(name)")
        }
    }

    static func payload(of message: GatewayMessage) throws -> ByteBuffer {
        var frame = try message.encodedFrame()
        return try #require(try FrameDecoder().readPayload(from: &frame))
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

extension GatewayMessage {
    /// The function named by a lookup, "" for anything else.
    fileprivate var lookupFunction: String {
        if case .lookup(let lookup) = self.body { return lookup.function.function }
        return ""
    }
}
