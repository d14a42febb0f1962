#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Encodes `Encodable` values as MessagePack, through msgpack-c's packer.
///
/// The mapping (see docs/PROTOCOL.md, "Encoding values"):
/// - `nil` is nil; `Bool` is bool; signed and unsigned integers use the
///   shortest form, non-negative values in the unsigned family; `Float` is
///   float32 and `Double` is float64.
/// - `String` is str; `Data` and `[UInt8]` are bin.
/// - Keyed containers (structs, classes) are maps keyed by the property name.
/// - Unkeyed containers (arrays) are arrays.
/// - Dictionaries are maps whose keys are encoded values (so `[Int: T]` has int keys).
/// - Sets are arrays.
///
/// In **canonical** mode the same logical value gives the same bytes in every
/// process and on every host: map entries are sorted by the bytes of their
/// encoded keys, set elements by the bytes of their encoding, `-0.0` is
/// written as `0.0` and every NaN as the quiet NaN (float64 `0x7ff8000000000000`,
/// float32 `0x7fc00000`). Cache keys use canonical mode; stored values do not need it.
public struct MessagePackEncoder: Sendable {
    /// Whether to write the canonical form (used for cache keys).
    public var isCanonical: Bool

    /// Values handed to every `encode(to:)` through `Encoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable]

    /// Creates an encoder; `canonical` selects canonical mode.
    public init(canonical: Bool = false, userInfo: [CodingUserInfoKey: any Sendable] = [:]) {
        self.isCanonical = canonical
        self.userInfo = userInfo
    }

    /// Encodes `value` and returns its MessagePack bytes.
    public func encode(_ value: some Encodable) throws -> [UInt8] {
        let writer = MessagePackWriter()
        try self.encode(value, into: writer)
        return writer.bytes
    }

    /// Encodes `value` and calls `body` with the bytes, without copying them out
    /// of the packer's buffer.
    public func withEncoded<R>(
        _ value: some Encodable,
        _ body: (UnsafeRawBufferPointer) throws -> R
    ) throws -> R {
        let writer = MessagePackWriter()
        try self.encode(value, into: writer)
        return try writer.withUnsafeBytes(body)
    }

    func encode(_ value: some Encodable, into writer: MessagePackWriter) throws {
        let context = EncodingContext(canonical: self.isCanonical, userInfo: self.userInfo)
        let node: EncodedNode
        do {
            node = try context.box(value, at: CodingPathNode(parent: nil, key: nil), depth: 0)
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError(.unencodable, "encoding \(type(of: value)) failed: \(error)")
        }
        try node.pack(into: writer, canonical: self.isCanonical)
    }
}

// MARK: - The encoded tree

/// A value on its way to the packer. Containers are boxes so that nested
/// containers handed out by `Encoder` can still be filled after they are linked in.
enum EncodedNode {
    case `nil`
    case bool(Bool)
    case signed(Int64)
    case unsigned(UInt64)
    case float(Float)
    case double(Double)
    case string(String)
    case binary([UInt8])
    case array(ArrayBox)
    case map(MapBox)
    /// The value of an encoder handed out by `superEncoder()`: it may be written
    /// after its parent links it in, so it is read when packing.
    case deferred(_MessagePackEncoder)

    final class ArrayBox {
        var elements: [EncodedNode] = []
        /// Set elements: their order carries no meaning, so canonical mode sorts them.
        var isUnordered = false
    }

    final class MapBox {
        var entries: [(key: EncodedNode, value: EncodedNode)] = []

        /// Adds a string-keyed entry; a second value for the same key replaces the first.
        func set(_ key: String, _ value: EncodedNode) {
            for index in self.entries.indices {
                if case .string(let existing) = self.entries[index].key, existing == key {
                    self.entries[index].value = value
                    return
                }
            }
            self.entries.append((.string(key), value))
        }
    }

