#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
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
                try DecodingContext(userInfo: self.userInfo).unbox(type, from: root, codingPath: [])
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
    public func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        try buffer.withUnsafeReadableBytes { (raw) in try self.decode(type, from: raw) }
    }
}

/// Dictionaries decode from MessagePack maps with keys of any type (the
/// counterpart of `_MessagePackEncodableDictionary`).
protocol _MessagePackDecodableDictionary {
    static func _decode(from map: MessagePackObject, context: DecodingContext, codingPath: [any CodingKey]) throws -> Self
}

extension Dictionary: _MessagePackDecodableDictionary where Key: Decodable, Value: Decodable {
    static func _decode(from map: MessagePackObject, context: DecodingContext, codingPath: [any CodingKey]) throws -> Self {
        var result: [Key: Value] = [:]
        result.reserveCapacity(map.count)
        for index in 0..<map.count {
            let keyPath = codingPath + [MessagePackCodingKey(index: index)]
            let key = try context.unbox(Key.self, from: map.key(index), codingPath: keyPath)
            // A repeated key keeps its last value, as MessagePack decoders commonly do.
            result[key] = try context.unbox(Value.self, from: map.value(index), codingPath: keyPath)
        }
        return result
    }
}

/// State shared by every `Decoder` of one `decode` call.
struct DecodingContext {
    let userInfo: [CodingUserInfoKey: any Sendable]

    func unbox<T: Decodable>(_ type: T.Type, from object: MessagePackObject, codingPath: [any CodingKey]) throws -> T {
        if T.self == String.self { return try Scalars.string(object, codingPath) as! T }
        if T.self == Int.self { return try Scalars.integer(Int.self, object, codingPath) as! T }
        if T.self == Bool.self { return try Scalars.bool(object, codingPath) as! T }
        if T.self == Double.self { return try Scalars.double(object, codingPath) as! T }
        if T.self == Data.self { return Data(try Scalars.binary(object, codingPath)) as! T }
        if T.self == [UInt8].self, object.kind == .binary { return Array(object.bytes) as! T }
        // The conformance lookup (a dynamic cast) is skipped for scalars and
        // binaries, the usual top-level results: a dictionary cannot decode
        // from them, and `init(from:)` fails for it with a type mismatch too
        // (an array is still checked, as `init(from:)` would read key-value pairs from it).
        if object.kind == .map || object.kind == .array, let dictionaryType = T.self as? any _MessagePackDecodableDictionary.Type {
            try Scalars.expect(.map, object, codingPath)
            return try dictionaryType._decode(from: object, context: self, codingPath: codingPath) as! T
        }
        return try T(from: _MessagePackDecoder(context: self, object: object, codingPath: codingPath))
    }
}

/// Conversions from a MessagePack value to Swift scalars, with range checks.
enum Scalars {
    static func mismatch(_ expected: String, _ object: MessagePackObject, _ codingPath: [any CodingKey]) -> GatewayError {
        GatewayError(.typeMismatch, "expected \(expected) at \(codingPath.pathDescription), found \(object.kind)")
    }

    static func expect(_ kind: MessagePackObject.Kind, _ object: MessagePackObject, _ codingPath: [any CodingKey]) throws {
        guard object.kind == kind else { throw self.mismatch("\(kind)", object, codingPath) }
    }

