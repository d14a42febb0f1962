import NIOCore

/// Encodes and decodes messages for one connection, reusing its buffers.
///
/// `GatewayMessage.encodeFrame(into:)` and `GatewayMessage(payload:)` allocate
/// a packer buffer and an unpacking zone on every call; a codec keeps one of
/// each for the connection's life, which takes several allocations off every
/// request. Not thread-safe: use one per connection (on its event loop).
public final class MessageCodec {
    private let writer = MessagePackWriter()
    private let zone: MessagePackZone

    /// Creates a codec.
    public init() throws {
        self.zone = try MessagePackZone()
    }

    /// Appends `message` as one frame to `buffer`; see `GatewayMessage.encodeFrame(into:)`.
    public func encodeFrame(_ message: GatewayMessage, into buffer: inout ByteBuffer) throws {
        try message.encodeFrame(into: &buffer, writer: self.writer)
    }

    /// Decodes one message from a frame's payload; see `GatewayMessage(payload:)`.
    public func decode(payload: ByteBuffer) throws -> GatewayMessage {
        try GatewayMessage(payload: payload, zone: self.zone, requestsOnly: false)
    }

    /// Decodes one request: like `decode(payload:)`, but a type that is not a
    /// request (a reply type sent to the gateway) is `.unknownMessageType`
    /// before its fields are looked at, as docs/PROTOCOL.md says.
    public func decodeRequest(payload: ByteBuffer) throws -> GatewayMessage {
        try GatewayMessage(payload: payload, zone: self.zone, requestsOnly: true)
    }
}

@available(*, unavailable)
extension MessageCodec: Sendable {}

// The MessagePack form of every message, exactly as docs/PROTOCOL.md gives it.
// Messages are packed and read field by field (not through Codable): the order
// and types of the fields are the protocol, and this is the hot path.

extension GatewayMessage {
    /// Appends this message as one frame (a 4-byte big-endian length, then the
    /// MessagePack payload) to `buffer`.
    ///
    /// A value (in store and lookup replies) is always the last field, so its
    /// bytes are copied once, straight into `buffer`.
    public func encodeFrame(into buffer: inout ByteBuffer) throws {
        try self.encodeFrame(into: &buffer, writer: MessagePackWriter())
    }

    func encodeFrame(into buffer: inout ByteBuffer, writer: MessagePackWriter) throws {
        writer.reset()
        let trailingValue = try self.packFields(into: writer)
        let payloadLength = writer.count + (trailingValue?.readableBytes ?? 0)
        guard payloadLength <= UInt32.max else {
            throw GatewayError(.valueTooLarge, "a \(payloadLength)-byte payload does not fit a frame")
        }
        buffer.reserveCapacity(minimumWritableBytes: 4 + payloadLength)
        buffer.writeInteger(UInt32(payloadLength), endianness: .big)
        writer.withUnsafeBytes { _ = buffer.writeBytes($0) }
        if let trailingValue { buffer.writeImmutableBuffer(trailingValue) }
    }