    /// Packs this node. `depth` counts the containers around it; like
    /// msgpack-c's parser, at most `MessagePack.maximumDepth` may nest.
    func pack(into writer: MessagePackWriter, canonical: Bool, depth: Int = 0) throws {
        switch self {
        case .nil: try writer.packNil()
        case .bool(let value): try writer.pack(value)
        case .signed(let value): try writer.pack(value)
        case .unsigned(let value): try writer.pack(value)
        case .float(var value):
            if canonical {
                if value.isNaN { value = Float(bitPattern: 0x7fc0_0000) } else if value == 0 { value = 0 }
            }
            try writer.pack(value)
        case .double(var value):
            if canonical {
                if value.isNaN { value = Double(bitPattern: 0x7ff8_0000_0000_0000) } else if value == 0 { value = 0 }
            }
            try writer.pack(value)
        case .string(let value): try writer.pack(string: value)
        case .binary(let value): try value.withUnsafeBytes { (raw) in try writer.pack(binary: raw) }
        case .array(let box):
            try Self.checkDepth(depth)
            try writer.packArrayHeader(count: box.elements.count)
            if canonical && box.isUnordered {
                for encoded in try Self.sortedEncodings(box.elements, depth: depth + 1) {
                    try encoded.withUnsafeBytes { (raw) in try writer.writeRaw(raw) }
                }
            } else {
                for element in box.elements { try element.pack(into: writer, canonical: canonical, depth: depth + 1) }
            }
        case .map(let box):
            try Self.checkDepth(depth)
            try writer.packMapHeader(count: box.entries.count)
            if canonical {
                var keyed: [(key: [UInt8], value: EncodedNode)] = []
                keyed.reserveCapacity(box.entries.count)
                for entry in box.entries {
                    keyed.append((try entry.key.encoded(canonical: true, depth: depth + 1), entry.value))
                }
                keyed.sort { $0.key.lexicographicallyPrecedes($1.key) }
                for entry in keyed {
                    try entry.key.withUnsafeBytes { (raw) in try writer.writeRaw(raw) }
                    try entry.value.pack(into: writer, canonical: true, depth: depth + 1)
                }
            } else {
                for entry in box.entries {
                    try entry.key.pack(into: writer, canonical: false, depth: depth + 1)
                    try entry.value.pack(into: writer, canonical: false, depth: depth + 1)
                }
            }
        case .deferred(let encoder):
            try encoder.result.pack(into: writer, canonical: canonical, depth: depth)
        }
    }

    /// This node's bytes on their own.
    func encoded(canonical: Bool, depth: Int = 0) throws -> [UInt8] {
        let writer = MessagePackWriter()
        try self.pack(into: writer, canonical: canonical, depth: depth)
        return writer.bytes
    }

    private static func sortedEncodings(_ nodes: [EncodedNode], depth: Int) throws -> [[UInt8]] {
        var encodings: [[UInt8]] = []
        encodings.reserveCapacity(nodes.count)
        for node in nodes { encodings.append(try node.encoded(canonical: true, depth: depth)) }
        encodings.sort { $0.lexicographicallyPrecedes($1) }
        return encodings
    }

    private static func checkDepth(_ depth: Int) throws {
        guard depth < MessagePack.maximumDepth else {
            throw GatewayError(.nestingTooDeep, "the value nests more than \(MessagePack.maximumDepth) containers")
        }
    }
}

// MARK: - Types with their own MessagePack form

/// Dictionaries encode as MessagePack maps whose keys are encoded values, not as
/// the alternating key/value arrays that `Dictionary.encode(to:)` writes for
/// keys other than `String` and `Int`.
protocol _MessagePackEncodableDictionary {
    func _encodedEntries(
        _ context: EncodingContext,
        at path: CodingPathNode,
        depth: Int
    ) throws -> [(key: EncodedNode, value: EncodedNode)]
}

