#ifndef CACHE_GATEWAY_CMSGPACK_SHIM_H
#define CACHE_GATEWAY_CMSGPACK_SHIM_H

// msgpack-c (Debian: libmsgpack-dev, pkg-config `msgpack`, library `msgpackc`).
//
// Only the C API is used: the packer writes into an `msgpack_sbuffer`, and
// `msgpack_unpack_next` turns bytes into a zone-allocated `msgpack_object` tree.
// The only Swift file that imports this module is
// Sources/Protocol/MessagePack/MsgPackC.swift.
#include <msgpack.h>

// Pairs a packer with an sbuffer in C, so that Swift never has to form a
// C function pointer to `msgpack_sbuffer_write` (a `static inline` function,
// which has no stable address outside this header).
static inline void cache_gateway_msgpack_packer_init_sbuffer(msgpack_packer *pk, msgpack_sbuffer *sbuf) {
    msgpack_packer_init(pk, sbuf, msgpack_sbuffer_write);
}

// `msgpack_unpacked_init`, `msgpack_unpacked_destroy` and `msgpack_sbuffer_*`
// are `static inline` in the headers and import into Swift as they are; no
// variadic functions or function-like macros of msgpack-c are used.

#endif
