import GatewayProtocol
import GatewayTestSupport
import NIOCore
import NIOEmbedded
import NIOTestUtils
import Testing

@testable import Gateway

@Suite("RESP encoding (hiredis redisFormatCommandArgv)")
struct RedisRESPEncodingTests {
    /// hiredis's encoding, checked to be the same bytes as the gateway's own (`RESPCommandEncoder`).
    private func encode(_ command: RedisCommand) throws -> [UInt8] {
        var out = ByteBuffer()
        try hiredisFormatCommand(command.argv, into: &out)
        var own = ByteBuffer(string: "x")
        RESPCommandEncoder.append(command.argv, to: &own)
        #expect(own.readableBytesView.dropFirst().elementsEqual(out.readableBytesView))
        return Array(out.readableBytesView)
    }

    @Test func theOwnEncoderWritesLongLengthsAsHiredisDoes() throws {
        for length in [9, 10, 99, 100, 1_024, 65_536, 1_000_001] {
            _ = try self.encode(RedisCommand("SET", arguments: [ByteBuffer(string: "k"), ByteBuffer(repeating: 0x41, count: length)]))
        }
    }

    @Test func encodesTheSpecExample() throws {
        // https://redis.io/docs/latest/develop/reference/protocol-spec/#sending-commands-to-a-redis-server
        #expect(try self.encode(RedisCommand("LLEN", "mylist")) == Array("*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n".utf8))
        #expect(
            try self.encode(RedisCommand("SET", "mykey", "myvalue"))
                == Array("*3\r\n$3\r\nSET\r\n$5\r\nmykey\r\n$7\r\nmyvalue\r\n".utf8)
        )
        #expect(try self.encode(.ping) == Array("*1\r\n$4\r\nPING\r\n".utf8))
    }

    @Test func encodesBinaryAndEmptyArgumentsAsBulkStrings() throws {
        let binary: [UInt8] = [0x00, 0x0D, 0x0A, 0xFF, 0x24, 0x2A]
        let bytes = try self.encode(RedisCommand("SET", bytes: [Array("k".utf8), binary, []]))
        let expected = Array("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$6\r\n".utf8) + binary + Array("\r\n$0\r\n\r\n".utf8)
        #expect(bytes == expected)
    }

    @Test func countsUTF8BytesNotCharacters() throws {
        #expect(try self.encode(RedisCommand("ECHO", "héllo")) == Array("*2\r\n$4\r\nECHO\r\n$6\r\nhéllo\r\n".utf8))
    }

    @Test func encodesReadableBytesOfSlices() throws {
        var buffer = ByteBuffer(string: "xxkeyyy")
        buffer.moveReaderIndex(forwardBy: 2)
        let key = buffer.getSlice(at: buffer.readerIndex, length: 3)!
        #expect(try self.encode(.get(key)) == Array("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n".utf8))
    }

    @Test func setWithExpirationUsesWholeMilliseconds() throws {
        let key = ByteBuffer(string: "k")
        let value = ByteBuffer(string: "v")
        #expect(
            try self.encode(.set(key, value, expiration: .milliseconds(1500)))
                == Array("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$4\r\n1500\r\n".utf8)
        )
        #expect(RedisCommand.set(key, value, expiration: .microseconds(10)).argv.last == ByteBuffer(string: "1"))
        #expect(RedisCommand.set(key, value, expiration: .seconds(-5)).argv.last == ByteBuffer(string: "1"))
        #expect(RedisCommand.set(key, value, expiration: .seconds(Int64.max)).argv.last == ByteBuffer(string: "1000000000000000000"))
    }

    @Test func encoderHandlerWritesOneBufferPerCommand() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(RESPCommandEncoder()))
        try channel.writeOutbound(RedisCommand("GET", "a"))
        let written = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(String(buffer: written) == "*2\r\n$3\r\nGET\r\n$1\r\na\r\n")
        #expect(try channel.finish().isClean)
    }

    @Test func descriptionHidesArguments() {
        let command = RedisCommand("AUTH", "user", "secret-password")
        #expect(command.description == "AUTH (2 arguments)")
        #expect(!"\(command)".contains("secret"))
    }

    @Test func handshakeCommands() {
        let path = RedisURL.Endpoint.unixSocket(path: "/r.sock")
        func argv(_ url: RedisURL, _ name: String? = nil) -> [[String]] {
            RedisConnection.handshakeCommands(for: url, clientName: name).map { $0.argv.map { String(buffer: $0) } }
        }
        #expect(argv(RedisURL(endpoint: path)) == [["PING"]])
        #expect(argv(RedisURL(endpoint: path, password: "pw")) == [["AUTH", "pw"], ["PING"]])
        #expect(
            argv(RedisURL(endpoint: path, username: "u", password: "pw", database: 3), "gw")
                == [["AUTH", "u", "pw"], ["SELECT", "3"], ["CLIENT", "SETNAME", "gw"], ["PING"]]
        )
    }
}