extension Dictionary: _MessagePackEncodableDictionary where Key: Encodable, Value: Encodable {
    func _encodedEntries(
        _ context: EncodingContext,
        at path: CodingPathNode,
        depth: Int
    ) throws -> [(key: EncodedNode, value: EncodedNode)] {
        var entries: [(key: EncodedNode, value: EncodedNode)] = []
        entries.reserveCapacity(self.count)
        let dictionary = CodingPathLink(path)
        for (key, value) in self {
            let entry = CodingPathNode(parent: dictionary, key: DescribedKey(key))
            entries.append((try context.box(key, at: entry, depth: depth), try context.box(value, at: entry, depth: depth)))
        }
        return entries
    }
}

/// Sets are arrays whose order carries no meaning; canonical mode sorts them.
protocol _MessagePackEncodableSet {}
extension Set: _MessagePackEncodableSet {}

// MARK: - The Encoder

/// State shared by every `Encoder` of one `encode` call.
struct EncodingContext {
    let canonical: Bool
    let userInfo: [CodingUserInfoKey: any Sendable]

    /// Encodes one value at `depth` (the number of containers around it).
    func box<T: Encodable>(_ value: T, at path: CodingPathNode, depth: Int) throws -> EncodedNode {
        // Metatypes compared, not `value as? String` and so on: in this
        // generic code each such cast is a call into the runtime, and a
        // struct went through five failing ones before being encoded.
        if T.self == String.self { return .string(value as! String) }
        if T.self == Int.self { return .signed(Int64(value as! Int)) }
        if T.self == Bool.self { return .bool(value as! Bool) }
        if T.self == Double.self { return .double(value as! Double) }
        if T.self == Data.self { return .binary(Array(value as! Data)) }
        // Not `value as? [UInt8]`: an empty `[T]` of any element type casts
        // to `[UInt8]`, and would then be written as an empty binary.
        if T.self == [UInt8].self, let bytes = value as? [UInt8] { return .binary(bytes) }
        if let dictionary = value as? any _MessagePackEncodableDictionary {
            try self.checkDepth(depth, path.codingPath)
            let box = EncodedNode.MapBox()
            box.entries = try dictionary._encodedEntries(self, at: path, depth: depth + 1)
            return .map(box)
        }
        let encoder = _MessagePackEncoder(context: self, at: path, depth: depth)
        try value.encode(to: encoder)
        let node = encoder.result
        if value is any _MessagePackEncodableSet, case .array(let box) = node {
            box.isUnordered = true
        }
        return node
    }

    /// Stops the recursion of `encode(to:)` early for values that nest too deeply.
    /// (The exact limit is enforced when packing, which sees every container,
    /// including those opened with `nestedContainer`.)
    func checkDepth(_ depth: Int, _ codingPath: @autoclosure () -> [any CodingKey]) throws {
        guard depth <= MessagePack.maximumDepth else {
            throw GatewayError(
                .nestingTooDeep,
                "value at \(codingPath().pathDescription) nests deeper than \(MessagePack.maximumDepth) containers"
            )
        }
    }
}

final class _MessagePackEncoder: Encoder, CodingPathParent {
    let context: EncodingContext
    /// Where the value sits; its coding path is made only when asked for
    /// (see `CodingPathNode`).
    let path: CodingPathNode
    var codingPath: [any CodingKey] { self.path.codingPath }
    /// The number of containers around the value this encoder writes.
    let depth: Int
    private(set) var storage: EncodedNode?

    var userInfo: [CodingUserInfoKey: Any] { self.context.userInfo }

    init(context: EncodingContext, at path: CodingPathNode, depth: Int) {
        self.context = context
        self.path = path
        self.depth = depth
    }

    /// What was written; an encoder nobody wrote to yields an empty map, as with JSONEncoder.
    var result: EncodedNode {
        self.storage ?? .map(EncodedNode.MapBox())
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: EncodedNode.MapBox
        if case .map(let existing) = self.storage {
            box = existing
        } else {
            box = EncodedNode.MapBox()
            self.storage = .map(box)
        }
        return KeyedEncodingContainer(KeyedContainer<Key>(encoder: self, box: box))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let box: EncodedNode.ArrayBox
        if case .array(let existing) = self.storage {
            box = existing
        } else {
            box = EncodedNode.ArrayBox()
            self.storage = .array(box)
        }
        return UnkeyedContainer(encoder: self, box: box)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleValueContainer(encoder: self)
    }

