import GatewayDigest
import GatewayProtocol
import NIOConcurrencyHelpers

/// Derives a call's key: the SHA-256 of the canonical MessagePack of
/// `[resultType, [argumentTypes], argument…]`.
///
/// Encoding that array through the Codable encoder costs several
/// microseconds per call, most of it spent on the type names
/// (`String(reflecting:)`, then encoding them) and on the encoder's generic
/// machinery for one small array. A canonical MessagePack array is its header
/// followed by its elements' canonical encodings, in order (only maps and sets
/// are sorted), so the same bytes are assembled here from parts: type names
/// encoded once per type and remembered, the common scalar arguments (`Int`,
/// `String`, `Bool`) written directly, every other argument encoded by the
/// canonical encoder. The tests (`KeyBuilderTests`) compare the result with
/// the array's through the encoder for many shapes of arguments.
///
/// `key` is inlinable (it is part of `cache`, which is): specialized for the
/// argument types, the checks for the common scalars are decided at compile
/// time.
@usableFromInline
enum KeyBuilder {
    /// The canonical encoding of each type's name, by type.
    private static let typeNames = NIOLockedValueBox<[ObjectIdentifier: [UInt8]]>([:])

    /// The key of a call returning `Result` with `arguments`; nil when an
    /// argument cannot be encoded.
    ///
    /// With `site`, the header and type names are taken from what the site
    /// remembers of its first call (`CallSite.TypeNames`) when this
    /// call's types are the same, as they always are but for a generic
    /// function called with other types: that saves looking each name up.
    @inlinable
    static func key<Result, each Argument: Encodable>(site: CallSite? = nil, result: Result.Type, arguments: repeat each Argument) -> CacheKey? {
        var count = 0
        for _ in repeat each arguments { count += 1 }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(128 + 64 * count)
        var known = false
        if let names = site?.typeNames, names.result == ObjectIdentifier(Result.self), names.arguments.count == count {
            known = true
            var index = 0
            for argument in repeat each arguments {
                if known && names.arguments[index] != ObjectIdentifier(type(of: argument)) { known = false }
                index += 1
            }
            if known { bytes.append(contentsOf: names.bytes) }
        }
        if !known {
            MessagePackBytes.appendArrayHeader(2 + count, to: &bytes)
            Self.appendTypeName(Result.self, to: &bytes)
            MessagePackBytes.appendArrayHeader(count, to: &bytes)
            for argument in repeat each arguments {
                Self.appendTypeName(type(of: argument), to: &bytes)
            }
            if let site, site.typeNames == nil {
                var types: [ObjectIdentifier] = []
                for argument in repeat each arguments { types.append(ObjectIdentifier(type(of: argument))) }
                site.remember(CallSite.TypeNames(result: ObjectIdentifier(Result.self), arguments: types, bytes: bytes))
            }
        }
        do {
            for argument in repeat each arguments {
                try Self.append(argument, to: &bytes)
            }
        } catch {
            return nil
        }
        return Self.hash(bytes)
    }

    /// The key whose material is `bytes`; nil if libcrypto fails.
    @usableFromInline
    static func hash(_ bytes: [UInt8]) -> CacheKey? {
        guard let digest = try? bytes.withUnsafeBytes({ (raw) in try SHA256.hash(raw) }) else { return nil }
        return CacheKey(digest: digest)
    }

    /// `function` qualified with the module of `fileID` (the text before its first "/").
    static func qualified(_ function: String, fileID: String) -> String {
        let utf8 = fileID.utf8
        guard let slash = utf8.firstIndex(of: UInt8(ascii: "/")) else {
            return fileID.isEmpty ? function : "\(fileID).\(function)"
        }
        guard slash != utf8.startIndex else {
            // Not a #fileID (it starts with "/"): the module is its first non-empty part.
            let module = fileID.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            return module.isEmpty ? function : "\(module).\(function)"
        }
        return "\(fileID[..<slash]).\(function)"
    }

    @usableFromInline
    static func appendTypeName(_ type: Any.Type, to bytes: inout [UInt8]) {
        let id = ObjectIdentifier(type)
        if let known = self.typeNames.withLockedValue({ $0[id] }) {
            bytes += known
            return
        }
        var name: [UInt8] = []
        MessagePackBytes.appendString(String(reflecting: type), to: &name)
        self.typeNames.withLockedValue { $0[id] = name }
        bytes += name
    }

    /// One argument's canonical encoding: written directly for the commonest
    /// scalars (exactly as the canonical encoder writes them), else encoded.
    @inlinable
    static func append<Argument: Encodable>(_ argument: Argument, to bytes: inout [UInt8]) throws {
        if let value = argument as? Int {
            MessagePackBytes.appendInteger(Int64(value), to: &bytes)
        } else if let value = argument as? String {
            MessagePackBytes.appendString(value, to: &bytes)
        } else if let value = argument as? Bool {
            bytes.append(value ? 0xc3 : 0xc2)
        } else {
            try Self.appendEncoded(argument, to: &bytes)
        }
    }

    /// An argument's canonical encoding through the encoder: out of line, so
    /// that the encoder's generic code is not copied into every caller.
    @usableFromInline
    static func appendEncoded(_ argument: some Encodable, to bytes: inout [UInt8]) throws {
        try MessagePackEncoder(canonical: true).withEncoded(argument) { bytes.append(contentsOf: $0) }
    }
}