    /// This message as one frame.
    public func encodedFrame(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 64)
        try self.encodeFrame(into: &buffer)
        return buffer
    }

    /// Packs `[type, id, fields…]`. When the last field is a value, only its
    /// binary header is packed and the value is returned for the caller to append.
    private func packFields(into writer: MessagePackWriter) throws -> ByteBuffer? {
        func header(_ fieldCount: Int) throws {
            try writer.packArrayHeader(count: 2 + fieldCount)
            try writer.pack(self.body.type.rawValue)
            try writer.pack(self.id)
        }
        func pack(_ function: FunctionVersion) throws {
            try writer.pack(string: function.function)
            try writer.pack(string: function.version)
        }
        func pack(_ key: CacheKey) throws {
            try key.digest.withUnsafeBytes { (raw) in try writer.pack(binary: raw) }
        }

        switch self.body {
        case .hello(let hello):
            // The appended field goes out only when it says something, so an
            // announcing-nothing hello is byte for byte the original one.
            try header(hello.holdMilliseconds > 0 ? 4 : 3)
            try writer.pack(hello.protocolVersion)
            try writer.pack(string: hello.clientName)
            try writer.pack(hello.pid)
            if hello.holdMilliseconds > 0 { try writer.pack(hello.holdMilliseconds) }
        case .ping, .pong, .stats, .functions, .registerReply:
            try header(0)
        case .lookup(let lookup):
            // Appended fields go out only when they say something; the
            // refresh flag needs the hold field before it (0 if none).
            try header(lookup.refresh ? 5 : lookup.holdMilliseconds > 0 ? 4 : 3)
            try pack(lookup.function)
            try pack(lookup.key)
            if lookup.holdMilliseconds > 0 || lookup.refresh { try writer.pack(lookup.holdMilliseconds) }
            if lookup.refresh { try writer.pack(true) }
        case .store(let store):
            try header(6)
            try pack(store.function)
            try pack(store.key)
            try writer.pack(store.ttlMilliseconds)
            try writer.pack(store.computeMicroseconds)
            try writer.packBinaryHeader(count: store.value.readableBytes)
            return store.value
        case .register(let function):
            try header(2)
            try pack(function)
        case .invalidate(let invalidate):
            try header(3)
            try writer.pack(string: invalidate.function)
            if let version = invalidate.version { try writer.pack(string: version) } else { try writer.packNil() }
            if let key = invalidate.key { try pack(key) } else { try writer.packNil() }
        case .helloReply(let reply):
            try header(reply.holdMilliseconds > 0 ? 5 : 4)
            try writer.pack(reply.protocolVersion)
            try writer.pack(string: reply.gatewayVersion)
            try writer.pack(reply.maxFrameSize)
            try writer.pack(reply.maxValueSize)
            if reply.holdMilliseconds > 0 { try writer.pack(reply.holdMilliseconds) }
        case .lookupReply(let reply):
            try header(2)
            try writer.pack(reply.status)
            guard let value = reply.value else {
                try writer.packNil()
                return nil
            }
            try writer.packBinaryHeader(count: value.readableBytes)
            return value
        case .storeReply(let stored):
            try header(1)
            try writer.pack(stored)
        case .invalidateReply(let deleted):
            try header(1)
            try writer.pack(deleted)
        case .statsReply(let stats):
            try header(1)
            try writer.packMapHeader(count: stats.values.count)
            // Sorted, so that the same statistics always give the same bytes.
            for (name, value) in stats.values.sorted(by: { $0.key < $1.key }) {
                try writer.pack(string: name)
                switch value {
                case .count(let count): try writer.pack(count)
                case .text(let text): try writer.pack(string: text)
                }
            }
        case .functionsReply(let functions):
            try header(1)
            try writer.packArrayHeader(count: functions.count)
            for function in functions {
                try writer.packArrayHeader(count: 5)
                try writer.pack(string: function.function)
                try writer.pack(function.hits)
                try writer.pack(function.misses)
                try writer.pack(function.computeSavedMicroseconds)
                try writer.packArrayHeader(count: function.versions.count)
                for version in function.versions {
                    try writer.packArrayHeader(count: 6)
                    try writer.pack(string: version.version)
                    try writer.pack(version.firstSeenMilliseconds)
                    try writer.pack(version.lastSeenMilliseconds)
                    try writer.pack(version.entries)
                    try writer.pack(string: version.state)
                    try writer.packArrayHeader(count: version.leases.count)
                    for lease in version.leases {
                        try writer.packArrayHeader(count: 2)
                        try writer.pack(string: lease.gateway)
                        try writer.pack(lease.expiresMilliseconds)
                    }
                }
            }
        case .error(let error):
            try header(2)
            try writer.pack(error.code.rawValue)
            try writer.pack(string: error.message)
        }
        return nil
    }
}

extension GatewayMessage {
    /// Decodes one message from a frame's payload (the bytes after the length prefix).
    ///
    /// Binary fields (values) are slices of `payload`, not copies. Throws
    /// `.malformedMessage` or `.nestingTooDeep` when the payload is not one
    /// well-formed MessagePack array, `.unknownMessageType` for a type number
    /// that is not in the protocol, and `.invalidField` (naming the field) for a
    /// missing field or one of the wrong type or range. Elements after the
    /// documented fields are ignored, so later minor versions can append fields.
    public init(payload: ByteBuffer) throws {
        try self.init(payload: payload, zone: nil, requestsOnly: false)
    }