@Suite("RESP decoding (hiredis redisReader)")
struct RedisRESPDecodingTests {
    private static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }

    @Test func decodesEveryReplyTypeUnderEverySplit() throws {
        let pairs: [(String, [RESPValue])] = [
            ("+OK\r\n", [.simpleString("OK")]),
            ("+\r\n", [.simpleString("")]),
            ("-ERR unknown command 'FOO'\r\n", [.error("ERR unknown command 'FOO'")]),
            ("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
             [.error("WRONGTYPE Operation against a key holding the wrong kind of value")]),
            (":0\r\n", [.integer(0)]),
            (":-1\r\n", [.integer(-1)]),
            (":9223372036854775807\r\n", [.integer(.max)]),
            (":-9223372036854775808\r\n", [.integer(.min)]),
            ("$-1\r\n", [.bulkString(nil)]),
            ("*-1\r\n", [.array(nil)]),
            ("$0\r\n\r\n", [Self.bulk("")]),
            ("$12\r\nhello\r\nworld\r\n", [Self.bulk("hello\r\nworld")]),
            ("*0\r\n", [.array([])]),
            ("*2\r\n$3\r\nfoo\r\n$3\r\nbar\r\n", [.array([Self.bulk("foo"), Self.bulk("bar")])]),
            (
                "*5\r\n:1\r\n*2\r\n$-1\r\n*-1\r\n+OK\r\n-ERR x\r\n*1\r\n*0\r\n",
                [.array([.integer(1), .array([.bulkString(nil), .array(nil)]), .simpleString("OK"), .error("ERR x"), .array([.array([])])])]
            ),
            (
                // The deepest nesting hiredis accepts: 8 arrays.
                String(repeating: "*1\r\n", count: 8) + ":7\r\n",
                [.array([.array([.array([.array([.array([.array([.array([.array([.integer(7)])])])])])])])])]
            ),
            ("+a\r\n:2\r\n$1\r\nc\r\n", [.simpleString("a"), .integer(2), Self.bulk("c")]),
        ]
        let decoder = try RESPReplyDecoder(maximumReplySize: 1 << 20)
        try ByteToMessageDecoderVerifier.verifyDecoder(stringInputOutputPairs: pairs, decoderFactory: { decoder })
    }

    @Test("bulk strings read from the inbound bytes and replies read by hiredis stay in order, under every split")
    func bulkStringsBesideOtherRepliesUnderEverySplit() throws {
        let pairs: [(String, [RESPValue])] = [
            ("$3\r\nfoo\r\n+OK\r\n$-1\r\n$2\r\nhi\r\n", [Self.bulk("foo"), .simpleString("OK"), .bulkString(nil), Self.bulk("hi")]),
            ("$-1\r\n$0\r\n\r\n:1\r\n$5\r\nhello\r\n*1\r\n$1\r\nx\r\n$1\r\ny\r\n", [
                .bulkString(nil), Self.bulk(""), .integer(1), Self.bulk("hello"), .array([Self.bulk("x")]), Self.bulk("y"),
            ]),
            ("$10\r\n0123456789\r\n$10\r\n\r\n\r\n\r\n\r\n\r\n\r\n", [Self.bulk("0123456789"), Self.bulk("\r\n\r\n\r\n\r\n\r\n")]),
        ]
        let decoder = try RESPReplyDecoder(maximumReplySize: 1 << 20)
        try ByteToMessageDecoderVerifier.verifyDecoder(stringInputOutputPairs: pairs, decoderFactory: { decoder })
    }

    @Test(
        "malformed bulk strings are left to hiredis, which refuses them, whole or split",
        arguments: ["$-5\r\n", "$abc\r\n", "$3\nfoo\r\n", "$99999999999999999999\r\n", "$1x\r\na\r\n"]
    )
    func malformedBulkStringsAreProtocolErrors(input: String) throws {
        for split in [input.utf8.count, 1] {
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(try RESPReplyDecoder(maximumReplySize: 1 << 20)))
            var thrown: (any Error)?
            var rest = Substring(input)
            while !rest.isEmpty, thrown == nil {
                do {
                    try channel.writeInbound(ByteBuffer(string: String(rest.prefix(split))))
                } catch {
                    thrown = error
                }
                rest = rest.dropFirst(split)
            }
            #expect((thrown as? GatewayError)?.code == .backendError, "\(input.debugDescription) in pieces of \(split)")
            _ = try? channel.finish()
        }
    }

    @Test func aBulkStringOverTheLimitIsRefusedFromItsHeader() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(try RESPReplyDecoder(maximumReplySize: 100)))
        #expect(try channel.writeInbound(ByteBuffer(string: "$10\r\n0123456789\r\n")).isFull)
        #expect(try channel.readInbound(as: RESPValue.self) == Self.bulk("0123456789"))
        let error = try #require(throws: GatewayError.self) {
            try channel.writeInbound(ByteBuffer(string: "$200\r\n"))
        }
        #expect(error.code == .backendError)
        #expect(error.message.contains("larger than"))
        _ = try? channel.finish()
    }

    @Test func decodesBinaryBulkStringsUnderEverySplit() throws {
        let allBytes = ByteBuffer(bytes: (0...255).map { UInt8($0) })
        var input = ByteBuffer(string: "*2\r\n$256\r\n")
        input.writeImmutableBuffer(allBytes)
        input.writeString("\r\n$3\r\n\r\n\0\r\n")
        let expected: RESPValue = .array([.bulkString(allBytes), .bulkString(ByteBuffer(bytes: [13, 10, 0]))])
        let decoder = try RESPReplyDecoder(maximumReplySize: 1 << 20)
        try ByteToMessageDecoderVerifier.verifyDecoder(inputOutputPairs: [(input, [expected])], decoderFactory: { decoder })
    }

    @Test func nullBulkStringAndNullArrayStayDistinct() throws {
        let reader = try HiredisReader(maximumReplySize: 1024)
        try reader.feed(ByteBuffer(string: "$-1\r\n*-1\r\n*2\r\n*-1\r\n$-1\r\n"))
        let allocator = ByteBufferAllocator()
        #expect(try reader.nextReply(allocator: allocator) == .bulkString(nil))
        #expect(try reader.nextReply(allocator: allocator) == .array(nil))
        #expect(try reader.nextReply(allocator: allocator) == .array([.array(nil), .bulkString(nil)]))
        #expect(try reader.nextReply(allocator: allocator) == nil)
    }

    @Test(
        "invalid replies are protocol errors, not crashes",
        arguments: [
            "?x\r\n",
            ":abc\r\n",
            ":99999999999999999999\r\n",
            "$-5\r\n",
            "$abc\r\n",
            "$99999999999999999999\r\n",
            "*-2\r\n",
            "*2147483648\r\n",
            "*4294967297\r\n:1\r\n",
            String(repeating: "*1\r\n", count: 9) + ":1\r\n",  // hiredis nests at most 8 arrays
            "*1\r\n?\r\n",
        ]
    )
    func protocolErrors(input: String) throws {
        let reader = try HiredisReader(maximumReplySize: 1 << 20)
        let error = try #require(throws: GatewayError.self) {
            try reader.feed(ByteBuffer(string: input))
            _ = try reader.nextReply(allocator: ByteBufferAllocator())
        }
        #expect(error.code == .backendError)
        // The reader stays failed: the stream cannot be resynchronised.
        #expect(throws: GatewayError.self) {
            try reader.feed(ByteBuffer(string: "+OK\r\n"))
            _ = try reader.nextReply(allocator: ByteBufferAllocator())
        }
    }

    @Test func decoderErrorsReachThePipeline() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(try RESPReplyDecoder(maximumReplySize: 1024)))
        #expect(throws: GatewayError(.backendError, "")) {
            try channel.writeInbound(ByteBuffer(string: "+OK\r\n!bad\r\n"))
        }
        #expect(try channel.readInbound(as: RESPValue.self) == .simpleString("OK"))
        _ = try? channel.finish()
    }

    @Test func oversizedRepliesAreRefused() throws {
        let reader = try HiredisReader(maximumReplySize: 100)
        try reader.feed(ByteBuffer(string: "$9223372036854775807\r\n"))
        #expect(try reader.nextReply(allocator: ByteBufferAllocator()) == nil)
        try reader.feed(ByteBuffer(repeating: UInt8(ascii: "x"), count: 100))
        let error = try #require(throws: GatewayError.self) {
            _ = try reader.nextReply(allocator: ByteBufferAllocator())
        }
        #expect(error.code == .backendError)
        #expect(error.message.contains("larger than"))
    }

    @Test func aCompleteReplyOverTheLimitIsRefusedWhenItArrivesInOneRead() throws {
        let reader = try HiredisReader(maximumReplySize: 10)
        try reader.feed(ByteBuffer(string: "*2\r\n$5\r\nhello\r\n$5\r\nworld\r\n"))
        let error = try #require(throws: GatewayError.self) {
            _ = try reader.nextReply(allocator: ByteBufferAllocator())
        }
        #expect(error.message.contains("larger than"))
    }

    @Test func afterRepliesReadByHiredisBulkStringsAreSlicesOfTheInboundBytesAgain() throws {
        let decoder = try RESPReplyDecoder(maximumReplySize: 1 << 20)
        for reply in ["+PONG\r\n", ":1\r\n", "*1\r\n$1\r\nx\r\n", "$2\r\nab"] {
            var bytes = ByteBuffer(string: reply)
            try decoder.decode(&bytes, allocator: ByteBufferAllocator()) { _ in true }
        }
        var rest = ByteBuffer(string: "\r\n")
        try decoder.decode(&rest, allocator: ByteBufferAllocator()) { _ in true }
        // The reader has handed out every reply: the next bulk string is read
        // in place, as a slice of the bytes that brought it.
        var input = ByteBuffer(string: "$3\r\nabc\r\n")
        let inputStart = input.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
        var replies: [RESPValue] = []
        try decoder.decode(&input, allocator: ByteBufferAllocator()) { reply in
            replies.append(reply)
            return true
        }
        #expect(replies == [Self.bulk("abc")])
        guard case .bulkString(let value?) = replies.first else { return }
        #expect(value.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } == inputStart + 4)
    }

    @Test func theLimitIsPerReplyNotPerRead() throws {
        // The largest reply here, `$5` CRLF `abcde` CRLF, is 11 bytes.
        let reader = try HiredisReader(maximumReplySize: 11)
        var input = ByteBuffer()
        for index in 0..<1000 { input.writeString(":\(index % 10)\r\n") }
        input.writeString("$5\r\nab")  // a partial reply of 6 bytes: within the limit
        try reader.feed(input)
        var count = 0
        while let value = try reader.nextReply(allocator: ByteBufferAllocator()) {
            #expect(value == .integer(Int64(count % 10)))
            count += 1
        }
        #expect(count == 1000)
        try reader.feed(ByteBuffer(string: "cde\r\n"))
        #expect(try reader.nextReply(allocator: ByteBufferAllocator()) == Self.bulk("abcde"))
    }

    @Test("the decoder, bulk strings read in place, gives what hiredis alone gives, on random input split at random")
    func theDecoderAgreesWithHiredisOnRandomInput() throws {
        var generator = SeededRandom(seed: 0xB01C)
        let tokens = ["$3\r\nabc\r\n", "$-1\r\n", "$0\r\n\r\n", "$1\r\n\r\r\n", "$2\r\n", "+OK\r\n", ":5\r\n", "*1\r\n", "*2\r\n",
                      "$", "3", "-1", "\r\n", "\r", "x", "?"]
        for _ in 0..<3000 {
            var input = ByteBuffer()
            for _ in 0..<Int.random(in: 1...12, using: &generator) {
                input.writeString(tokens.randomElement(using: &generator)!)
            }
            var expected: [RESPValue] = []
            var expectedError = false
            let reader = try HiredisReader(maximumReplySize: 4096)
            do {
                try reader.feed(input)
                while let reply = try reader.nextReply(allocator: ByteBufferAllocator()) { expected.append(reply) }
            } catch {
                expectedError = true
            }
            var decoded: [RESPValue] = []
            var decodedError = false
            let decoder = try RESPReplyDecoder(maximumReplySize: 4096)
            let split = Int.random(in: 0...input.readableBytes, using: &generator)
            for var piece in [input.getSlice(at: 0, length: split)!, input.getSlice(at: split, length: input.readableBytes - split)!] {
                do {
                    try decoder.decode(&piece, allocator: ByteBufferAllocator()) { reply in
                        decoded.append(reply)
                        return true
                    }
                } catch {
                    decodedError = true
                    break
                }
            }
            #expect(decoded == expected, "\(String(buffer: input).debugDescription) split at \(split)")
            #expect(decodedError == expectedError, "\(String(buffer: input).debugDescription) split at \(split)")
        }
    }

    @Test func randomGarbageNeverCrashes() throws {
        var generator = SeededRandom(seed: 0x5EED)
        let tokens = ["+", "-", ":", "$", "*", "-1", "0", "1", "2", "3", "7", "999", "\r\n", "\r", "\n", "ab", "\0", "%", "_"]
        for _ in 0..<2000 {
            let reader = try HiredisReader(maximumReplySize: 4096)
            var input = ByteBuffer()
            for _ in 0..<Int.random(in: 1...40, using: &generator) {
                input.writeString(tokens.randomElement(using: &generator)!)
            }
            do {
                try reader.feed(input)
                while try reader.nextReply(allocator: ByteBufferAllocator()) != nil {}
            } catch let error as GatewayError {
                #expect(error.code == .backendError)
            }
        }
    }
}
