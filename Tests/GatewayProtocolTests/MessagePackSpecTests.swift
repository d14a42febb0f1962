import GatewayProtocol
import Testing

/// Byte vectors from the MessagePack specification
/// (https://github.com/msgpack/msgpack/blob/master/spec.md, "Formats"), assembled by hand.
@Suite("MessagePack spec vectors")
struct MessagePackSpecTests {
    /// Encodes `value` (compact and canonical mode), compares with `expected`, and decodes `expected` back.
    func check<T: Codable & Equatable>(
        _ value: T,
        _ expected: [UInt8],
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        for canonical in [false, true] {
            let encoded = try MessagePackEncoder(canonical: canonical).encode(value)
            #expect(
                encoded == expected,
                "\(T.self) \(value) (canonical: \(canonical)): got \(hex(encoded)), expected \(hex(expected))",
                sourceLocation: sourceLocation
            )
        }
        let decoded = try MessagePackDecoder().decode(T.self, from: expected)
        #expect(decoded == value, "decoding \(hex(expected)) as \(T.self)", sourceLocation: sourceLocation)
    }

    /// Checks that `bytes` (a valid but not necessarily shortest form) decodes to `value`.
    func decodes<T: Decodable & Equatable>(
        _ bytes: [UInt8],
        to value: T,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let decoded = try MessagePackDecoder().decode(T.self, from: bytes)
        #expect(decoded == value, "decoding \(hex(bytes)) as \(T.self)", sourceLocation: sourceLocation)
    }

    @Test("nil, false and true are c0, c2, c3")
    func nilAndBool() throws {
        try check(Int?.none, [0xc0])
        try check(String?.none, [0xc0])
        try check(false, [0xc2])
        try check(true, [0xc3])
    }

    @Test("non-negative integers: positive fixint, uint8, uint16, uint32, uint64")
    func unsignedFamily() throws {
        try check(0, [0x00])
        try check(1, [0x01])
        try check(0x7f, [0x7f])
        try check(UInt8(0x7f), [0x7f])
        try check(0x80, [0xcc, 0x80])
        try check(UInt8.max, [0xcc, 0xff])
        try check(0xff, [0xcc, 0xff])
        try check(0x100, [0xcd, 0x01, 0x00])
        try check(UInt16.max, [0xcd, 0xff, 0xff])
        try check(0x1_0000, [0xce, 0x00, 0x01, 0x00, 0x00])
        try check(UInt32.max, [0xce, 0xff, 0xff, 0xff, 0xff])
        try check(0x1_0000_0000, [0xcf, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])
        try check(UInt64.max, [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        // Signed types with non-negative values use the unsigned family too.
        try check(Int8.max, [0x7f])
        try check(Int16.max, [0xcd, 0x7f, 0xff])
        try check(Int32.max, [0xce, 0x7f, 0xff, 0xff, 0xff])
        try check(Int64.max, [0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    @Test("negative integers: negative fixint, int8, int16, int32, int64 at their boundaries")
    func signedFamily() throws {
        try check(-1, [0xff])
        try check(-32, [0xe0])
        try check(Int8(-32), [0xe0])
        try check(-33, [0xd0, 0xdf])
        try check(Int8(-33), [0xd0, 0xdf])
        try check(Int8.min, [0xd0, 0x80])
        try check(-129, [0xd1, 0xff, 0x7f])
        try check(Int16.min, [0xd1, 0x80, 0x00])
        try check(-32769, [0xd2, 0xff, 0xff, 0x7f, 0xff])
        try check(Int32.min, [0xd2, 0x80, 0x00, 0x00, 0x00])
        try check(Int64(Int32.min) - 1, [0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff])
        try check(Int64.min, [0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        try check(Int.min, [0xd3, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
    }

    @Test("integers in wider forms than needed decode")
    func widerIntegerFormsDecode() throws {
        try decodes([0xcc, 0x05], to: 5)
        try decodes([0xcd, 0x00, 0x05], to: UInt8(5))
        try decodes([0xce, 0x00, 0x00, 0x00, 0x05], to: Int8(5))
        try decodes([0xcf, 0, 0, 0, 0, 0, 0, 0, 0x05], to: 5)
        try decodes([0xd0, 0x05], to: 5)
        try decodes([0xd1, 0xff, 0xff], to: Int8(-1))
        try decodes([0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xe0], to: -32)
    }

    @Test("Float is float32 (ca), Double is float64 (cb)")
    func floats() throws {
        // IEEE 754 binary32 of 1.5: sign 0, exponent 127 (0x7f), fraction 0x400000.
        try check(Float(1.5), [0xca, 0x3f, 0xc0, 0x00, 0x00])
        try check(Float(-2), [0xca, 0xc0, 0x00, 0x00, 0x00])
        try check(Float.infinity, [0xca, 0x7f, 0x80, 0x00, 0x00])
        // IEEE 754 binary64 of 1.5: exponent 1023 (0x3ff), fraction 0x8000000000000.
        try check(1.5, [0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        try check(-2.0, [0xcb, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        try check(Double.infinity, [0xcb, 0x7f, 0xf0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        try check(0.0, [0xcb, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        // A float32 on the wire decodes as Double, and an exact float64 as Float.
        try decodes([0xca, 0x3f, 0xc0, 0x00, 0x00], to: 1.5)
        try decodes([0xcb, 0x3f, 0xf8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], to: Float(1.5))
    }

    @Test("strings: fixstr, str8 (d9), str16 (da), str32 (db)")
    func strings() throws {
        try check("", [0xa0])
        try check("a", [0xa1, 0x61])
        try check("é", [0xa2, 0xc3, 0xa9])
        try check(String(repeating: "a", count: 31), [0xbf] + [UInt8](repeating: 0x61, count: 31))
        try check(String(repeating: "a", count: 32), [0xd9, 0x20] + [UInt8](repeating: 0x61, count: 32))
        try check(String(repeating: "b", count: 255), [0xd9, 0xff] + [UInt8](repeating: 0x62, count: 255))
        try check(String(repeating: "c", count: 256), [0xda, 0x01, 0x00] + [UInt8](repeating: 0x63, count: 256))
        try check(String(repeating: "d", count: 65535), [0xda, 0xff, 0xff] + [UInt8](repeating: 0x64, count: 65535))
        try check(String(repeating: "e", count: 65536), [0xdb, 0x00, 0x01, 0x00, 0x00] + [UInt8](repeating: 0x65, count: 65536))
        // Receivers accept a longer header than needed.
        try decodes([0xd9, 0x03, 0x61, 0x62, 0x63], to: "abc")
        try decodes([0xda, 0x00, 0x03, 0x61, 0x62, 0x63], to: "abc")
        try decodes([0xdb, 0x00, 0x00, 0x00, 0x03, 0x61, 0x62, 0x63], to: "abc")
    }

    @Test("binaries: bin8 (c4), bin16 (c5), bin32 (c6) for [UInt8]")
    func binaries() throws {
        try check([UInt8](), [0xc4, 0x00])
        try check([UInt8]([0x01, 0x02, 0x03]), [0xc4, 0x03, 0x01, 0x02, 0x03])
        try check([UInt8](repeating: 0x7e, count: 255), [0xc4, 0xff] + [UInt8](repeating: 0x7e, count: 255))
        try check([UInt8](repeating: 0x7e, count: 256), [0xc5, 0x01, 0x00] + [UInt8](repeating: 0x7e, count: 256))
        try check([UInt8](repeating: 0x7e, count: 65536), [0xc6, 0x00, 0x01, 0x00, 0x00] + [UInt8](repeating: 0x7e, count: 65536))
        try decodes([0xc5, 0x00, 0x02, 0xaa, 0xbb], to: [UInt8]([0xaa, 0xbb]))
    }

    @Test("arrays: fixarray up to 15 elements, array16 (dc) from 16, array32 (dd) from 65536")
    func arrays() throws {
        try check([Int](), [0x90])
        try check([1, 2, 3], [0x93, 0x01, 0x02, 0x03])
        try check(Array(0..<15), [0x9f] + (0..<15).map { UInt8($0) })
        try check(Array(0..<16), [0xdc, 0x00, 0x10] + (0..<16).map { UInt8($0) })
        try check([Bool](repeating: true, count: 65535), [0xdc, 0xff, 0xff] + [UInt8](repeating: 0xc3, count: 65535))
        try check([Bool](repeating: false, count: 65536), [0xdd, 0x00, 0x01, 0x00, 0x00] + [UInt8](repeating: 0xc2, count: 65536))
        try check([["a"], []], [0x92, 0x91, 0xa1, 0x61, 0x90])
        try check([Int?.none, 1], [0x92, 0xc0, 0x01])
        try decodes([0xdc, 0x00, 0x02, 0x01, 0x02], to: [1, 2])
        try decodes([0xdd, 0x00, 0x00, 0x00, 0x01, 0x07], to: [7])
    }

    @Test("maps: fixmap up to 15 entries, map16 (de) from 16")
    func maps() throws {
        try check([String: Int](), [0x80])
        try check(["a": 1], [0x81, 0xa1, 0x61, 0x01])
        try check([1: "a"], [0x81, 0x01, 0xa1, 0x61])
        // 16 entries "k00"…"k15": map16. Canonical order is the order of the encoded keys;
        // in compact mode the order is the dictionary's, so compare canonical bytes and decode.
        var sixteen: [String: Int] = [:]
        var expected: [UInt8] = [0xde, 0x00, 0x10]
        for index in 0..<16 {
            sixteen["k\(index / 10)\(index % 10)"] = index
            expected += [0xa3, 0x6b, 0x30 + UInt8(index / 10), 0x30 + UInt8(index % 10), UInt8(index)]
        }
        #expect(try MessagePackEncoder(canonical: true).encode(sixteen) == expected)
        let compact = try MessagePackEncoder().encode(sixteen)
        #expect(Array(compact.prefix(3)) == [0xde, 0x00, 0x10])
        #expect(compact.count == expected.count)
        #expect(try MessagePackDecoder().decode([String: Int].self, from: compact) == sixteen)
        #expect(try MessagePackDecoder().decode([String: Int].self, from: expected) == sixteen)
        // fixmap with 15 entries.
        let fifteen = sixteen.filter { $0.value < 15 }
        #expect(try MessagePackEncoder(canonical: true).encode(fifteen) == [0x8f] + expected[3..<(3 + 15 * 5)])
        // A wider header than needed decodes.
        try decodes([0xde, 0x00, 0x01, 0xa1, 0x61, 0x01], to: ["a": 1])
        try decodes([0xdf, 0x00, 0x00, 0x00, 0x01, 0xa1, 0x61, 0x01], to: ["a": 1])
    }

    @Test("a struct is a map from field name to value")
    func structIsMap() throws {
        struct Point: Codable, Equatable {
            var x: Int
            var y: String
        }
        // Field order: the encoder's (declaration) order in compact mode; sorted keys in canonical mode.
        // "x" (a1 78) sorts before "y" (a1 79), so both modes agree here.
        try check(Point(x: -1, y: "z"), [0x82, 0xa1, 0x78, 0xff, 0xa1, 0x79, 0xa1, 0x7a])
    }
}
