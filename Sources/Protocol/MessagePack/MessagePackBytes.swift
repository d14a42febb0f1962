#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Single MessagePack values written straight into a byte array, in the
/// shortest form (the canonical one, see `MessagePackEncoder(canonical:)`),
/// and read straight from bytes.
///
/// For the few hot paths that assemble or read MessagePack without an
/// encoder or msgpack-c: the client's key derivation (`KeyBuilder`), the hit
/// path's frames (`LookupFrames`) and the decoder's direct path for binaries
/// and strings. Tests hold them to the canonical encoder and to the decoder.
public enum MessagePackBytes {
    /// An array header: fixarray, array 16 or array 32.
    public static func appendArrayHeader(_ count: Int, to bytes: inout [UInt8]) {
        switch count {
        case 0...15: bytes.append(0x90 | UInt8(count))
        case 16...0xffff: bytes.append(0xdc); Self.appendBigEndian(UInt16(count), to: &bytes)
        default: bytes.append(0xdd); Self.appendBigEndian(UInt32(count), to: &bytes)
        }
    }

    /// A string with the shortest header: fixstr, str 8, str 16 or str 32.
    public static func appendString(_ string: String, to bytes: inout [UInt8]) {
        var string = string
        string.withUTF8 { utf8 in
            switch utf8.count {
            case 0...31: bytes.append(0xa0 | UInt8(utf8.count))
            case 32...0xff: bytes.append(0xd9); bytes.append(UInt8(utf8.count))
            case 0x100...0xffff: bytes.append(0xda); Self.appendBigEndian(UInt16(utf8.count), to: &bytes)
            default: bytes.append(0xdb); Self.appendBigEndian(UInt32(utf8.count), to: &bytes)
            }
            bytes.append(contentsOf: utf8)
        }
    }

    /// An integer in the shortest form: non-negative ones in the unsigned
    /// family, negative ones in the signed family.
    public static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
        if value >= 0 {
            switch value {
            case 0...0x7f: bytes.append(UInt8(value))
            case 0x80...0xff: bytes.append(0xcc); bytes.append(UInt8(value))
            case 0x100...0xffff: bytes.append(0xcd); Self.appendBigEndian(UInt16(value), to: &bytes)
            case 0x1_0000...0xffff_ffff: bytes.append(0xce); Self.appendBigEndian(UInt32(value), to: &bytes)
            default: bytes.append(0xcf); Self.appendBigEndian(UInt64(value), to: &bytes)
            }
        } else {
            switch value {
            case -32 ... -1: bytes.append(UInt8(bitPattern: Int8(value)))
            case -0x80 ... -33: bytes.append(0xd0); bytes.append(UInt8(bitPattern: Int8(value)))
            case -0x8000 ... -0x81: bytes.append(0xd1); Self.appendBigEndian(UInt16(bitPattern: Int16(value)), to: &bytes)
            case -0x8000_0000 ... -0x8001: bytes.append(0xd2); Self.appendBigEndian(UInt32(bitPattern: Int32(value)), to: &bytes)
            default: bytes.append(0xd3); Self.appendBigEndian(UInt64(bitPattern: value), to: &bytes)
            }
        }
    }

    static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    /// The payload of `bytes` when they are exactly one binary value (bin 8,
    /// bin 16 or bin 32, nothing after it); nil for anything else.
    @inlinable
    public static func binaryPayload(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let first = bytes.first else { return nil }
        switch first {
        case 0xc4: return Self.payload(bytes, lengthBytes: 1)
        case 0xc5: return Self.payload(bytes, lengthBytes: 2)
        case 0xc6: return Self.payload(bytes, lengthBytes: 4)
        default: return nil
        }
    }

    /// The payload of `bytes` when they are exactly one string value (fixstr,
    /// str 8, str 16 or str 32, nothing after it), not yet checked to be
    /// UTF-8; nil for anything else.
    @inlinable
    public static func stringPayload(_ bytes: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        guard let first = bytes.first else { return nil }
        switch first {
        case 0xa0...0xbf:
            guard bytes.count == 1 + Int(first & 0x1f) else { return nil }
            return UnsafeRawBufferPointer(rebasing: bytes[1...])
        case 0xd9: return Self.payload(bytes, lengthBytes: 1)
        case 0xda: return Self.payload(bytes, lengthBytes: 2)
        case 0xdb: return Self.payload(bytes, lengthBytes: 4)
        default: return nil
        }
    }

    /// The bytes after a one-byte type and a big-endian length of
    /// `lengthBytes`, when that length is exactly what remains.
    @inlinable
    static func payload(_ bytes: UnsafeRawBufferPointer, lengthBytes: Int) -> UnsafeRawBufferPointer? {
        let headerLength = 1 + lengthBytes
        guard bytes.count >= headerLength else { return nil }
        var length = 0
        for index in 1..<headerLength { length = length << 8 | Int(bytes[index]) }
        guard bytes.count - headerLength == length else { return nil }
        return UnsafeRawBufferPointer(rebasing: bytes[headerLength...])
    }

    /// `bytes` as a string if they are valid UTF-8, else nil.
    ///
    /// `String(decoding:as:)` replaces ill-formed sequences with U+FFFD
    /// (EF BF BD), so its bytes equal the input exactly when the input was
    /// valid. `String(validating:as:)` says the same directly, but in this
    /// toolchain it validates through unspecialized generic code (metadata
    /// lookups on every call): 5.5% of the gateway's samples on the hit path.
    @usableFromInline
    static func utf8String(_ bytes: UnsafeRawBufferPointer) -> String? {
        let string = String(decoding: bytes, as: UTF8.self)
        let same = string.utf8.withContiguousStorageIfAvailable { utf8 in
            utf8.count == bytes.count && (utf8.isEmpty || memcmp(utf8.baseAddress!, bytes.baseAddress!, bytes.count) == 0)
        } ?? string.utf8.elementsEqual(bytes)
        return same ? string : nil
    }
}
