/// A SHA-256 digest: 32 bytes, compared and hashed by value.
///
/// The bytes are kept inline (no heap allocation), so a digest is cheap to copy
/// and to use as a dictionary key.
public struct SHA256Digest: Hashable, Sendable, CustomStringConvertible {
    /// The 32 digest bytes, in order.
    var storage: (UInt64, UInt64, UInt64, UInt64)

    /// The digest with every byte zero; used as scratch space before hashing.
    static let zero = SHA256Digest(storage: (0, 0, 0, 0))

    init(storage: (UInt64, UInt64, UInt64, UInt64)) {
        self.storage = storage
    }

    /// Wraps 32 bytes that already are a SHA-256 digest (for example, read off the wire).
    ///
    /// Returns `nil` unless `bytes` has exactly 32 elements.
    public init?(bytes: UnsafeRawBufferPointer) {
        guard bytes.count == 32 else { return nil }
        var digest = SHA256Digest.zero
        withUnsafeMutableBytes(of: &digest.storage) { $0.copyMemory(from: bytes) }
        self = digest
    }

    /// Wraps 32 bytes that already are a SHA-256 digest.
    ///
    /// Returns `nil` unless `bytes` has exactly 32 elements.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        self = .zero
        let copied: Bool? = bytes.withContiguousStorageIfAvailable { buffer in
            withUnsafeMutableBytes(of: &self.storage) { $0.copyMemory(from: UnsafeRawBufferPointer(buffer)) }
            return true
        }
        if copied == nil {
            Array(bytes).withUnsafeBytes { raw in
                withUnsafeMutableBytes(of: &self.storage) { $0.copyMemory(from: raw) }
            }
        }
    }

    /// Calls `body` with the 32 digest bytes.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: self.storage, body)
    }

    /// The digest bytes as an array.
    public var bytes: [UInt8] {
        self.withUnsafeBytes { Array($0) }
    }

    /// The digest as 64 lowercase hexadecimal digits.
    public var hexString: String {
        String(unsafeUninitializedCapacity: 64) { out in
            self.writeHexDigits(to: UnsafeMutableRawBufferPointer(out))
            return 64
        }
    }

    /// Writes the 64 lowercase hexadecimal digits to the start of `out`,
    /// which must have room for them.
    public func writeHexDigits(to out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= 64, "64 bytes are needed for a digest's hexadecimal digits")
        self.withUnsafeBytes { raw in
            for index in 0..<32 {
                let byte = raw[index]
                out[2 * index] = Self.hexDigit(byte >> 4)
                out[2 * index + 1] = Self.hexDigit(byte & 0x0f)
            }
        }
    }

    /// The lowercase ASCII digit of a value below 16.
    @inline(__always)
    private static func hexDigit(_ value: UInt8) -> UInt8 {
        value < 10 ? UInt8(ascii: "0") &+ value : UInt8(ascii: "a") &+ (value &- 10)
    }

    /// The hexadecimal form.
    public var description: String { self.hexString }

    public static func == (lhs: SHA256Digest, rhs: SHA256Digest) -> Bool {
        lhs.storage.0 == rhs.storage.0 && lhs.storage.1 == rhs.storage.1
            && lhs.storage.2 == rhs.storage.2 && lhs.storage.3 == rhs.storage.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(self.storage.0)
        hasher.combine(self.storage.1)
        hasher.combine(self.storage.2)
        hasher.combine(self.storage.3)
    }
}

/// SHA-256 through OpenSSL's libcrypto.
///
/// A `SHA256` value is a streaming hasher: feed it with `update`, then call
/// `finalize`. Copies share one computation and it is not `Sendable`: give
/// each computation its own value.
public struct SHA256 {
    private let context: SHA256Context

    /// Starts a new computation.
    public init() throws {
        self.context = try SHA256Context()
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

    /// Finishes the computation and returns the digest; the hasher must not be used afterwards.
    public func finalize() throws -> SHA256Digest {
        try self.context.finish()
    }

    /// The SHA-256 of `bytes` in one call, with no allocation: a client
    /// derives a key this way on every cached call.
    public static func hash(_ bytes: UnsafeRawBufferPointer) throws -> SHA256Digest {
        try SHA256Context.hash(bytes)
    }

    /// The SHA-256 of `bytes` in one call (on the stack, like the raw-buffer form).
    public static func hash(_ bytes: some Sequence<UInt8>) throws -> SHA256Digest {
        try bytes.withRawBytes { try SHA256Context.hash($0) }
    }
}

extension Sequence<UInt8> {
    /// Calls `body` with the bytes in one buffer: their own storage when they
    /// have contiguous storage (arrays, `Data`, buffers), else a copy.
    func withRawBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        if let result = try self.withContiguousStorageIfAvailable({ try body(UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return try Array(self).withUnsafeBytes(body)
    }
}