    init(payload: ByteBuffer, zone: MessagePackZone?, requestsOnly: Bool) throws {
        do {
            self = try payload.withUnsafeReadableBytes { raw in
                try MessagePackObject.withUnpacked(raw, zone: zone) { root in
                    try Self.decode(root, payload: payload, base: raw.baseAddress, requestsOnly: requestsOnly)
                }
            }
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError(.malformedMessage, "\(error)")
        }
    }

    /// The request id in `payload`, if it is an array whose second element is an
    /// unsigned integer; used to address the error reply to a request that failed to decode.
    public static func requestID(inPayload payload: ByteBuffer) -> UInt64? {
        try? payload.withUnsafeReadableBytes { raw in
            try MessagePackObject.withUnpacked(raw) { root -> UInt64? in
                guard root.kind == .array, root.count >= 2, root.element(1).kind == .unsigned else { return nil }
                return root.element(1).unsigned
            }
        }
    }

    private static func decode(_ root: MessagePackObject, payload: ByteBuffer, base: UnsafeRawPointer?, requestsOnly: Bool) throws -> GatewayMessage {
        guard root.kind == .array, root.count >= 2 else {
            throw GatewayError(.malformedMessage, "a message is an array [type, id, …]; found \(root.kind) of \(root.count) elements")
        }
        guard root.element(0).kind == .unsigned else {
            throw GatewayError(.malformedMessage, "element 0 (type) must be an unsigned integer, found \(root.element(0).kind)")
        }
        guard root.element(1).kind == .unsigned else {
            throw GatewayError(.malformedMessage, "element 1 (id) must be an unsigned integer, found \(root.element(1).kind)")
        }
        let type = MessageType(rawValue: root.element(0).unsigned)
        if requestsOnly && !type.isRequest {
            throw GatewayError(.unknownMessageType, "message type \(type.rawValue) is not a request")
        }
        let fields = Fields(array: root, type: type, payload: payload, base: base)
        let id = root.element(1).unsigned

        let body: Body
        switch type {
        case .hello:
            body = .hello(Hello(
                protocolVersion: try fields.unsigned(2, "protocolVersion"),
                clientName: try fields.string(3, "clientName", maxBytes: 256, allowEmpty: true),
                pid: try fields.unsigned(4, "pid"),
                holdMilliseconds: try fields.appendedUnsigned(5, "holdMilliseconds")
            ))
        case .ping: body = .ping
        case .lookup:
            body = .lookup(Lookup(
                function: try fields.functionVersion(at: 2),
                key: try fields.key(4, "key"),
                holdMilliseconds: try fields.appendedUnsigned(5, "holdMilliseconds"),
                refresh: try fields.appendedBool(6, "refresh")
            ))
        case .store:
            let ttl = try fields.unsigned(5, "ttlMilliseconds")
            guard (1...Store.maximumTTLMilliseconds).contains(ttl) else {
                throw fields.invalid(5, "ttlMilliseconds", "must be 1 to \(Store.maximumTTLMilliseconds), is \(ttl)")
            }
            body = .store(Store(
                function: try fields.functionVersion(at: 2),
                key: try fields.key(4, "key"),
                ttlMilliseconds: ttl,
                computeMicroseconds: try fields.unsigned(6, "computeMicroseconds"),
                value: try fields.binary(7, "value")
            ))
        case .register:
            body = .register(try fields.functionVersion(at: 2))
        case .invalidate:
            let version = try fields.optional(3) { () in try fields.string(3, "version", maxBytes: 128) }
            let key = try fields.optional(4) { () in try fields.key(4, "key") }
            body = .invalidate(Invalidate(function: try fields.string(2, "function", maxBytes: 512), version: version, key: key))
        case .stats: body = .stats
        case .functions: body = .functions
        case .helloReply:
            body = .helloReply(HelloReply(
                protocolVersion: try fields.unsigned(2, "protocolVersion"),
                gatewayVersion: try fields.string(3, "gatewayVersion", maxBytes: 256, allowEmpty: true),
                maxFrameSize: try fields.unsigned(4, "maxFrameSize"),
                maxValueSize: try fields.unsigned(5, "maxValueSize"),
                holdMilliseconds: try fields.appendedUnsigned(6, "holdMilliseconds")
            ))
        case .pong: body = .pong
        case .lookupReply:
            switch try fields.unsigned(2, "status") {
            case 0: body = .lookupReply(.hit(try fields.binary(3, "value")))
            case 1: body = .lookupReply(.miss)
            case 2: body = .lookupReply(.missDoNotStore)
            case 3: body = .lookupReply(.wait)
            case 4: body = .lookupReply(.refresh(try fields.binary(3, "value")))
            case let status: throw fields.invalid(2, "status", "must be 0 to 4, is \(status)")
            }
        case .storeReply: body = .storeReply(stored: try fields.bool(2, "stored"))
        case .registerReply: body = .registerReply
        case .invalidateReply: body = .invalidateReply(deleted: try fields.unsigned(2, "deleted"))
        case .statsReply: body = .statsReply(try fields.stats(2))
        case .functionsReply: body = .functionsReply(try fields.functions(2))
        case .error:
            body = .error(ErrorReply(
                code: ErrorCode(rawValue: try fields.unsigned(2, "code")),
                message: try fields.string(3, "message", maxBytes: .max, allowEmpty: true)
            ))
        default:
            throw GatewayError(.unknownMessageType, "message type \(type.rawValue) is not part of protocol version \(Self.protocolVersion)")
        }
        return GatewayMessage(id: id, body)
    }
}

