/// HMAC-SHA-256 (RFC 2104) through OpenSSL's libcrypto.
///
/// Like `SHA256`, a value is a streaming computation: feed it with `update`,
/// then call `finalize`. Copies share one computation and it is not
/// `Sendable`: give each computation its own value. The 32-byte code is
/// returned as a `SHA256Digest` (same size, compared by value); compare a code
/// read from outside with `SHA256Digest.isEqualInConstantTime(to:)`, not `==`.
public struct HMACSHA256 {
    private let context: MACContext

    /// Starts a computation keyed with `key`; throws `.invalidKey` for an empty key.
    public init(key: UnsafeRawBufferPointer) throws {
        self.context = try MACContext(key: key)
    }

    /// Starts a computation keyed with `key`; throws `.invalidKey` for an empty key.
    public init(key: some Collection<UInt8>) throws {
        let context: MACContext? = try key.withContiguousStorageIfAvailable { buffer in
            try MACContext(key: UnsafeRawBufferPointer(buffer))
        }
        if let context {
            self.context = context
        } else {
            self.context = try Array(key).withUnsafeBytes { try MACContext(key: $0) }
        }
    }

    /// Adds bytes to the computation.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) throws {
        try self.context.update(bytes)
    }

    /// Adds bytes to the computation.
    public mutating func update(_ bytes: some Sequence<UInt8>) throws {
        let context = self.context
        try bytes.withRawBytes { try context.update($0) }
    }

    /// Finishes the computation and returns the code; the value must not be used afterwards.
    public func finalize() throws -> SHA256Digest {
        try self.context.finish()
    }

    /// The HMAC-SHA-256 of `bytes` under `key`, in one call.
    public static func authenticationCode(for bytes: some Sequence<UInt8>, key: some Collection<UInt8>) throws -> SHA256Digest {
        var mac = try HMACSHA256(key: key)
        try mac.update(bytes)
        return try mac.finalize()
    }
}

extension SHA256Digest {
    /// Whether `bytes` are exactly these 32 bytes, compared in constant time
    /// (`CRYPTO_memcmp`): the time taken does not reveal how many leading
    /// bytes of a forged code were right.
    public func isEqualInConstantTime(to bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count == 32 else { return false }
        return self.withUnsafeBytes { constantTimeEqual($0, bytes) }
    }
}
