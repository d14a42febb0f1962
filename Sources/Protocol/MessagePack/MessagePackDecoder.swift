#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import NIOCore

/// Decodes `Decodable` values from MessagePack, through msgpack-c's unpacker.
///
/// It reads what `MessagePackEncoder` writes, in either mode. Every failure is a
/// `GatewayError` naming the coding path: `.malformedMessage` and
/// `.nestingTooDeep` for bytes that are not one well-formed value,
/// `.invalidUTF8` for strings, `.typeMismatch`, `.valueOutOfRange` and
/// `.missingValue` for values that do not fit the type asked for.
public struct MessagePackDecoder: Sendable {
    /// Values handed to every `init(from:)` through `Decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable]

    /// Creates a decoder.
    public init(userInfo: [CodingUserInfoKey: any Sendable]) {
        self.userInfo = userInfo
    }

    /// Creates a decoder with no `userInfo`.
    ///
    /// Its own initializer rather than a default argument: `[:]` as a default
    /// is built through `Dictionary(dictionaryLiteral:)` at every call, which
    /// was about 1.5% of a client's time on a hit (the client makes a decoder
    /// per value); an empty `Dictionary()` is a shared singleton.
    public init() {
        self.userInfo = Dictionary()
    }

    /// Decodes a `T` from bytes that hold exactly one MessagePack value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        do {
            // `take` and `giveBack` rather than `borrow`: inside this generic
            // function, `borrow` (generic over its result) is not specialized,
            // and looked up `[MessagePackZone]`'s metadata on every decode.
            let zone = try MessagePackZone.pool.take()
            defer { MessagePackZone.pool.giveBack(zone) }
            return try MessagePackObject.withUnpacked(bytes, zone: zone) { root in
                try DecodingContext(userInfo: self.userInfo).unbox(type, from: root, at: CodingPathNode(parent: nil, key: nil))
            }
        } catch let error as GatewayError {
            throw error
        } catch {
            // `init(from:)` of the decoded type threw something of its own.
            throw GatewayError(.typeMismatch, "decoding \(T.self) failed: \(error)")
        }
    }

    /// Decodes a `T` from bytes that hold exactly one MessagePack value.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { (raw) in try self.decode(type, from: raw) }
    }

    /// Decodes a `T` from the readable bytes of `buffer`, which must be exactly one MessagePack value.
    ///
    /// Inlinable, so that it is specialized for the caller's `T`: a `[UInt8]`,
    /// `Data` or `String` that is exactly one binary or string value, the
    /// usual shape of a cached blob or text, is then read straight from the
    /// bytes, without msgpack-c's unpacker, its zone or a dynamic cast (on a
    /// client's hit, that was most of decoding's 14%). Anything else, and
    /// anything unusual about those (a string that is not UTF-8, an array of
    /// integers for `[UInt8]`), goes the general way, which reads it or says why not.
    @inlinable
    public func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        if T.self == [UInt8].self || T.self == Data.self || T.self == String.self {
            let direct = buffer.withUnsafeReadableBytes { (raw) -> T? in
                if T.self == String.self {
                    return MessagePackBytes.stringPayload(raw).flatMap(MessagePackBytes.utf8String) as? T
                }
                guard let payload = MessagePackBytes.binaryPayload(raw) else { return nil }
                return T.self == Data.self ? Data(payload) as? T : Array(payload) as? T
            }
            if let direct { return direct }
        }
        return try buffer.withUnsafeReadableBytes { (raw) in try self.decode(type, from: raw) }
    }
}

/// Dictionaries decode from MessagePack maps with keys of any type (the
/// counterpart of `_MessagePackEncodableDictionary`).
protocol _MessagePackDecodableDictionary {
    static func _decode(from map: MessagePackObject, context: DecodingContext, at path: CodingPathNode) throws -> Self
}

extension Dictionary: _MessagePackDecodableDictionary where Key: Decodable, Value: Decodable {
    static func _decode(from map: MessagePackObject, context: DecodingContext, at path: CodingPathNode) throws -> Self {
        var result: [Key: Value] = [:]
        result.reserveCapacity(map.count)
        let dictionary = CodingPathLink(path)
        for index in 0..<map.count {
            let entry = CodingPathNode(parent: dictionary, key: IndexKey(index))
            let key = try context.unbox(Key.self, from: map.key(index), at: entry)
            // A repeated key keeps its last value, as MessagePack decoders commonly do.
            result[key] = try context.unbox(Value.self, from: map.value(index), at: entry)
        }
        return result
    }
}

