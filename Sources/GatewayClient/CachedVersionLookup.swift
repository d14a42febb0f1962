/// The version that a `@Cached` expansion passes to the runtime, in a module
/// built without the `CacheVersions` plugin: `own`, the SHA-256 of the
/// function's own tokens, exactly the version the macro has always given.
///
/// Every expansion without a hand-written `version:` calls
/// `__cacheGatewayVersion(key, "own")` unqualified. The `CacheVersions`
/// build-tool plugin generates an internal function with this signature in
/// the module it is applied to, which shadows this one there (name lookup
/// prefers the current module's declaration to an imported one) and returns
/// the digest of the function and of the module's code it reaches; `key` is
/// the first 16 hex digits of `own` as a number, what that table switches on.
/// Not meant to be called by hand.
@inlinable @inline(__always)
public func __cacheGatewayVersion(_ key: UInt64, _ own: String) -> String {
    own
}
