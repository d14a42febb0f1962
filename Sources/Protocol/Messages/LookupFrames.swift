import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The frames of the hit path, written and read by hand: a lookup request
/// and its reply. Every other message goes through `MessageCodec`.
///
/// They are what every cached call sends and receives, and the general codec
/// spends more on them than their few bytes need (msgpack-c's packer and a
/// copy to write them; a validation pass, an unpacking zone and a walk over
/// its objects to read them). The bytes are exactly those of
/// docs/PROTOCOL.md. The readers accept exactly the shape the writers here
/// and `MessageCodec` produce (shortest integer forms, the fields of this
/// protocol revision) and return nil for anything else, which the caller then
/// gives to `MessageCodec`: that decides, with its errors, whatever is
/// unusual. So a reader here never accepts what the codec would refuse, and
/// never reads a message differently; the tests check both ways, and the
/// fuzzer checks it on every input.
public enum LookupFrames {
    /// The MessagePack of a function version's two fields (`function`,
    /// `version`), as they appear in a lookup; a client computes it once per
    /// version and connection.
    public static func fields(of function: FunctionVersion) -> [UInt8] {
        var bytes: [UInt8] = []
        MessagePackBytes.appendString(function.function, to: &bytes)
        MessagePackBytes.appendString(function.version, to: &bytes)
        return bytes
    }

    // MARK: The request: [3, id, function, version, key]

