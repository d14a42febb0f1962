import Foundation
import GatewayProtocol
import NIOCore
import Testing

/// `MessagePackDecoder.decode(_:from: ByteBuffer)` reads a `[UInt8]`, `Data`
/// or `String` that is exactly one binary or string value straight from the
/// bytes. Whatever the bytes, it must decide as the general path does (the
/// raw-bytes entry point, which always unpacks): the same value, or an error
/// with the same code.
@Suite("Direct decoding of binaries and strings")
struct DirectDecodingTests {
    /// Decodes `bytes` both ways and holds them to each other.
    func agree<T: Decodable & Equatable>(_ type: T.Type, _ bytes: [UInt8], _ comment: Comment? = nil) {
        let general = Result { try bytes.withUnsafeBytes { try MessagePackDecoder().decode(T.self, from: $0) } }
        let direct = Result { try MessagePackDecoder().decode(T.self, from: ByteBuffer(bytes: bytes)) }
        switch (general, direct) {
        case (.success(let expected), .success(let value)):
            #expect(value == expected, comment)
        case (.failure(let expected as GatewayError), .failure(let error as GatewayError)):
            #expect(error.code == expected.code, comment)
        default:
            Issue.record("general \(general), direct \(direct); \(comment.map { "\($0)" } ?? "")")
        }
    }

    /// A header of `type` with a big-endian length of `width` bytes.
    func header(_ type: UInt8, length: Int, width: Int) -> [UInt8] {
        [type] + (0..<width).reversed().map { UInt8(truncatingIfNeeded: length >> ($0 * 8)) }
    }

    @Test func binariesOfEveryHeaderAndBoundaryLength() throws {
        for length in [0, 1, 255, 256, 65_535, 65_536] {
            let payload = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            // The canonical (shortest) form, as the client stores results…
            let canonical = try MessagePackEncoder(canonical: true).encode(payload)
            self.agree([UInt8].self, canonical, "bin, \(length) bytes")
            self.agree(Data.self, canonical, "bin as Data, \(length) bytes")
            #expect(try MessagePackDecoder().decode([UInt8].self, from: ByteBuffer(bytes: canonical)) == payload)
            // …and every wider header that still holds it.
            for (type, width) in [(0xc4, 1), (0xc5, 2), (0xc6, 4)] as [(UInt8, Int)] where length < 1 << (8 * width) {
                self.agree([UInt8].self, self.header(type, length: length, width: width) + payload, "0x\(String(type, radix: 16)), \(length) bytes")
            }
        }
    }

    @Test func stringsOfEveryHeaderAndBoundaryLength() throws {
        for length in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            // Multi-byte characters too, cut to the length in bytes only where a character ends.
            var text = String(repeating: "é€𝄞a", count: length / 10 + 1)
            while text.utf8.count > length { text.removeLast() }
            let canonical = try MessagePackEncoder(canonical: true).encode(text)
            self.agree(String.self, canonical, "string, \(text.utf8.count) bytes")
            #expect(try MessagePackDecoder().decode(String.self, from: ByteBuffer(bytes: canonical)) == text)
            let utf8 = Array(text.utf8)
            for (type, width) in [(0xd9, 1), (0xda, 2), (0xdb, 4)] as [(UInt8, Int)] where utf8.count < 1 << (8 * width) {
                self.agree(String.self, self.header(type, length: utf8.count, width: width) + utf8, "0x\(String(type, radix: 16)), \(utf8.count) bytes")
            }
        }
    }

    @Test func whatIsNotExactlyOneValueOfTheTypeIsDecidedAsTheGeneralPathDecides() throws {
        let bin: [UInt8] = [0xc4, 3, 1, 2, 3]
        // Short, long, a length that does not match, empty input.
        self.agree([UInt8].self, Array(bin.dropLast()), "truncated")
        self.agree([UInt8].self, bin + [0], "a byte after the value")
        self.agree([UInt8].self, [0xc5, 0, 3, 1, 2], "a length past the end")
        self.agree([UInt8].self, [], "empty")
        self.agree(String.self, [0xa3, 0x61, 0x62], "a fixstr cut short")
        self.agree(String.self, [0xa1, 0x61, 0x62], "a fixstr with a byte after it")
        // Ill-formed UTF-8: an invalidUTF8 error both ways.
        self.agree(String.self, [0xa2, 0xc3, 0x28], "ill-formed UTF-8")
        self.agree(String.self, [0xd9, 3, 0xed, 0xa0, 0x80], "a surrogate")
        // Other shapes: decoded (or refused) by the general path alone.
        self.agree([UInt8].self, try MessagePackEncoder().encode([1, 2, 300] as [Int]), "an array of integers, one too large")
        self.agree([UInt8].self, try MessagePackEncoder().encode([1, 2, 3] as [Int]), "an array of integers")
        self.agree([UInt8].self, try MessagePackEncoder().encode("text"), "a string for [UInt8]")
        self.agree(String.self, bin, "a binary for String")
        self.agree(Data.self, [0xa1, 0x61], "a string for Data")
        self.agree(String.self, [0xc0], "nil for String")
    }
}
