#ifndef CACHE_GATEWAY_CLIBCRYPTO_SHIM_H
#define CACHE_GATEWAY_CLIBCRYPTO_SHIM_H

// OpenSSL's libcrypto (Debian: libssl-dev, pkg-config `libcrypto`).
//
// Only the EVP digest and MAC interfaces are used (SHA-256, HMAC-SHA-256),
// with CRYPTO_memcmp for constant-time comparison.
// The only Swift code that imports this module is Sources/Digest.
#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/crypto.h>

// No wrappers are needed: the functions used are neither variadic nor
// function-like macros.

#endif
