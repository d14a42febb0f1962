import GatewayDigest
import GatewayProtocol
import NIOConcurrencyHelpers

/// Derives a call's key: the SHA-256 of the canonical MessagePack of
/// `KeyMaterial`, that is of `[resultType, [argumentTypes], argument…]`.
///
/// Encoding `KeyMaterial` through the Codable encoder costs several
/// microseconds per call, most of it spent on the type names
/// (`String(reflecting:)`, then encoding them) and on the encoder's generic
/// machinery for one small array. A canonical MessagePack array is its header
/// followed by its elements' canonical encodings, in order (only maps and sets
/// are sorted), so the same bytes are assembled here from parts: type names
/// encoded once per type and remembered, the common scalar arguments (`Int`,
/// `String`, `Bool`) written directly, every other argument encoded by the
/// canonical encoder. The tests compare the result with `KeyMaterial`'s for
/// many shapes of arguments.
enum KeyBuilder {
    /// The canonical encoding of each type's name, by type.
    private static let typeNames = NIOLockedValueBox<[ObjectIdentifier: [UInt8]]>([:])

    /// The key of a call returning `Result` with `arguments`; nil when an
    /// argument cannot be encoded.
    static func key<Result, each Argument: Encodable>(result: Result.Type, arguments: repeat each Argument) -> CacheKey? {
        var count = 0
        for _ in repeat each arguments { count += 1 }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + 64 * count)
        Self.appendArrayHeader(2 + count, to: &bytes)
        Self.appendTypeName(Result.self, to: &bytes)
        Self.appendArrayHeader(count, to: &bytes)
        for argument in repeat each arguments {
            Self.appendTypeName(type(of: argument), to: &bytes)
        }
        do {
            for argument in repeat each arguments {
                try Self.append(argument, to: &bytes)
            }
            let digest = try bytes.withUnsafeBytes { (raw) in try SHA256.hash(raw) }
            return CacheKey(digest: digest)
        } catch {
            return nil
        }
    }

    /// `function` qualified with the module of `fileID` (the text before its first "/").
    static func qualified(_ function: String, fileID: String) -> String {
        let utf8 = fileID.utf8
        guard let slash = utf8.firstIndex(of: UInt8(ascii: "/")) else {
            return fileID.isEmpty ? function : "\(fileID).\(function)"
        }
        guard slash != utf8.startIndex else {
            // Not a #fileID; kept as the earlier rule had it (the first non-empty part).
            let module = fileID.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            return module.isEmpty ? function : "\(module).\(function)"
        }
        // Copied byte by byte: interpolating a substring costs several times more.
        var module = fileID
        var name = function
        return module.withUTF8 { moduleBytes in
            name.withUTF8 { nameBytes in
                let length = utf8.distance(from: utf8.startIndex, to: slash)
                return String(unsafeUninitializedCapacity: length + 1 + nameBytes.count) { out in
                    out.baseAddress!.initialize(from: moduleBytes.baseAddress!, count: length)
                    out[length] = UInt8(ascii: ".")
                    if !nameBytes.isEmpty {
                        out.baseAddress!.advanced(by: length + 1).initialize(from: nameBytes.baseAddress!, count: nameBytes.count)
                    }
                    return length + 1 + nameBytes.count
                }
            }
        }
    }

    private static func appendTypeName(_ type: Any.Type, to bytes: inout [UInt8]) {
        let id = ObjectIdentifier(type)
        if let known = self.typeNames.withLockedValue({ $0[id] }) {
            bytes += known
            return
        }
        var name: [UInt8] = []
        Self.appendString(String(reflecting: type), to: &name)
        self.typeNames.withLockedValue { $0[id] = name }
        bytes += name
    }

    /// One argument's canonical encoding: written directly for the commonest
    /// scalars (exactly as the canonical encoder writes them), else encoded.
    private static func append<Argument: Encodable>(_ argument: Argument, to bytes: inout [UInt8]) throws {
        if let value = argument as? Int {
            Self.appendInteger(Int64(value), to: &bytes)
        } else if let value = argument as? String {
            Self.appendString(value, to: &bytes)
        } else if let value = argument as? Bool {
            bytes.append(value ? 0xc3 : 0xc2)
        } else {
            try MessagePackEncoder(canonical: true).withEncoded(argument) { bytes.append(contentsOf: $0) }
        }
    }

    /// An array header: fixarray, array 16 or array 32.
    static func appendArrayHeader(_ count: Int, to bytes: inout [UInt8]) {
        switch count {
        case 0...15: bytes.append(0x90 | UInt8(count))
        case 16...0xffff: bytes.append(0xdc); Self.appendBigEndian(UInt16(count), to: &bytes)
        default: bytes.append(0xdd); Self.appendBigEndian(UInt32(count), to: &bytes)
        }
    }

    /// A string with the shortest header: fixstr, str 8, str 16 or str 32.
    static func appendString(_ string: String, to bytes: inout [UInt8]) {
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
    static func appendInteger(_ value: Int64, to bytes: inout [UInt8]) {
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

    private static func appendBigEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }
}
