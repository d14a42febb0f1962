// The only file that touches msgpack-c. Its pointers, zones and return codes
// stay here; the rest of the package sees `MessagePackWriter` and
// `MessagePackObject`.
internal import CMsgPack
import GatewayDigest

/// Runs one msgpack-c packer call and turns its status into a `GatewayError`.
///
/// The packer functions return 0 on success and -1 when the buffer's write
/// callback fails (which for an sbuffer means `realloc` failed). Every packer
/// call in this file goes through here.
@inline(__always)
private func msgpackCall(_ function: StaticString, _ status: Int32) throws {
    guard status == 0 else {
        throw GatewayError(.libraryFailure, "msgpack-c \(function) failed with status \(status)")
    }
}

/// Turns an unpacker status into a `GatewayError` (the unpacker's counterpart
/// of `msgpackCall`).
private func checkUnpackStatus(_ status: msgpack_unpack_return, byteCount: Int) throws {
    switch status {
    case MSGPACK_UNPACK_SUCCESS:
        return
    case MSGPACK_UNPACK_NOMEM_ERROR:
        throw GatewayError(.libraryFailure, "msgpack-c ran out of memory unpacking \(byteCount) bytes")
    default:
        // The validator accepted the input, so this means the two disagree.
        throw GatewayError(.malformedMessage, "msgpack-c rejected the input (status \(status.rawValue))")
    }
}

/// Packs MessagePack values into a growable buffer through msgpack-c's packer.
///
/// msgpack-c always picks the shortest encoding for integers (non-negative
/// values in the unsigned family), for string, binary, array and map headers,
/// which is what canonical keys need. Not thread-safe: one writer per task.
final class MessagePackWriter {
    // Both live at fixed addresses: the packer keeps a pointer to the buffer.
    private let buffer: UnsafeMutablePointer<msgpack_sbuffer>
    private let packer: UnsafeMutablePointer<msgpack_packer>

    init() {
        self.buffer = .allocate(capacity: 1)
        self.packer = .allocate(capacity: 1)
        msgpack_sbuffer_init(self.buffer)
        cache_gateway_msgpack_packer_init_sbuffer(self.packer, self.buffer)
    }

    deinit {
        msgpack_sbuffer_destroy(self.buffer)
        self.buffer.deallocate()
        self.packer.deallocate()
    }

    /// The number of bytes written so far.
    var count: Int { self.buffer.pointee.size }

    /// Forgets what was written, keeping the allocated capacity.
    func reset() { self.buffer.pointee.size = 0 }

    /// Calls `body` with the bytes written so far.
    func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: self.buffer.pointee.data, count: self.buffer.pointee.size))
    }

    /// The bytes written so far, copied.
    var bytes: [UInt8] { self.withUnsafeBytes { Array($0) } }

    func packNil() throws { try msgpackCall("pack_nil", msgpack_pack_nil(self.packer)) }

    func pack(_ value: Bool) throws {
        if value {
            try msgpackCall("pack_true", msgpack_pack_true(self.packer))
        } else {
            try msgpackCall("pack_false", msgpack_pack_false(self.packer))
        }
    }

    func pack(_ value: Int64) throws {
        try msgpackCall("pack_int64", msgpack_pack_int64(self.packer, value))
    }

    func pack(_ value: UInt64) throws {
        try msgpackCall("pack_uint64", msgpack_pack_uint64(self.packer, value))
    }

    func pack(_ value: Float) throws {
        try msgpackCall("pack_float", msgpack_pack_float(self.packer, value))
    }

    func pack(_ value: Double) throws {
        try msgpackCall("pack_double", msgpack_pack_double(self.packer, value))
    }

    func pack(string: String) throws {
        var string = string
        try string.withUTF8 { (utf8) in
            try msgpackCall("pack_str", msgpack_pack_str(self.packer, utf8.count))
            try msgpackCall("pack_str_body", msgpack_pack_str_body(self.packer, utf8.baseAddress, utf8.count))
        }
    }

    func pack(binary: UnsafeRawBufferPointer) throws {
        try msgpackCall("pack_bin", msgpack_pack_bin(self.packer, binary.count))
        try msgpackCall("pack_bin_body", msgpack_pack_bin_body(self.packer, binary.baseAddress, binary.count))
    }

    /// Writes only the header of a binary of `count` bytes; the caller appends
    /// the bytes itself (used to put a large value straight into a frame).
    func packBinaryHeader(count: Int) throws {
        try msgpackCall("pack_bin", msgpack_pack_bin(self.packer, count))
    }

    func packArrayHeader(count: Int) throws {
        try msgpackCall("pack_array", msgpack_pack_array(self.packer, count))
    }

    func packMapHeader(count: Int) throws {
        try msgpackCall("pack_map", msgpack_pack_map(self.packer, count))
    }

    /// Appends bytes that already are MessagePack (used to emit canonically sorted entries).
    func writeRaw(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        try msgpackCall("sbuffer_write", msgpack_sbuffer_write(self.buffer, bytes.baseAddress, bytes.count))
    }
}