/// State shared by every `Decoder` of one `decode` call.
struct DecodingContext {
    let userInfo: [CodingUserInfoKey: any Sendable]

    /// Decodes any `Decodable`: the scalars and binaries directly (metatypes
    /// compared, which is cheaper than the dynamic casts of a `switch` over
    /// `is T.Type` patterns), dictionaries as maps, the rest through `init(from:)`.
    /// The containers' scalar overloads (what synthesized `Codable` calls)
    /// skip this; their generic `decode` comes here.
    func unbox<T: Decodable>(_ type: T.Type, from object: MessagePackObject, at path: CodingPathNode) throws -> T {
        if T.self == String.self { return try Scalars.string(object, path.codingPath) as! T }
        if T.self == Int.self { return try Scalars.integer(Int.self, object, path.codingPath) as! T }
        if T.self == Bool.self { return try Scalars.bool(object, path.codingPath) as! T }
        if T.self == Double.self { return try Scalars.double(object, path.codingPath) as! T }
        if T.self == Float.self { return try Scalars.float(object, path.codingPath) as! T }
        if T.self == Int8.self { return try Scalars.integer(Int8.self, object, path.codingPath) as! T }
        if T.self == Int16.self { return try Scalars.integer(Int16.self, object, path.codingPath) as! T }
        if T.self == Int32.self { return try Scalars.integer(Int32.self, object, path.codingPath) as! T }
        if T.self == Int64.self { return try Scalars.integer(Int64.self, object, path.codingPath) as! T }
        if T.self == UInt.self { return try Scalars.integer(UInt.self, object, path.codingPath) as! T }
        if T.self == UInt8.self { return try Scalars.integer(UInt8.self, object, path.codingPath) as! T }
        if T.self == UInt16.self { return try Scalars.integer(UInt16.self, object, path.codingPath) as! T }
        if T.self == UInt32.self { return try Scalars.integer(UInt32.self, object, path.codingPath) as! T }
        if T.self == UInt64.self { return try Scalars.integer(UInt64.self, object, path.codingPath) as! T }
        if T.self == Data.self { return Data(try Scalars.binary(object, path.codingPath)) as! T }
        if T.self == [UInt8].self, object.kind == .binary { return Array(object.bytes) as! T }
        // The conformance lookup (a dynamic cast) is skipped for scalars and
        // binaries, the usual top-level results: a dictionary cannot decode
        // from them, and `init(from:)` fails for it with a type mismatch too
        // (an array is still checked, as `init(from:)` would read key-value pairs from it).
        if object.kind == .map || object.kind == .array, let dictionaryType = T.self as? any _MessagePackDecodableDictionary.Type {
            try Scalars.expect(.map, object, path.codingPath)
            return try dictionaryType._decode(from: object, context: self, at: path) as! T
        }
        return try T(from: _MessagePackDecoder(context: self, object: object, at: path))
    }
}

/// Conversions from a MessagePack value to Swift scalars, with range checks.
///
/// The coding path, for the error's message, is an autoclosure: it is put
/// together only when there is an error.
enum Scalars {
    static func mismatch(_ expected: String, _ object: MessagePackObject, _ codingPath: [any CodingKey]) -> GatewayError {
        GatewayError(.typeMismatch, "expected \(expected) at \(codingPath.pathDescription), found \(object.kind)")
    }