    func set(_ node: EncodedNode) {
        self.storage = node
    }

    /// Encodes a value one container deeper than this encoder.
    fileprivate func child<T: Encodable>(_ value: T, key: any CodingKey) throws -> EncodedNode {
        try self.context.checkDepth(self.depth, self.codingPath)
        return try self.context.box(value, at: CodingPathNode(parent: self, key: key), depth: self.depth + 1)
    }

    fileprivate func superEncoder(key: any CodingKey) -> (_MessagePackEncoder, EncodedNode) {
        // Its path is made now, not linked to this encoder: the deferred node
        // holds the new encoder in this one's tree, and a link back would be
        // a reference cycle (a leak, found by the fuzzer's LeakSanitizer).
        let path = CodingPathNode(parent: CodingPathLink(fixed: self.codingPath), key: key)
        let encoder = _MessagePackEncoder(context: self.context, at: path, depth: self.depth + 1)
        return (encoder, .deferred(encoder))
    }

    fileprivate func nested<Key: CodingKey>(keyedBy type: Key.Type, key: any CodingKey) -> (KeyedEncodingContainer<Key>, EncodedNode) {
        let box = EncodedNode.MapBox()
        let encoder = _MessagePackEncoder(context: self.context, at: CodingPathNode(parent: self, key: key), depth: self.depth + 1)
        return (KeyedEncodingContainer(KeyedContainer<Key>(encoder: encoder, box: box)), .map(box))
    }

    fileprivate func nestedUnkeyed(key: any CodingKey) -> (any UnkeyedEncodingContainer, EncodedNode) {
        let box = EncodedNode.ArrayBox()
        let encoder = _MessagePackEncoder(context: self.context, at: CodingPathNode(parent: self, key: key), depth: self.depth + 1)
        return (UnkeyedContainer(encoder: encoder, box: box), .array(box))
    }
}

