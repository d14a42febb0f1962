#ifndef CACHE_GATEWAY_CLIBCRYPTO_SHIM_H
#define CACHE_GATEWAY_CLIBCRYPTO_SHIM_H

// OpenSSL's libcrypto (Debian: libssl-dev, pkg-config `libcrypto`).
//
// Only the EVP digest interface is used (SHA-256 now, HMAC-SHA-256 later).
// The only Swift code that imports this module is Sources/Digest.
#include <openssl/evp.h>
#include <openssl/err.h>

// No wrappers are needed: the EVP functions used are neither variadic nor
// function-like macros.

#endif
