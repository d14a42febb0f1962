// GatewayClient: what a service imports. The runtime (`cache`, `cacheSync`,
// `CacheClient`) lives in GatewayClientRuntime, which needs no macro and so no
// swift-syntax; this module adds the `@Cached` macro on top.
@_exported import GatewayClientRuntime
@_exported import GatewayProtocol
