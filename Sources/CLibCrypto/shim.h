#ifndef CACHE_GATEWAY_CLIBCRYPTO_SHIM_H
#define CACHE_GATEWAY_CLIBCRYPTO_SHIM_H

// OpenSSL's libcrypto (Debian: libssl-dev, pkg-config `libcrypto`).
//
// Used: SHA-256 through the low-level SHA256_* functions, HMAC-SHA-256
// through EVP_MAC, and CRYPTO_memcmp for constant-time comparison.
// The only Swift code that imports this module is Sources/Digest.
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

// SHA256_Init, SHA256_Update and SHA256_Final are deprecated in OpenSSL 3.0
// in favour of EVP, whose digest init frees and allocates a provider context
// on every computation; a cached call hashes its key on every hit, and the
// low-level functions (same implementation, state in a caller-owned struct)
// take about 60% of EVP's time for a key's 160 bytes (see
// Sources/Digest/LibCrypto.swift). Swift would warn at every call of a
// deprecated function, so they are wrapped here, where the one deprecation
// is acknowledged; the wrappers return what the functions return (1 on success).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static inline int cache_gateway_sha256_init(SHA256_CTX *state) {
    return SHA256_Init(state);
}
static inline int cache_gateway_sha256_update(SHA256_CTX *state, const void *bytes, size_t count) {
    return SHA256_Update(state, bytes, count);
}
static inline int cache_gateway_sha256_final(unsigned char *digest, SHA256_CTX *state) {
    return SHA256_Final(digest, state);
}
#pragma GCC diagnostic pop

#endif