    /// Appends the frame of `[3, id, function, version, key]`, or with
    /// `refresh` of `[3, id, function, version, key, 0, true]` (a lookup
    /// whose caller can refresh the entry); `fields` is `fields(of:)` of the
    /// function version.
    public static func appendLookup(id: UInt64, fields: [UInt8], key: CacheKey, refresh: Bool = false, to buffer: inout ByteBuffer) {
        let idLength = Self.unsignedLength(id)
        let payloadLength = 2 + idLength + fields.count + 2 + 32 + (refresh ? 2 : 0)
        // Written through one pointer: the frame is a few dozen bytes, and
        // ByteBuffer's per-integer writes would each check bounds and uniqueness.
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 4 + payloadLength) { out in
            var writer = Writer(out)
            writer.put(bigEndian: UInt32(payloadLength))
            writer.put(refresh ? 0x97 : 0x95)  // fixarray, 7 or 5 elements
            writer.put(0x03)  // type 3, lookup
            writer.putUnsigned(id, length: idLength)
            fields.withUnsafeBytes { writer.put($0) }
            writer.put(0xc4)  // bin 8
            writer.put(32)
            key.digest.withUnsafeBytes { writer.put($0) }
            if refresh {
                writer.put(0x00)  // holdMilliseconds 0
                writer.put(0xc3)  // refresh: true
            }
            return writer.offset
        }
    }

    /// Reads `payload` if it is exactly a lookup request in the shape
    /// `appendLookup` (and `MessageCodec`) write, with fields within the
    /// codec's limits (a function of 1 to 512 bytes of UTF-8, a version of 1
    /// to 128, a 32-byte key); nil for anything else.
    public static func lookupRequest(_ payload: ByteBuffer) -> GatewayMessage? {
        var memo = LookupFunctionMemo()
        guard let (id, key) = Self.lookupRequest(payload, memo: &memo), let function = memo.function else { return nil }
        return GatewayMessage(id: id, .lookup(Lookup(function: function, key: key)))
    }

    /// Reads `payload` like `lookupRequest(_:)`, and returns its id and key;
    /// its function version is then `memo.function`. The gateway's hot path.
    ///
    /// A connection's lookups usually name the same function again and again,
    /// so `memo` keeps the wire bytes of the last one's two fields: a lookup
    /// whose fields are the same bytes reuses its strings, without
    /// validating UTF-8 or allocating again (the memo only ever holds fields
    /// that were valid). Anything else is read afresh and, if valid, becomes
    /// the memo's new function (its `generation` changes). A payload that is
    /// not read (nil) leaves `memo` as it was.
    public static func lookupRequest(_ payload: ByteBuffer, memo: inout LookupFunctionMemo) -> (id: UInt64, key: CacheKey)? {
        payload.withUnsafeReadableBytes { raw -> (id: UInt64, key: CacheKey)? in
            var reader = Reader(raw)
            guard reader.byte() == 0x95, reader.byte() == 0x03, let id = reader.unsigned() else { return nil }
            let fieldsStart = reader.offset
            guard let functionBytes = reader.stringBytes(maximumBytes: 512),
                  let versionBytes = reader.stringBytes(maximumBytes: 128)
            else { return nil }
            let fields = UnsafeRawBufferPointer(rebasing: raw[fieldsStart..<reader.offset])
            guard reader.byte() == 0xc4, reader.byte() == 32,
                  let key = reader.bytes(32).flatMap(CacheKey.init(bytes:)),
                  reader.offset == raw.count
            else { return nil }
            if !memo.holds(fields) {
                guard let function = MessagePackBytes.utf8String(functionBytes), let version = MessagePackBytes.utf8String(versionBytes) else { return nil }
                memo.remember(fields, FunctionVersion(function: function, version: version))
            }
            return (id, key)
        }
    }


    // MARK: The reply: [131, id, status, value]

    /// Appends the frame of a hit, `[131, id, 0, value]` (or, with
    /// `refresh`, `[131, id, 4, value]`); false (nothing appended) when the
    /// value is too large for one frame.
    @discardableResult
    public static func appendHit(id: UInt64, value: ByteBuffer, refresh: Bool = false, to buffer: inout ByteBuffer) -> Bool {
        let count = value.readableBytes
        let headerLength = count <= 0xff ? 2 : count <= 0xffff ? 3 : 5
        let idLength = Self.unsignedLength(id)
        let payloadLength = 3 + idLength + 1 + headerLength + count
        guard payloadLength <= UInt32.max else { return false }
        buffer.reserveCapacity(minimumWritableBytes: 4 + payloadLength)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 4 + payloadLength - count) { out in
            var writer = Writer(out)
            writer.put(bigEndian: UInt32(payloadLength))
            writer.put(0x94)  // fixarray, 4 elements
            writer.put(0xcc)  // uint 8: type 131, lookupReply
            writer.put(0x83)
            writer.putUnsigned(id, length: idLength)
            writer.put(refresh ? 0x04 : 0x00)  // status 4, hit and refresh, or 0, hit
            switch headerLength {  // bin 8, bin 16 or bin 32
            case 2: writer.put(0xc4); writer.put(UInt8(count))
            case 3: writer.put(0xc5); writer.put(bigEndian: UInt16(count))
            default: writer.put(0xc6); writer.put(bigEndian: UInt32(count))
            }
            return writer.offset
        }
        buffer.writeImmutableBuffer(value)
        return true
    }

    /// Reads `payload` if it is exactly a lookup reply `[131, id, status, value]`
    /// in the shape the gateway sends; nil for anything else. The client's hot path.
    public static func lookupReply(_ payload: ByteBuffer) -> GatewayMessage? {
        payload.withUnsafeReadableBytes { raw -> GatewayMessage? in
            var reader = Reader(raw)
            guard reader.byte() == 0x94, reader.byte() == 0xcc, reader.byte() == 0x83, let id = reader.unsigned() else { return nil }
            switch reader.byte() {
            case let status? where status == 0x00 || status == 0x04:
                let length: Int?
                switch reader.byte() {
                case 0xc4: length = reader.bigEndian(1)
                case 0xc5: length = reader.bigEndian(2)
                case 0xc6: length = reader.bigEndian(4)
                default: length = nil
                }
                guard let length, reader.offset + length == raw.count else { return nil }
                let value = payload.getSlice(at: payload.readerIndex + reader.offset, length: length)!
                return GatewayMessage(id: id, .lookupReply(status == 0x04 ? .refresh(value) : .hit(value)))
            case 0x01:
                guard reader.byte() == 0xc0, reader.offset == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.miss))
            case 0x02:
                guard reader.byte() == 0xc0, reader.offset == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.missDoNotStore))
            case 0x03:
                guard reader.byte() == 0xc0, reader.offset == raw.count else { return nil }
                return GatewayMessage(id: id, .lookupReply(.wait))
            default:
                return nil
            }
        }
    }

    // MARK: Parts

    /// The bytes of `value` in the shortest unsigned form.
    private static func unsignedLength(_ value: UInt64) -> Int {
        switch value {
        case 0...0x7f: 1
        case 0x80...0xff: 2
        case 0x100...0xffff: 3
        case 0x1_0000...0xffff_ffff: 5
        default: 9
        }
    }

    private struct Writer {
        let out: UnsafeMutableRawBufferPointer
        var offset = 0

        init(_ out: UnsafeMutableRawBufferPointer) { self.out = out }

        mutating func put(_ byte: UInt8) {
            self.out[self.offset] = byte
            self.offset += 1
        }

        mutating func put(_ bytes: UnsafeRawBufferPointer) {
            guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
            self.out.baseAddress!.advanced(by: self.offset).copyMemory(from: base, byteCount: bytes.count)
            self.offset += bytes.count
        }

        mutating func put<T: FixedWidthInteger>(bigEndian value: T) {
            withUnsafeBytes(of: value.bigEndian) { self.put($0) }
        }

        /// `value` as a MessagePack unsigned integer of `length` bytes (see `unsignedLength`).
        mutating func putUnsigned(_ value: UInt64, length: Int) {
            switch length {
            case 1: self.put(UInt8(value))
            case 2: self.put(0xcc); self.put(UInt8(value))
            case 3: self.put(0xcd); self.put(bigEndian: UInt16(value))
            case 5: self.put(0xce); self.put(bigEndian: UInt32(value))
            default: self.put(0xcf); self.put(bigEndian: value)
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

        /// The next `count` bytes.
        mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer? {
            guard self.raw.count - self.offset >= count else { return nil }
            defer { self.offset += count }
            return UnsafeRawBufferPointer(rebasing: self.raw[self.offset..<self.offset + count])
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

        /// The bytes of a non-empty string of at most `maximumBytes` bytes
        /// (fixstr, str 8 or str 16; longer forms are left to the codec),
        /// not yet checked to be UTF-8.
        mutating func stringBytes(maximumBytes: Int) -> UnsafeRawBufferPointer? {
            guard let marker = self.byte() else { return nil }
            let length: Int?
            switch marker {
            case 0xa0...0xbf: length = Int(marker & 0x1f)
            case 0xd9: length = self.bigEndian(1)
            case 0xda: length = self.bigEndian(2)
            default: length = nil
            }
            guard let length, length >= 1, length <= maximumBytes else { return nil }
            return self.bytes(length)
        }
    }
}

/// What a connection remembers of the function version its last lookup
/// named (see `LookupFrames.lookupRequest(_:memo:)`).
public struct LookupFunctionMemo: Sendable {
    /// The last function's two fields, as bytes on the wire; only ever the
    /// bytes of valid fields.
    private var fields: [UInt8] = []
    /// The function version of the last lookup read; nil before the first.
    public private(set) var function: FunctionVersion?
    /// Changes whenever `function` does, so that a caller can keep its own
    /// state about the function (counters, say) and know when to look again.
    public private(set) var generation: UInt64 = 0

    /// An empty memo.
    public init() {}

    /// Whether `bytes` are the remembered fields.
    ///
    /// `mutating` although it changes nothing: it is called on the memo that
    /// `lookupRequest(_:memo:)`'s closure captures `inout`, and a non-mutating
    /// method there was called on a copy of the whole memo (its array and
    /// both strings retained, then released) on every lookup. It tests
    /// `fields`, never `function`, for the same reason: reading the optional
    /// copies its two strings. `fields` is empty until a function is remembered.
    fileprivate mutating func holds(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard !self.fields.isEmpty, self.fields.count == bytes.count else { return false }
        return self.fields.withUnsafeBytes { memcmp($0.baseAddress!, bytes.baseAddress!, bytes.count) == 0 }
    }

    fileprivate mutating func remember(_ bytes: UnsafeRawBufferPointer, _ function: FunctionVersion) {
        self.fields = Array(bytes)
        self.function = function
        self.generation &+= 1
    }
}
