#ifndef CACHE_GATEWAY_CHIREDIS_SHIM_H
#define CACHE_GATEWAY_CHIREDIS_SHIM_H

// hiredis (Debian: libhiredis-dev 0.14, pkg-config `hiredis`).
//
// cache-gateway uses hiredis only for the RESP2 wire format, never for I/O:
// `redisFormatCommandArgv` encodes a command and a `redisReader` parses replies.
// SwiftNIO owns the sockets, so nothing here blocks an event loop.
// hiredis 0.14 has neither TLS nor RESP3; both are out of scope for this shim.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

// `redisCommand` and `redisFormatCommand` are variadic and cannot be called
// from Swift; `redisFormatCommandArgv` (argv + argvlen) is used instead and
// needs no wrapper.

// `redisReaderGetReply` hands back the parsed reply as `void **`. The object is
// a `redisReply` because the reader is created with the default function table
// (`redisReaderCreate`); this wrapper keeps that cast in C.
static inline int cache_gateway_redis_reader_get_reply(redisReader *reader, redisReply **reply) {
    return redisReaderGetReply(reader, (void **)reply);
}

#endif
