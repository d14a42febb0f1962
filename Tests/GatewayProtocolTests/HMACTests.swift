import GatewayDigest
import Testing

/// HMAC-SHA-256 against the test vectors of RFC 4231 (section 4), and the
/// constant-time comparison used to check codes.
@Suite("HMAC-SHA-256")
struct HMACTests {
    /// RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 truncates the output).
    static let vectors: [(key: [UInt8], data: [UInt8], code: String)] = [
        ([UInt8](repeating: 0x0b, count: 20), Array("Hi There".utf8),
         "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8),
         "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
        ([UInt8](repeating: 0xaa, count: 20), [UInt8](repeating: 0xdd, count: 50),
         "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
        (Array(1...25), [UInt8](repeating: 0xcd, count: 50),
         "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
        ([UInt8](repeating: 0xaa, count: 131), Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
         "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
        ([UInt8](repeating: 0xaa, count: 131),
         Array("This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".utf8),
         "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
    ]

    @Test(arguments: 0..<6)
    func rfc4231(index: Int) throws {
        let vector = Self.vectors[index]
        #expect(try HMACSHA256.authenticationCode(for: vector.data, key: vector.key).hexString == vector.code)
        // Fed in pieces, through the raw-pointer entry points, the code is the same.
        var mac = try vector.key.withUnsafeBytes { try HMACSHA256(key: $0) }
        for chunk in stride(from: 0, to: vector.data.count, by: 7) {
            try vector.data[chunk..<min(chunk + 7, vector.data.count)].withUnsafeBytes { try mac.update($0) }
        }
        #expect(try mac.finalize().hexString == vector.code)
    }

    @Test func theKeyMatters() throws {
        let data = Array("the same message".utf8)
        let one = try HMACSHA256.authenticationCode(for: data, key: [UInt8](repeating: 1, count: 32))
        var otherKey = [UInt8](repeating: 1, count: 32)
        otherKey[31] = 2
        #expect(try HMACSHA256.authenticationCode(for: data, key: otherKey) != one)
        #expect(try HMACSHA256.authenticationCode(for: data, key: [UInt8](repeating: 1, count: 32)) == one)
    }

    @Test func anEmptyKeyIsRefused() {
        let error = #expect(throws: DigestError.self) { try HMACSHA256(key: [UInt8]()) }
        #expect(error?.code == .invalidKey)
    }

    @Test func constantTimeComparisonComparesEveryByte() throws {
        let code = try HMACSHA256.authenticationCode(for: Array("x".utf8), key: Array("key".utf8))
        #expect(code.bytes.withUnsafeBytes { code.isEqualInConstantTime(to: $0) })
        for index in [0, 15, 31] {
            var changed = code.bytes
            changed[index] ^= 0x01
            #expect(!changed.withUnsafeBytes { code.isEqualInConstantTime(to: $0) }, "byte \(index)")
        }
        // A prefix of the right bytes is not the code.
        #expect(!code.bytes.prefix(31).withUnsafeBytes { code.isEqualInConstantTime(to: $0) })
        #expect(!(code.bytes + [0]).withUnsafeBytes { code.isEqualInConstantTime(to: $0) })
    }
}