/// A read-only view of one value in a tree unpacked by msgpack-c.
///
/// Valid only inside the closure of `MessagePackObject.withUnpacked`: it points
/// into the zone of that call and, for strings and binaries, into its input.
struct MessagePackObject {
    private let raw: UnsafeRawPointer

    private init(_ pointer: UnsafePointer<msgpack_object>) { self.raw = UnsafeRawPointer(pointer) }

    private var object: msgpack_object { self.raw.assumingMemoryBound(to: msgpack_object.self).pointee }

    /// The MessagePack type of a value.
    enum Kind: Equatable {
        case `nil`, bool, unsigned, negative, float32, float64, string, binary, array, map, ext
    }

    var kind: Kind {
        switch self.object.type {
        case MSGPACK_OBJECT_NIL: .nil
        case MSGPACK_OBJECT_BOOLEAN: .bool
        case MSGPACK_OBJECT_POSITIVE_INTEGER: .unsigned
        case MSGPACK_OBJECT_NEGATIVE_INTEGER: .negative
        case MSGPACK_OBJECT_FLOAT32: .float32
        case MSGPACK_OBJECT_FLOAT64: .float64
        case MSGPACK_OBJECT_STR: .string
        case MSGPACK_OBJECT_BIN: .binary
        case MSGPACK_OBJECT_ARRAY: .array
        case MSGPACK_OBJECT_MAP: .map
        default: .ext
        }
    }

    /// The value of a `.bool`.
    var bool: Bool { self.object.via.boolean }
    /// The value of an `.unsigned` integer.
    var unsigned: UInt64 { self.object.via.u64 }
    /// The value of a `.negative` integer.
    var negative: Int64 { self.object.via.i64 }
    /// The value of a `.float32` or `.float64` (msgpack-c widens float32 to double exactly).
    var double: Double { self.object.via.f64 }

    /// The payload of a `.string` or `.binary`, pointing into the unpacked input.
    var bytes: UnsafeRawBufferPointer {
        let object = self.object
        switch object.type {
        case MSGPACK_OBJECT_STR:
            return UnsafeRawBufferPointer(start: object.via.str.ptr, count: Int(object.via.str.size))
        case MSGPACK_OBJECT_BIN:
            return UnsafeRawBufferPointer(start: object.via.bin.ptr, count: Int(object.via.bin.size))
        default:
            return UnsafeRawBufferPointer(start: nil, count: 0)
        }
    }

    /// The number of elements of an `.array` or entries of a `.map`.
    var count: Int {
        let object = self.object
        switch object.type {
        case MSGPACK_OBJECT_ARRAY: return Int(object.via.array.size)
        case MSGPACK_OBJECT_MAP: return Int(object.via.map.size)
        default: return 0
        }
    }

    /// Element `index` of an `.array`; `index` must be below `count`.
    func element(_ index: Int) -> MessagePackObject {
        MessagePackObject(UnsafePointer(self.object.via.array.ptr! + index))
    }

