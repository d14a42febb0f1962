import GatewayProtocol
import NIOCore

/// The two frames of a hit, written and read by hand: the lookup request and
/// the lookup reply. Every other message goes through `MessageCodec`.
///
/// They are the client's hot path, and the general codec spends more on them
/// than their few bytes need (msgpack-c's packer and a copy for the request;
/// an unpacking zone and a validation pass for the reply). The bytes are
/// exactly those of docs/PROTOCOL.md, which the tests check against
/// `MessageCodec` both ways; a reply in any other shape (a later protocol
/// revision appending fields, say) returns nil here and is decoded by the codec.
enum LookupFrames {
    /// The MessagePack of a function version's two fields (`function`, `version`),
    /// as they appear in a lookup; computed once per version and connection.
    static func fields(of function: FunctionVersion) -> [UInt8] {
        var bytes: [UInt8] = []
        KeyBuilder.appendString(function.function, to: &bytes)
        KeyBuilder.appendString(function.version, to: &bytes)
        return bytes
    }

    /// Appends the frame of `[3, id, function, version, key]`; `fields` is
    /// `fields(of:)` of the function version.
    static func appendLookup(id: UInt64, fields: [UInt8], key: CacheKey, to buffer: inout ByteBuffer) {
        let idLength: Int
        switch id {
        case 0...0x7f: idLength = 1
        case 0x80...0xff: idLength = 2
        case 0x100...0xffff: idLength = 3
        case 0x1_0000...0xffff_ffff: idLength = 5
        default: idLength = 9
        }
        let payloadLength = 2 + idLength + fields.count + 2 + 32
        // Written through one pointer: the frame is a few dozen bytes, and
        // ByteBuffer's per-integer writes would each check bounds and uniqueness.
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 4 + payloadLength) { out in
            var offset = 0
            func put(_ byte: UInt8) {
                out[offset] = byte
                offset += 1
            }
            func put<T: FixedWidthInteger>(bigEndian value: T) {
                withUnsafeBytes(of: value.bigEndian) { out.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                offset += MemoryLayout<T>.size
            }
            put(bigEndian: UInt32(payloadLength))
            put(0x95)  // fixarray, 5 elements
            put(0x03)  // type 3
            switch idLength {  // the shortest unsigned form
            case 1: put(UInt8(id))
            case 2: put(0xcc); put(UInt8(id))
            case 3: put(0xcd); put(bigEndian: UInt16(id))
            case 5: put(0xce); put(bigEndian: UInt32(id))
            default: put(0xcf); put(bigEndian: id)
            }
            fields.withUnsafeBytes { out.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            offset += fields.count
            put(0xc4)  // bin 8
            put(32)
            key.digest.withUnsafeBytes { out.baseAddress!.advanced(by: offset).copyMemory(from: $0.baseAddress!, byteCount: 32) }
            return offset + 32
        }
    }

    /// Reads `payload` if it is exactly a lookup reply `[131, id, status, value]`
    /// in the shape the gateway sends; nil for anything else.
    static func lookupReply(_ payload: ByteBuffer) -> GatewayMessage? {
        payload.withUnsafeReadableBytes { raw -> GatewayMessage? in
            var reader = Reader(raw)
            guard reader.byte() == 0x94, reader.byte() == 0xcc, reader.byte() == 0x83, let id = reader.unsigned() else { return nil }
            switch reader.byte() {
            case 0x00:
                let length: Int?
                switch reader.byte() {
                case 0xc4: length = reader.bigEndian(1)
                case 0xc5: length = reader.bigEndian(2)
                case 0xc6: length = reader.bigEndian(4)
                default: length = nil
                }
                guard let length, reader.offset + length == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.hit(payload.getSlice(at: payload.readerIndex + reader.offset, length: length)!)))
            case 0x01:
                guard reader.byte() == 0xc0, reader.offset == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.miss))
            case 0x02:
                guard reader.byte() == 0xc0, reader.offset == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.missDoNotStore))
            default:
                return nil
            }
        }
    }

    private struct Reader {
        let raw: UnsafeRawBufferPointer
        var offset = 0

        init(_ raw: UnsafeRawBufferPointer) { self.raw = raw }

        mutating func byte() -> UInt8? {
            guard self.offset < self.raw.count else { return nil }
            defer { self.offset += 1 }
            return self.raw[self.offset]
        }

        /// `count` bytes as a big-endian unsigned integer.
        mutating func bigEndian(_ count: Int) -> Int? {
            guard self.raw.count - self.offset >= count else { return nil }
            var value = 0
            for index in 0..<count { value = value << 8 | Int(self.raw[self.offset + index]) }
            self.offset += count
            return value
        }

        /// A MessagePack unsigned integer of any width.
        mutating func unsigned() -> UInt64? {
            guard let marker = self.byte() else { return nil }
            switch marker {
            case 0x00...0x7f: return UInt64(marker)
            case 0xcc: return self.bigEndian(1).map(UInt64.init)
            case 0xcd: return self.bigEndian(2).map(UInt64.init)
            case 0xce: return self.bigEndian(4).map(UInt64.init)
            case 0xcf:
                guard let high = self.bigEndian(4), let low = self.bigEndian(4) else { return nil }
                return UInt64(high) << 32 | UInt64(low)
            default: return nil
            }
        }
    }
}
