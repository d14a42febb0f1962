import GatewayDigest

/// The key of one cached result: the SHA-256 of the canonical MessagePack
/// encoding of the call's arguments.
///
/// The function's name and version are not part of these 32 bytes; they travel
/// beside the key in every request, and the gateway combines all three (plus
/// its namespace) into the storage key. See docs/PROTOCOL.md, "Cache keys".
public struct CacheKey: Hashable, Sendable, CustomStringConvertible {
    /// The digest.
    public let digest: SHA256Digest

    /// Wraps a digest.
    public init(digest: SHA256Digest) { self.digest = digest }

    /// Wraps 32 bytes read off the wire; `nil` unless there are exactly 32.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard let digest = SHA256Digest(bytes: bytes) else { return nil }
        self.digest = digest
    }

    /// Wraps 32 bytes; `nil` unless there are exactly 32.
    public init?(bytes: some Collection<UInt8>) {
        guard let digest = SHA256Digest(bytes: bytes) else { return nil }
        self.digest = digest
    }

    /// The key of `arguments`: SHA-256 over their canonical MessagePack encoding.
    ///
    /// Throws `.unencodable` or `.nestingTooDeep` when the arguments cannot be
    /// encoded, and `.libraryFailure` if libcrypto fails.
    public init(hashing arguments: some Encodable) throws {
        let writer = MessagePackWriter()
        try MessagePackEncoder(canonical: true).encode(arguments, into: writer)
        self.digest = try writer.withUnsafeBytes { (raw) in
            try Self.sha256(raw)
        }
    }

    /// SHA-256 with libcrypto's error mapped into `GatewayError`.
    static func sha256(_ bytes: UnsafeRawBufferPointer) throws -> SHA256Digest {
        do {
            return try SHA256.hash(bytes)
        } catch {
            throw GatewayError(.libraryFailure, "\(error)")
        }
    }

    /// The 64 hexadecimal digits of the digest.
    public var description: String { self.digest.hexString }
}