    /// The key of entry `index` of a `.map`; `index` must be below `count`.
    func key(_ index: Int) -> MessagePackObject {
        let entry = self.object.via.map.ptr! + index
        return MessagePackObject(UnsafeRawPointer(entry).assumingMemoryBound(to: msgpack_object.self))
    }

    /// The value of entry `index` of a `.map`; `index` must be below `count`.
    func value(_ index: Int) -> MessagePackObject {
        let entry = self.object.via.map.ptr! + index
        let offset = MemoryLayout<msgpack_object_kv>.offset(of: \.val)!
        return MessagePackObject((UnsafeRawPointer(entry) + offset).assumingMemoryBound(to: msgpack_object.self))
    }

    /// Unpacks `bytes`, which must hold exactly one MessagePack value, and calls
    /// `body` with its root. With a `zone`, the tree is built in that reusable
    /// zone (cleared afterwards) instead of a zone allocated for this call.
    ///
    /// The input is first checked by `MessagePackValidator`, so msgpack-c never
    /// sees a container whose declared size exceeds the input (msgpack-c
    /// allocates a container's slots as soon as it reads the header) or a value
    /// deeper than `MessagePack.maximumDepth` (msgpack-c's fixed parse stack).
    static func withUnpacked<R>(
        _ bytes: UnsafeRawBufferPointer,
        maximumDepth: Int = MessagePack.maximumDepth,
        zone: MessagePackZone? = nil,
        _ body: (MessagePackObject) throws -> R
    ) throws -> R {
        try MessagePackValidator.validate(bytes, maximumDepth: maximumDepth)
        if let zone {
            return try zone.withUnpacked(bytes) { root in try body(MessagePackObject(root)) }
        }
        var unpacked = msgpack_unpacked()
        msgpack_unpacked_init(&unpacked)
        defer { msgpack_unpacked_destroy(&unpacked) }
        var offset = 0
        let status = msgpack_unpack_next(
            &unpacked,
            bytes.baseAddress?.assumingMemoryBound(to: CChar.self),
            bytes.count,
            &offset
        )
        try checkUnpackStatus(status, byteCount: bytes.count)
        return try withUnsafePointer(to: &unpacked.data) { root in
            try body(MessagePackObject(root))
        }
    }
}

/// A msgpack-c zone kept for many unpacks, so that decoding a message does
/// not allocate and free a zone each time. Not thread-safe: one per
/// connection, or one borrowed from `pool` for one decode.
///
/// `@unchecked Sendable` so that idle zones can sit in the shared pool; a
/// zone is only ever used by the one thread that holds it.
final class MessagePackZone: @unchecked Sendable {
    /// Idle zones for one-off decodes (`MessagePackDecoder`): a cached call's
    /// result is decoded on every hit, and a fresh zone is an 8 KiB allocation
    /// written and freed each time. `withUnpacked` leaves a zone cleared.
    static let pool = ReusePool { try MessagePackZone() }

    private let zone: UnsafeMutablePointer<msgpack_zone>

    /// Creates a zone whose first chunk holds `chunkSize` bytes (msgpack-c's default is 8 KiB).
    init(chunkSize: Int = 8192) throws {
        guard let zone = msgpack_zone_new(chunkSize) else {
            throw GatewayError(.libraryFailure, "msgpack_zone_new failed")
        }
        self.zone = zone
    }

    deinit {
        msgpack_zone_free(self.zone)
    }

    /// Unpacks one value (already validated) into this zone, calls `body`, then
    /// clears the zone (keeping its first chunk for the next call).
    fileprivate func withUnpacked<R>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<msgpack_object>) throws -> R) throws -> R {
        defer { msgpack_zone_clear(self.zone) }
        var root = msgpack_object()
        var offset = 0
        // msgpack_unpack is marked obsolete in favour of msgpack_unpack_next,
        // but it is the only entry point that takes a caller's zone.
        let status = msgpack_unpack(bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count, &offset, self.zone, &root)
        try checkUnpackStatus(status, byteCount: bytes.count)
        return try withUnsafePointer(to: &root) { try body($0) }
    }
}
