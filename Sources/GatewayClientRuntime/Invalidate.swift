import GatewayProtocol
import NIOCore

/// Deletes the cached result of `function` for these arguments, in every
/// version of the function, and returns how many entries went.
///
/// Name the function and pass the arguments exactly as the cached call does:
/// `function` is the name `@Cached` gives it (or its `name:`), qualified with
/// this file's module like `cache(ttl:function:…)` does; the arguments are
/// the function's parameters in order, with `self` first for an instance
/// method (or `self[keyPath: key]` with `key:`); `returning` is its result
/// type, which is part of the key.
/// ```swift
/// try await invalidate(function: "InvoiceService.total(for:currency:)", returning: Money.self, arguments: service, customer, currency)
/// ```
/// Unlike a lookup, this does not fail open: it throws when the gateway is
/// absent or refuses, since the caller wants to know that the entry is gone.
@discardableResult
public func invalidate<Result, each Argument: Encodable>(
    function: String,
    fileID: String = #fileID,
    returning: Result.Type,
    arguments: repeat each Argument
) async throws(GatewayError) -> UInt64 {
    guard let call = CachedCall(function: function, version: "", fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
        throw GatewayError(.unencodable, "the arguments of \(function) cannot be encoded, so no entry was ever cached for them")
    }
    return try await CacheClient.shared.invalidate(Invalidate(function: call.function.function, version: nil, key: call.key))
}

/// Deletes every cached result of `function` (qualified with this file's
/// module, as `cache(ttl:function:…)` does), in every version or only in
/// `version`, and returns how many entries went. Throws when the gateway is
/// absent or refuses.
@discardableResult
public func invalidateAll(function: String, version: String? = nil, fileID: String = #fileID) async throws(GatewayError) -> UInt64 {
    let module = fileID.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
    let qualified = module.isEmpty ? function : "\(module).\(function)"
    return try await CacheClient.shared.invalidate(Invalidate(function: qualified, version: version))
}

extension CacheClient {
    /// How long an invalidation may take: deleting a whole function can mean
    /// many thousands of entries.
    static let invalidateTimeout = TimeAmount.seconds(30)

    /// Sends `invalidate` on the shared connection (connecting if needed) and
    /// returns the number of entries deleted; an error reply is thrown as
    /// `.remote` with the gateway's code.
    func invalidate(_ invalidate: Invalidate) async throws(GatewayError) -> UInt64 {
        let reply = try await self.request(.invalidate(invalidate), timeout: Self.invalidateTimeout)
        switch reply.body {
        case .invalidateReply(let deleted):
            return deleted
        case .error(let error):
            throw GatewayError(.remote, error.message, wireCode: error.code)
        default:
            throw GatewayError(.malformedMessage, "the gateway answered invalidate with message type \(reply.body.type)")
        }
    }
}
