import GatewayDigest
import Testing

/// SHA-256 against the test vectors of FIPS 180-2 / NIST CSRC "SHA256.pdf" examples.
@Suite("SHA-256")
struct SHA256Tests {
    static let emptyDigest = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    static let abcDigest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    static let message448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
    static let message448Digest = "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
    static let message896 =
        "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu"
    static let message896Digest = "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"
    static let millionADigest = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"

    @Test("empty message")
    func emptyMessage() throws {
        #expect(try SHA256.hash([UInt8]()).hexString == Self.emptyDigest)
        var hasher = try SHA256()
        #expect(try hasher.finalize().hexString == Self.emptyDigest)
        hasher = try SHA256()
        try hasher.update(UnsafeRawBufferPointer(start: nil, count: 0))
        #expect(try hasher.finalize().hexString == Self.emptyDigest)
    }

    @Test("\"abc\"")
    func abc() throws {
        #expect(try SHA256.hash(Array("abc".utf8)).hexString == Self.abcDigest)
        // The same through the raw-pointer entry point, and fed one byte at a time.
        let viaPointer = try Array("abc".utf8).withUnsafeBytes { try SHA256.hash($0) }
        #expect(viaPointer.hexString == Self.abcDigest)
        var hasher = try SHA256()
        for byte in "abc".utf8 { try hasher.update([byte]) }
        #expect(try hasher.finalize().hexString == Self.abcDigest)
    }

    @Test("448-bit NIST message")
    func nist448() throws {
        #expect(Self.message448.utf8.count * 8 == 448)
        #expect(try SHA256.hash(Array(Self.message448.utf8)).hexString == Self.message448Digest)
        // A non-contiguous sequence goes through the copying path of `update`.
        #expect(try SHA256.hash(Self.message448.utf8.lazy.map { $0 }).hexString == Self.message448Digest)
    }

    @Test("896-bit NIST message")
    func nist896() throws {
        #expect(Self.message896.utf8.count * 8 == 896)
        #expect(try SHA256.hash(Array(Self.message896.utf8)).hexString == Self.message896Digest)
    }

    @Test("one million 'a' in one call")
    func millionAOneShot() throws {
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(try SHA256.hash(message).hexString == Self.millionADigest)
    }

    @Test("one million 'a' streamed in chunks", arguments: [1, 3, 55, 63, 64, 65, 1000, 4096, 999_999])
    func millionAStreamed(chunkSize: Int) throws {
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        var hasher = try SHA256()
        var start = 0
        while start < message.count {
            let end = min(start + chunkSize, message.count)
            try hasher.update(message[start..<end])
            start = end
        }
        #expect(try hasher.finalize().hexString == Self.millionADigest)
    }

    @Test("one million 'a' streamed in chunks of varying size")
    func millionAVaryingChunks() throws {
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        var hasher = try SHA256()
        var start = 0
        var size = 1
        try message.withUnsafeBytes { raw in
            while start < raw.count {
                let end = min(start + size, raw.count)
                try hasher.update(UnsafeRawBufferPointer(rebasing: raw[start..<end]))
                start = end
                size = size % 200 + 1
            }
        }
        #expect(try hasher.finalize().hexString == Self.millionADigest)
    }

    @Test("digest bytes, hex and equality agree")
    func digestRepresentations() throws {
        let digest = try SHA256.hash(Array("abc".utf8))
        #expect(digest.bytes.count == 32)
        #expect(hex(digest.bytes) == Self.abcDigest)
        #expect(digest.description == Self.abcDigest)
        #expect(SHA256Digest(bytes: digest.bytes) == digest)
        #expect(SHA256Digest(bytes: digest.bytes.dropLast()) == nil)
        #expect(SHA256Digest(bytes: digest.bytes + [0]) == nil)
        #expect(try SHA256.hash([UInt8]()) != digest)
        let other = try SHA256.hash(Array("abd".utf8))
        #expect(Set([digest, other, digest]).count == 2)
    }
}
