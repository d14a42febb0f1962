// GatewayClient: what a service imports. The runtime (`cache`, `cacheSync`,
// `CacheClient`) lives in GatewayClientRuntime, which needs no macro and so no
// swift-syntax; this module adds the `@Cached` macro on top.
@_exported import GatewayClientRuntime

// From the wire protocol (GatewayProtocol), a worker gets only what its own
// code can meet; the codec (frames, messages, the MessagePack coders, cache
// keys) stays out of its namespace. A scoped import re-exports one declaration
// with its members and nested types:
// - `GatewayError` (with `GatewayError.Code`): the error that `invalidate` and
//   `invalidateAll` throw (`throws(GatewayError)`), so a worker names it in a
//   `catch` or a typed `throws`, and compares `error.code` with `.unavailable`,
//   `.timeout`, `.remote`, ….
// - `ErrorCode`: the type of `GatewayError.wireCode`, which tells apart the
//   gateway's refusals (a `.remote` error), e.g. `error.wireCode == .notAllowed`.
// The `@Cached` expansion needs nothing from GatewayProtocol: it calls
// `GatewayClient.cache(...)`/`cacheSync(...)`, which GatewayClientRuntime
// declares and the import above re-exports. (The runtime's inlinable code uses
// more of GatewayProtocol, but that is resolved in the runtime's module, not
// by name in the worker's.)
@_exported import struct GatewayProtocol.ErrorCode
@_exported import struct GatewayProtocol.GatewayError
