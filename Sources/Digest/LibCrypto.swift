// The only file that touches libcrypto. Every pointer, handle and return code of
// OpenSSL stays here; the rest of the package sees `SHA256Digest`, `HMACSHA256`
// and `DigestError`.
internal import CLibCrypto

/// Runs one libcrypto call and turns its status into a `DigestError`.
///
/// The EVP and SHA256_* functions return 1 on success and 0 (or, for a few, a
/// negative number) on failure, with details on OpenSSL's thread-local error queue.
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

/// Owns one `SHA256_CTX` (libcrypto's low-level SHA-256 state, a plain
/// struct) and frees it when the last reference goes; for streaming hashes.
///
/// Why not EVP: in OpenSSL 3.0, `EVP_DigestInit_ex` frees and allocates its
/// provider's context on every computation (and `EVP_DigestFinal_ex` wipes it),
/// even on a reused `EVP_MD_CTX` with a fetched digest. A cached call hashes
/// its key on every hit: 160 bytes took 260 ns through EVP against 162 ns
/// through `SHA256_Init`/`Update`/`Final` (a loop in C, OpenSSL 3.0.19), and
/// more when the code and heap are cold. The low-level interface computes the
/// same digest with the same implementation; it is deprecated in 3.0 in favour
/// of EVP, so it is reached through the shim's wrappers (Sources/CLibCrypto/shim.h).
final class SHA256Context {
    private let state: UnsafeMutablePointer<SHA256_CTX>

    init() throws {
        self.state = .allocate(capacity: 1)
        do {
            try sha256Start(self.state)
        } catch {
            self.state.deallocate()
            throw error
        }
    }

    deinit {
        self.state.deallocate()
    }

    func update(_ bytes: UnsafeRawBufferPointer) throws {
        try sha256Update(self.state, bytes)
    }

    /// Finishes the computation and returns the digest.
    func finish() throws -> SHA256Digest {
        try sha256Finish(self.state)
    }

    /// The SHA-256 of `bytes`, on a state kept on the stack: no allocation.
    static func hash(_ bytes: UnsafeRawBufferPointer) throws -> SHA256Digest {
        var state = SHA256_CTX()
        try sha256Start(&state)
        try sha256Update(&state, bytes)
        return try sha256Finish(&state)
    }
}

private func sha256Start(_ state: UnsafeMutablePointer<SHA256_CTX>) throws {
    try libcryptoCall("SHA256_Init") { cache_gateway_sha256_init(state) }
}

private func sha256Update(_ state: UnsafeMutablePointer<SHA256_CTX>, _ bytes: UnsafeRawBufferPointer) throws {
    guard let base = bytes.baseAddress, bytes.count > 0 else { return }
    try libcryptoCall("SHA256_Update") { cache_gateway_sha256_update(state, base, bytes.count) }
}

private func sha256Finish(_ state: UnsafeMutablePointer<SHA256_CTX>) throws -> SHA256Digest {
    var digest = SHA256Digest.zero
    try withUnsafeMutableBytes(of: &digest.storage) { raw in
        let out = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
        try libcryptoCall("SHA256_Final") { cache_gateway_sha256_final(out, state) }
    }
    return digest
}

// MARK: HMAC

/// HMAC, fetched from OpenSSL's default provider once for the process.
///
/// OpenSSL 3 resolves an algorithm named at each use to a provider
/// implementation every time (an "implicit fetch", with locking and a
/// property query); fetching once skips that on every computation. The
/// object is immutable and shared by design, hence `nonisolated(unsafe)`.
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