private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: _MessagePackEncoder
    let box: EncodedNode.MapBox
    var codingPath: [any CodingKey] { self.encoder.codingPath }

    mutating func encodeNil(forKey key: Key) throws { self.box.set(key.stringValue, .nil) }
    mutating func encode(_ value: Bool, forKey key: Key) throws { self.box.set(key.stringValue, .bool(value)) }
    mutating func encode(_ value: String, forKey key: Key) throws { self.box.set(key.stringValue, .string(value)) }
    mutating func encode(_ value: Double, forKey key: Key) throws { self.box.set(key.stringValue, .double(value)) }
    mutating func encode(_ value: Float, forKey key: Key) throws { self.box.set(key.stringValue, .float(value)) }
    mutating func encode(_ value: Int, forKey key: Key) throws { self.box.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { self.box.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { self.box.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { self.box.set(key.stringValue, .signed(Int64(value))) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { self.box.set(key.stringValue, .signed(value)) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { self.box.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { self.box.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { self.box.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { self.box.set(key.stringValue, .unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { self.box.set(key.stringValue, .unsigned(value)) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        self.box.set(key.stringValue, try self.encoder.child(value, key: key))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let (container, node) = self.encoder.nested(keyedBy: keyType, key: key)
        self.box.set(key.stringValue, node)
        return container
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let (container, node) = self.encoder.nestedUnkeyed(key: key)
        self.box.set(key.stringValue, node)
        return container
    }

    mutating func superEncoder() -> any Encoder { self.superEncoder(for: MessagePackCodingKey.super) }

    mutating func superEncoder(forKey key: Key) -> any Encoder { self.superEncoder(for: key) }

    private mutating func superEncoder(for key: any CodingKey) -> any Encoder {
        let (encoder, node) = self.encoder.superEncoder(key: key)
        self.box.set(key.stringValue, node)
        return encoder
    }
}

private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let encoder: _MessagePackEncoder
    let box: EncodedNode.ArrayBox
    var codingPath: [any CodingKey] { self.encoder.codingPath }
    var count: Int { self.box.elements.count }

    private var nextKey: IndexKey { IndexKey(self.box.elements.count) }

    mutating func encodeNil() throws { self.box.elements.append(.nil) }
    mutating func encode(_ value: Bool) throws { self.box.elements.append(.bool(value)) }
    mutating func encode(_ value: String) throws { self.box.elements.append(.string(value)) }
    mutating func encode(_ value: Double) throws { self.box.elements.append(.double(value)) }
    mutating func encode(_ value: Float) throws { self.box.elements.append(.float(value)) }
    mutating func encode(_ value: Int) throws { self.box.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int8) throws { self.box.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int16) throws { self.box.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int32) throws { self.box.elements.append(.signed(Int64(value))) }
    mutating func encode(_ value: Int64) throws { self.box.elements.append(.signed(value)) }
    mutating func encode(_ value: UInt) throws { self.box.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { self.box.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { self.box.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { self.box.elements.append(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { self.box.elements.append(.unsigned(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        self.box.elements.append(try self.encoder.child(value, key: self.nextKey))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let (container, node) = self.encoder.nested(keyedBy: keyType, key: self.nextKey)
        self.box.elements.append(node)
        return container
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let (container, node) = self.encoder.nestedUnkeyed(key: self.nextKey)
        self.box.elements.append(node)
        return container
    }

    mutating func superEncoder() -> any Encoder {
        let (encoder, node) = self.encoder.superEncoder(key: self.nextKey)
        self.box.elements.append(node)
        return encoder
    }
}

private struct SingleValueContainer: SingleValueEncodingContainer {
    let encoder: _MessagePackEncoder
    var codingPath: [any CodingKey] { self.encoder.codingPath }

    mutating func encodeNil() throws { self.encoder.set(.nil) }
    mutating func encode(_ value: Bool) throws { self.encoder.set(.bool(value)) }
    mutating func encode(_ value: String) throws { self.encoder.set(.string(value)) }
    mutating func encode(_ value: Double) throws { self.encoder.set(.double(value)) }
    mutating func encode(_ value: Float) throws { self.encoder.set(.float(value)) }
    mutating func encode(_ value: Int) throws { self.encoder.set(.signed(Int64(value))) }
    mutating func encode(_ value: Int8) throws { self.encoder.set(.signed(Int64(value))) }
    mutating func encode(_ value: Int16) throws { self.encoder.set(.signed(Int64(value))) }
    mutating func encode(_ value: Int32) throws { self.encoder.set(.signed(Int64(value))) }
    mutating func encode(_ value: Int64) throws { self.encoder.set(.signed(value)) }
    mutating func encode(_ value: UInt) throws { self.encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt8) throws { self.encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt16) throws { self.encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt32) throws { self.encoder.set(.unsigned(UInt64(value))) }
    mutating func encode(_ value: UInt64) throws { self.encoder.set(.unsigned(value)) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        // A single-value container wraps its value without adding a level.
        self.encoder.set(try self.encoder.context.box(value, at: self.encoder.path, depth: self.encoder.depth))
    }
}

/// Coding keys that the encoder and decoder make up themselves.
struct MessagePackCodingKey: CodingKey {
    let stringValue: String
    let intValue: Int?

    init(stringValue: String) { self.stringValue = stringValue; self.intValue = nil }
    init(intValue: Int) { self.stringValue = "\(intValue)"; self.intValue = intValue }

    static let `super` = MessagePackCodingKey(stringValue: "super")
}

extension [any CodingKey] {
    /// A dotted path such as `items.Index 2.name`, or `<root>`.
    var pathDescription: String {
        self.isEmpty ? "<root>" : self.map(\.stringValue).joined(separator: ".")
    }
}
