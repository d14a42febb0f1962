// The only file that touches libcrypto. Every pointer, handle and return code of
// OpenSSL stays here; the rest of the package sees `SHA256Digest`, `HMACSHA256`
// and `DigestError`.
internal import CLibCrypto

/// Runs one libcrypto call and turns its status into a `DigestError`.
///
/// The EVP functions return 1 on success and 0 (or, for a few, a negative
/// number) on failure, with details on OpenSSL's thread-local error queue.
/// Every call in this file goes through here, so no status is ignored.
@inline(__always)
func libcryptoCall(
    _ function: StaticString,
    fileID: StaticString = #fileID,
    line: Int = #line,
    _ body: () -> Int32
) throws {
    let status = body()
    guard status == 1 else {
        // Drain the queue so that a later, unrelated call does not report this failure.
        let detail = ERR_get_error()
        ERR_clear_error()
        throw DigestError(
            code: .libcryptoFailure,
            message: "\(function) failed (status \(status), OpenSSL error \(detail))",
            fileID: fileID,
            line: line
        )
    }
}

/// SHA-256, fetched from OpenSSL's default provider once for the process.
///
/// OpenSSL 3 resolves the legacy `EVP_sha256()` to a provider implementation
/// on every `EVP_DigestInit_ex` (an "implicit fetch", with locking and a
/// property query); fetching once and reusing the result skips that on every hash.
/// The object is immutable and shared by design, hence `nonisolated(unsafe)`.
nonisolated(unsafe) private let fetchedSHA256: OpaquePointer? = EVP_MD_fetch(nil, "SHA256", nil)

/// Owns one `EVP_MD_CTX` and frees it when the last reference goes.
///
/// A context is cheap to reset and expensive to allocate, so a hasher keeps one
/// for its whole life, and one-shot hashes borrow one from a pool.
///
/// `@unchecked Sendable`: a context is used by one thread at a time, either
/// the hasher's owner or the borrower that took it out of the pool.
final class DigestContext: @unchecked Sendable {
    /// Idle contexts for one-shot hashes (`SHA256.hash`); a borrower must
    /// start its computation with `resetSHA256`, since a context keeps the
    /// previous one's state.
    static let pool = ReusePool { try DigestContext() }

    private let context: OpaquePointer

    init() throws {
        guard let context = EVP_MD_CTX_new() else {
            throw DigestError(code: .libcryptoFailure, message: "EVP_MD_CTX_new returned NULL")
        }
        self.context = context
    }

    deinit {
        EVP_MD_CTX_free(self.context)
    }

    /// Starts a SHA-256 computation, discarding any earlier state.
    func resetSHA256() throws {
        try libcryptoCall("EVP_DigestInit_ex") { EVP_DigestInit_ex(self.context, fetchedSHA256 ?? EVP_sha256(), nil) }
    }

    func update(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try libcryptoCall("EVP_DigestUpdate") { EVP_DigestUpdate(self.context, base, bytes.count) }
    }

    /// Finishes the computation and returns the 32 digest bytes.
    func finishSHA256() throws -> SHA256Digest {
        var digest = SHA256Digest.zero
        try withUnsafeMutableBytes(of: &digest.storage) { (raw) in
            var length: UInt32 = 0
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            try libcryptoCall("EVP_DigestFinal_ex") { EVP_DigestFinal_ex(self.context, out, &length) }
            guard length == 32 else {
                throw DigestError(code: .libcryptoFailure, message: "SHA-256 produced \(length) bytes")
            }
        }
        return digest
    }
}

// MARK: HMAC

/// HMAC, fetched from OpenSSL's default provider once for the process (see
/// `fetchedSHA256` for why); immutable and shared, hence `nonisolated(unsafe)`.
nonisolated(unsafe) private let fetchedHMAC: OpaquePointer? = EVP_MAC_fetch(nil, "HMAC", nil)

/// The names of the HMAC's one parameter, "digest" = "SHA256". OSSL_PARAM keeps
/// the pointers, so they must outlive every call: static strings do.
private let digestParameterName: StaticString = "digest"
private let digestParameterValue: StaticString = "SHA256"

/// Owns one `EVP_MAC_CTX` keyed for HMAC-SHA-256, and frees it when the last
/// reference goes.
final class MACContext {
    private let context: OpaquePointer

    /// A context ready to authenticate with `key`, which must not be empty
    /// (OpenSSL reads an empty key as "keep the previous key").
    init(key: UnsafeRawBufferPointer) throws {
        guard let base = key.baseAddress, key.count > 0 else {
            throw DigestError(code: .invalidKey, message: "an HMAC key must not be empty")
        }
        guard let mac = fetchedHMAC else {
            throw DigestError(code: .libcryptoFailure, message: "EVP_MAC_fetch(HMAC) returned NULL")
        }
        guard let context = EVP_MAC_CTX_new(mac) else {
            throw DigestError(code: .libcryptoFailure, message: "EVP_MAC_CTX_new returned NULL")
        }
        self.context = context
        // OpenSSL only reads the value; its parameter type is not const.
        let value = UnsafeMutableRawPointer(mutating: digestParameterValue.utf8Start).assumingMemoryBound(to: CChar.self)
        let name = UnsafeRawPointer(digestParameterName.utf8Start).assumingMemoryBound(to: CChar.self)
        let parameters = [OSSL_PARAM_construct_utf8_string(name, value, 0), OSSL_PARAM_construct_end()]
        try parameters.withUnsafeBufferPointer { parameters in
            try libcryptoCall("EVP_MAC_init") {
                EVP_MAC_init(context, base.assumingMemoryBound(to: UInt8.self), key.count, parameters.baseAddress)
            }
        }
    }

    deinit {
        EVP_MAC_CTX_free(self.context)
    }

    func update(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        try libcryptoCall("EVP_MAC_update") { EVP_MAC_update(self.context, base.assumingMemoryBound(to: UInt8.self), bytes.count) }
    }

    /// Finishes the computation and returns the 32 bytes of the code.
    func finish() throws -> SHA256Digest {
        var code = SHA256Digest.zero
        try withUnsafeMutableBytes(of: &code.storage) { raw in
            var length = 0
            let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
            try libcryptoCall("EVP_MAC_final") { EVP_MAC_final(self.context, out, &length, raw.count) }
            guard length == 32 else {
                throw DigestError(code: .libcryptoFailure, message: "HMAC-SHA-256 produced \(length) bytes")
            }
        }
        return code
    }
}

/// Whether two byte ranges of the same length are equal, in time that does not
/// depend on where they differ (`CRYPTO_memcmp`), so that comparing a MAC
/// tells an attacker nothing about how much of a forgery was right.
func constantTimeEqual(_ lhs: UnsafeRawBufferPointer, _ rhs: UnsafeRawBufferPointer) -> Bool {
    guard lhs.count == rhs.count else { return false }
    guard let left = lhs.baseAddress, let right = rhs.baseAddress else { return true }
    return CRYPTO_memcmp(left, right, lhs.count) == 0
}