    static func bool(_ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> Bool {
        try self.expect(.bool, object, codingPath)
        return object.bool
    }

    static func string(_ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> String {
        try self.expect(.string, object, codingPath)
        guard let string = String(validating: object.bytes, as: UTF8.self) else {
            throw GatewayError(.invalidUTF8, "the string at \(codingPath.pathDescription) is not valid UTF-8")
        }
        return string
    }

    static func binary(_ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> UnsafeRawBufferPointer {
        try self.expect(.binary, object, codingPath)
        return object.bytes
    }

    static func integer<I: FixedWidthInteger>(_ type: I.Type, _ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> I {
        let value: I?
        switch object.kind {
        case .unsigned: value = I(exactly: object.unsigned)
        case .negative: value = I(exactly: object.negative)
        default: throw self.mismatch("\(I.self)", object, codingPath)
        }
        guard let value else {
            let number = object.kind == .unsigned ? "\(object.unsigned)" : "\(object.negative)"
            throw GatewayError(.valueOutOfRange, "\(number) at \(codingPath.pathDescription) does not fit \(I.self)")
        }
        return value
    }

    static func double(_ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> Double {
        switch object.kind {
        case .float32, .float64: return object.double
        case .unsigned, .negative:
            let exact = object.kind == .unsigned ? Double(exactly: object.unsigned) : Double(exactly: object.negative)
            guard let exact else {
                throw GatewayError(.valueOutOfRange, "the integer at \(codingPath.pathDescription) has no exact Double")
            }
            return exact
        default: throw self.mismatch("Double", object, codingPath)
        }
    }

    static func float(_ object: MessagePackObject, _ codingPath: [any CodingKey]) throws -> Float {
        let double = try self.double(object, codingPath)
        if double.isNaN { return .nan }
        guard let exact = Float(exactly: double) else {
            throw GatewayError(.valueOutOfRange, "\(double) at \(codingPath.pathDescription) has no exact Float")
        }
        return exact
    }
}

final class _MessagePackDecoder: Decoder {
    let context: DecodingContext
    let object: MessagePackObject
    let codingPath: [any CodingKey]

    var userInfo: [CodingUserInfoKey: Any] { self.context.userInfo }

    init(context: DecodingContext, object: MessagePackObject, codingPath: [any CodingKey]) {
        self.context = context
        self.object = object
        self.codingPath = codingPath
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

/// Decodes every scalar type from one `MessagePackObject`; shared by the three container kinds.
private protocol ScalarDecoding {
    var decoder: _MessagePackDecoder { get }
}

extension ScalarDecoding {
    func scalar<T: Decodable>(_ type: T.Type, _ object: MessagePackObject, _ path: [any CodingKey]) throws -> T {
        switch type {
        case is Bool.Type: return try Scalars.bool(object, path) as! T
        case is String.Type: return try Scalars.string(object, path) as! T
        case is Double.Type: return try Scalars.double(object, path) as! T
        case is Float.Type: return try Scalars.float(object, path) as! T
        case is Int.Type: return try Scalars.integer(Int.self, object, path) as! T
        case is Int8.Type: return try Scalars.integer(Int8.self, object, path) as! T
        case is Int16.Type: return try Scalars.integer(Int16.self, object, path) as! T
        case is Int32.Type: return try Scalars.integer(Int32.self, object, path) as! T
        case is Int64.Type: return try Scalars.integer(Int64.self, object, path) as! T
        case is UInt.Type: return try Scalars.integer(UInt.self, object, path) as! T
        case is UInt8.Type: return try Scalars.integer(UInt8.self, object, path) as! T
        case is UInt16.Type: return try Scalars.integer(UInt16.self, object, path) as! T
        case is UInt32.Type: return try Scalars.integer(UInt32.self, object, path) as! T
        case is UInt64.Type: return try Scalars.integer(UInt64.self, object, path) as! T
        default: return try self.decoder.context.unbox(type, from: object, codingPath: path)
        }
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol, ScalarDecoding {
    let decoder: _MessagePackDecoder
    let map: MessagePackObject
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    var allKeys: [Key] {
        (0..<self.map.count).compactMap { index in
            let key = self.map.key(index)
            switch key.kind {
            case .string: return String(validating: key.bytes, as: UTF8.self).flatMap(Key.init(stringValue:))
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

    private func find(named name: String) -> MessagePackObject? {
        var name = name
        return name.withUTF8 { wanted in
            for index in 0..<self.map.count {
                let candidate = self.map.key(index)
                if candidate.kind == .string, candidate.bytes.elementsEqual(UnsafeRawBufferPointer(wanted)) {
                    return self.map.value(index)
                }
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

    func contains(_ key: Key) -> Bool { self.find(key) != nil }

    func decodeNil(forKey key: Key) throws -> Bool { try self.require(key).kind == .nil }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try self.scalar(type, try self.require(key), self.codingPath + [key])
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let value = self.find(key), value.kind != .nil else { return nil }
        return try self.scalar(type, value, self.codingPath + [key])
    }

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
        _MessagePackDecoder(context: self.decoder.context, object: object, codingPath: self.codingPath + [key])
    }
}

private struct UnkeyedContainer: UnkeyedDecodingContainer, ScalarDecoding {
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

    private var currentPath: [any CodingKey] { self.codingPath + [MessagePackCodingKey(index: self.currentIndex)] }

    private mutating func next() throws -> MessagePackObject {
        guard !self.isAtEnd else {
            throw GatewayError(.missingValue, "the array at \(self.codingPath.pathDescription) has only \(self.array.count) elements")
        }
        defer { self.currentIndex += 1 }
        return self.array.element(self.currentIndex)
    }

    mutating func decodeNil() throws -> Bool {
        guard !self.isAtEnd, self.array.element(self.currentIndex).kind == .nil else { return false }
        self.currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let path = self.currentPath
        return try self.scalar(type, try self.next(), path)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        try self.subdecoder().container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try self.subdecoder().unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder { try self.subdecoder() }

    private mutating func subdecoder() throws -> _MessagePackDecoder {
        let path = self.currentPath
        return _MessagePackDecoder(context: self.decoder.context, object: try self.next(), codingPath: path)
    }
}

private struct SingleValueContainer: SingleValueDecodingContainer, ScalarDecoding {
    let decoder: _MessagePackDecoder
    var codingPath: [any CodingKey] { self.decoder.codingPath }

    func decodeNil() -> Bool { self.decoder.object.kind == .nil }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try self.scalar(type, self.decoder.object, self.codingPath)
    }
}