    static func expect(_ kind: MessagePackObject.Kind, _ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws {
        guard object.kind == kind else { throw self.mismatch("\(kind)", object, codingPath()) }
    }

    static func bool(_ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Bool {
        try self.expect(.bool, object, codingPath())
        return object.bool
    }

    static func string(_ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> String {
        try self.expect(.string, object, codingPath())
        // Not `String(validating:as:)`: see `MessagePackBytes.utf8String`.
        guard let string = MessagePackBytes.utf8String(object.bytes) else {
            throw GatewayError(.invalidUTF8, "the string at \(codingPath().pathDescription) is not valid UTF-8")
        }
        return string
    }

    static func binary(_ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> UnsafeRawBufferPointer {
        try self.expect(.binary, object, codingPath())
        return object.bytes
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> I {
        let value: I?
        switch object.kind {
        case .unsigned: value = I(exactly: object.unsigned)
        case .negative: value = I(exactly: object.negative)
        default: throw self.mismatch("\(I.self)", object, codingPath())
        }
        guard let value else {
            let number = object.kind == .unsigned ? "\(object.unsigned)" : "\(object.negative)"
            throw GatewayError(.valueOutOfRange, "\(number) at \(codingPath().pathDescription) does not fit \(I.self)")
        }
        return value
    }

    static func double(_ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Double {
        switch object.kind {
        case .float32, .float64: return object.double
        case .unsigned, .negative:
            let exact = object.kind == .unsigned ? Double(exactly: object.unsigned) : Double(exactly: object.negative)
            guard let exact else {
                throw GatewayError(.valueOutOfRange, "the integer at \(codingPath().pathDescription) has no exact Double")
            }
            return exact
        default: throw self.mismatch("Double", object, codingPath())
        }
    }

    static func float(_ object: MessagePackObject, _ codingPath: @autoclosure () -> [any CodingKey]) throws -> Float {
        let double = try self.double(object, codingPath())
        if double.isNaN { return .nan }
        guard let exact = Float(exactly: double) else {
            throw GatewayError(.valueOutOfRange, "\(double) at \(codingPath().pathDescription) has no exact Float")
        }
        return exact
    }
}

final class _MessagePackDecoder: Decoder, CodingPathParent {
    let context: DecodingContext
    let object: MessagePackObject
    /// Where `object` sits (its coding path, made on demand).
    let path: CodingPathNode
    /// Where a keyed container's last lookup in `object` ended: the next
    /// lookup starts there. Synthesized `Codable` reads the keys in the order
    /// it wrote them, so each is found at the first place looked.
    var nextKeyIndex = 0

    var codingPath: [any CodingKey] { self.path.codingPath }
    var userInfo: [CodingUserInfoKey: Any] { self.context.userInfo }

    init(context: DecodingContext, object: MessagePackObject, at path: CodingPathNode) {
        self.context = context
        self.object = object
        self.path = path
    }

    /// The node of a value inside this decoder's value, under `key`.
    func child(_ key: any CodingKey) -> CodingPathNode {
        CodingPathNode(parent: self, key: key)
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try Scalars.expect(.map, self.object, self.codingPath)
        return KeyedDecodingContainer(KeyedContainer<Key>(decoder: self, map: self.object))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try Scalars.expect(.array, self.object, self.codingPath)
        return UnkeyedContainer(decoder: self, array: self.object)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        SingleValueContainer(decoder: self)
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: _MessagePackDecoder
    let map: MessagePackObject
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    var allKeys: [Key] {
        (0..<self.map.count).compactMap { index in
            let key = self.map.key(index)
            switch key.kind {
            case .string: return MessagePackBytes.utf8String(key.bytes).flatMap(Key.init(stringValue:))
            case .unsigned: return Int(exactly: key.unsigned).flatMap(Key.init(intValue:))
            case .negative: return Int(exactly: key.negative).flatMap(Key.init(intValue:))
            default: return nil
            }
        }
    }

    /// The value stored under `key`, found by comparing UTF-8 bytes (no String is built).
    private func find(_ key: Key) -> MessagePackObject? {
        self.find(named: key.stringValue)
    }

    /// Looks from where the last lookup ended (see `nextKeyIndex`), around
    /// the whole map once at most. Should a key appear twice in the map
    /// (which the encoder never writes), the occurrence found depends on the
    /// lookups before it; either is a value the map holds.
    private func find(named name: String) -> MessagePackObject? {
        var name = name
        return name.withUTF8 { wanted in
            let count = self.map.count
            var index = self.decoder.nextKeyIndex
            for _ in 0..<count {
                if index >= count { index = 0 }
                let candidate = self.map.key(index)
                if candidate.kind == .string {
                    let bytes = candidate.bytes
                    if bytes.count == wanted.count && (wanted.isEmpty || memcmp(bytes.baseAddress!, wanted.baseAddress!, wanted.count) == 0) {
                        self.decoder.nextKeyIndex = index + 1
                        return self.map.value(index)
                    }
                }
                index += 1
            }
            return nil
        }
    }

    private func require(_ key: Key) throws -> MessagePackObject {
        guard let value = self.find(key) else {
            throw GatewayError(.missingValue, "no value for key '\(key.stringValue)' at \(self.codingPath.pathDescription)")
        }
        return value
    }

    /// The value under `key` unless it is absent or nil.
    private func present(_ key: Key) -> MessagePackObject? {
        guard let value = self.find(key), value.kind != .nil else { return nil }
        return value
    }

    private func path(_ key: Key) -> [any CodingKey] { self.codingPath + [key] }

    func contains(_ key: Key) -> Bool { self.find(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { try self.require(key).kind == .nil }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try self.decoder.context.unbox(type, from: try self.require(key), at: self.decoder.child(key))
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let value = self.present(key) else { return nil }
        return try self.decoder.context.unbox(type, from: value, at: self.decoder.child(key))
    }

    // The scalar overloads that synthesized `Codable` calls, each straight to
    // its conversion (the protocol's defaults go through the generic `decode`,
    // and `decodeIfPresent`'s look the key up three times).
    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try Scalars.bool(try self.require(key), self.path(key)) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try Scalars.string(try self.require(key), self.path(key)) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try Scalars.double(try self.require(key), self.path(key)) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try Scalars.float(try self.require(key), self.path(key)) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try Scalars.integer(type, try self.require(key), self.path(key)) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try Scalars.integer(type, try self.require(key), self.path(key)) }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try self.present(key).map { try Scalars.bool($0, self.path(key)) } }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? { try self.present(key).map { try Scalars.string($0, self.path(key)) } }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? { try self.present(key).map { try Scalars.double($0, self.path(key)) } }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try self.present(key).map { try Scalars.float($0, self.path(key)) } }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? { try self.present(key).map { try Scalars.integer(type, $0, self.path(key)) } }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try self.subdecoder(try self.require(key), key).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try self.subdecoder(try self.require(key), key).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder {
        // The encoder writes the literal key "super", which `Key` need not have a case for.
        let key = MessagePackCodingKey.super
        guard let value = self.find(named: key.stringValue) else {
            throw GatewayError(.missingValue, "no 'super' value at \(self.codingPath.pathDescription)")
        }
        return self.subdecoder(value, key)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        self.subdecoder(try self.require(key), key)
    }

    private func subdecoder(_ object: MessagePackObject, _ key: any CodingKey) -> _MessagePackDecoder {
        _MessagePackDecoder(context: self.decoder.context, object: object, at: self.decoder.child(key))
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer {
    let decoder: _MessagePackDecoder
    let array: MessagePackObject
    private(set) var currentIndex = 0

    init(decoder: _MessagePackDecoder, array: MessagePackObject) {
        self.decoder = decoder
        self.array = array
    }

    var codingPath: [any CodingKey] { self.decoder.codingPath }
    var count: Int? { self.array.count }
    var isAtEnd: Bool { self.currentIndex >= self.array.count }

    /// The next element and its node (made before the index moves on).
    private mutating func next() throws -> (MessagePackObject, CodingPathNode) {
        guard !self.isAtEnd else {
            throw GatewayError(.missingValue, "the array at \(self.codingPath.pathDescription) has only \(self.array.count) elements")
        }
        defer { self.currentIndex += 1 }
        return (self.array.element(self.currentIndex), self.decoder.child(IndexKey(self.currentIndex)))
    }

    mutating func decodeNil() throws -> Bool {
        guard !self.isAtEnd, self.array.element(self.currentIndex).kind == .nil else { return false }
        self.currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (value, node) = try self.next()
        return try self.decoder.context.unbox(type, from: value, at: node)
    }

    // The scalar overloads, as in `KeyedContainer`.
    mutating func decode(_ type: Bool.Type) throws -> Bool { let (value, node) = try self.next(); return try Scalars.bool(value, node.codingPath) }
    mutating func decode(_ type: String.Type) throws -> String { let (value, node) = try self.next(); return try Scalars.string(value, node.codingPath) }
    mutating func decode(_ type: Double.Type) throws -> Double { let (value, node) = try self.next(); return try Scalars.double(value, node.codingPath) }
    mutating func decode(_ type: Float.Type) throws -> Float { let (value, node) = try self.next(); return try Scalars.float(value, node.codingPath) }
    mutating func decode(_ type: Int.Type) throws -> Int { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { let (value, node) = try self.next(); return try Scalars.integer(type, value, node.codingPath) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try self.subdecoder().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try self.subdecoder().unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { try self.subdecoder() }

    private mutating func subdecoder() throws -> _MessagePackDecoder {
        let (value, node) = try self.next()
        return _MessagePackDecoder(context: self.decoder.context, object: value, at: node)
    }
}

private struct SingleValueContainer: SingleValueDecodingContainer {
    let decoder: _MessagePackDecoder
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    func decodeNil() -> Bool { self.decoder.object.kind == .nil }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try self.decoder.context.unbox(type, from: self.decoder.object, at: self.decoder.path)
    }
}