/// Typed access to the fields of one message array, with errors that name the field.
private struct Fields {
    let array: MessagePackObject
    let type: MessageType
    let payload: ByteBuffer
    let base: UnsafeRawPointer?

    func invalid(_ index: Int, _ name: String, _ problem: String) -> GatewayError {
        GatewayError(.invalidField, "message type \(self.type.rawValue), field \(index) (\(name)): \(problem)")
    }

    func element(_ index: Int, _ name: String) throws -> MessagePackObject {
        guard index < self.array.count else { throw self.invalid(index, name, "missing") }
        return self.array.element(index)
    }

    func expect(_ kind: MessagePackObject.Kind, _ index: Int, _ name: String) throws -> MessagePackObject {
        let object = try self.element(index, name)
        guard object.kind == kind else { throw self.invalid(index, name, "expected \(kind), found \(object.kind)") }
        return object
    }

    func unsigned(_ index: Int, _ name: String) throws -> UInt64 {
        try self.expect(.unsigned, index, name).unsigned
    }

    func bool(_ index: Int, _ name: String) throws -> Bool {
        try self.expect(.bool, index, name).bool
    }

    func string(_ index: Int, _ name: String, maxBytes: Int, allowEmpty: Bool = false) throws -> String {
        let bytes = try self.expect(.string, index, name).bytes
        guard bytes.count <= maxBytes else { throw self.invalid(index, name, "longer than \(maxBytes) bytes") }
        guard allowEmpty || !bytes.isEmpty else { throw self.invalid(index, name, "empty") }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw GatewayError(.invalidUTF8, "message type \(self.type.rawValue), field \(index) (\(name)): not valid UTF-8")
        }
        return string
    }

    func key(_ index: Int, _ name: String) throws -> CacheKey {
        let bytes = try self.expect(.binary, index, name).bytes
        guard let key = CacheKey(bytes: bytes) else { throw self.invalid(index, name, "must be 32 bytes, is \(bytes.count)") }
        return key
    }

    func functionVersion(at index: Int) throws -> FunctionVersion {
        FunctionVersion(
            function: try self.string(index, "function", maxBytes: 512),
            version: try self.string(index + 1, "version", maxBytes: 128)
        )
    }

    /// A binary field as a slice of the payload buffer (no copy).
    func binary(_ index: Int, _ name: String) throws -> ByteBuffer {
        let bytes = try self.expect(.binary, index, name).bytes
        guard bytes.count > 0, let start = bytes.baseAddress, let base = self.base else {
            return ByteBuffer()
        }
        let offset = start - base
        // msgpack-c points binaries into its input, which is the payload's readable bytes.
        return self.payload.getSlice(at: self.payload.readerIndex + offset, length: bytes.count)!
    }

    /// An appended unsigned field: 0 when the message ends before it (a
    /// sender of an earlier revision) or it is nil, else it must be a uint.
    func appendedUnsigned(_ index: Int, _ name: String) throws -> UInt64 {
        guard index < self.array.count, self.array.element(index).kind != .nil else { return 0 }
        return try self.unsigned(index, name)
    }

    /// An appended bool field: false when absent or nil.
    func appendedBool(_ index: Int, _ name: String) throws -> Bool {
        guard index < self.array.count, self.array.element(index).kind != .nil else { return false }
        return try self.bool(index, name)
    }

    /// nil when the element is MessagePack nil, otherwise what `read` returns.
    func optional<T>(_ index: Int, _ read: () throws -> T) throws -> T? {
        guard try self.element(index, "optional field").kind != .nil else { return nil }
        return try read()
    }

    /// The functions reply's list; see `FunctionInfo`, `VersionInfo` and `LeaseInfo`.
    func functions(_ index: Int) throws -> [FunctionInfo] {
        let list = try self.expect(.array, index, "functions")
        func fail(_ problem: String) -> GatewayError { self.invalid(index, "functions", problem) }
        func array(_ object: MessagePackObject, _ count: Int, _ what: String) throws -> MessagePackObject {
            guard object.kind == .array, object.count >= count else { throw fail("\(what) must be an array of at least \(count) elements") }
            return object
        }
        func unsigned(_ object: MessagePackObject, _ what: String) throws -> UInt64 {
            guard object.kind == .unsigned else { throw fail("\(what) must be an unsigned integer") }
            return object.unsigned
        }
        func string(_ object: MessagePackObject, _ what: String) throws -> String {
            guard object.kind == .string, let text = String(validating: object.bytes, as: UTF8.self) else { throw fail("\(what) must be a UTF-8 string") }
            return text
        }
        var functions: [FunctionInfo] = []
        for item in 0..<list.count {
            let function = try array(list.element(item), 5, "a function")
            var info = FunctionInfo(
                function: try string(function.element(0), "function"),
                hits: try unsigned(function.element(1), "hits"),
                misses: try unsigned(function.element(2), "misses"),
                computeSavedMicroseconds: try unsigned(function.element(3), "computeSavedMicroseconds")
            )
            let versions = try array(function.element(4), 0, "versions")
            for position in 0..<versions.count {
                let version = try array(versions.element(position), 6, "a version")
                let leases = try array(version.element(5), 0, "leases")
                var leaseInfos: [LeaseInfo] = []
                for lease in 0..<leases.count {
                    let pair = try array(leases.element(lease), 2, "a lease")
                    leaseInfos.append(LeaseInfo(gateway: try string(pair.element(0), "gateway"), expiresMilliseconds: try unsigned(pair.element(1), "expires")))
                }
                info.versions.append(VersionInfo(
                    version: try string(version.element(0), "version"),
                    firstSeenMilliseconds: try unsigned(version.element(1), "firstSeen"),
                    lastSeenMilliseconds: try unsigned(version.element(2), "lastSeen"),
                    entries: try unsigned(version.element(3), "entries"),
                    state: try string(version.element(4), "state"),
                    leases: leaseInfos
                ))
            }
            functions.append(info)
        }
        return functions
    }

    func stats(_ index: Int) throws -> Stats {
        let map = try self.expect(.map, index, "stats")
        var values: [String: Stats.Value] = [:]
        for entry in 0..<map.count {
            let key = map.key(entry)
            guard key.kind == .string, let name = String(validating: key.bytes, as: UTF8.self) else {
                throw self.invalid(index, "stats", "keys must be UTF-8 strings")
            }
            let value = map.value(entry)
            switch value.kind {
            case .unsigned: values[name] = .count(value.unsigned)
            case .string:
                guard let text = String(validating: value.bytes, as: UTF8.self) else {
                    throw self.invalid(index, "stats", "value of \(name) is not UTF-8")
                }
                values[name] = .text(text)
            default: throw self.invalid(index, "stats", "value of \(name) must be an unsigned integer or a string")
            }
        }
        return Stats(values: values)
    }
}
