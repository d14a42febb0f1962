import GatewayProtocol
import NIOCore

/// Deletes the cached result of `function` for these arguments, in every
/// version of the function, and returns how many entries went.
///
/// Name the function and pass the arguments exactly as the cached call has
/// them: `function` is the function's full name, `Module.Name`, where `Module`
/// is the module the cached function is declared in and `Name` the name
/// `@Cached` gives it (`Type.method(labels:)` or `function(labels:)`, or its
/// `name:`). It is the name the gateway's `stats` and `functions` show, and it
/// is used exactly as given, from whichever module this is called. The
/// arguments are the function's parameters in order, with `self` first for an
/// instance method (or `self[keyPath: key]` with `key:`); `returning` is its
/// result type, which is part of the key.
/// ```swift
/// // InvoiceService.total(for:currency:) is declared in the module Billing.
/// try await invalidate(function: "Billing.InvoiceService.total(for:currency:)", returning: Money.self, arguments: service, customer, currency)
/// ```
/// Unlike a lookup, this does not fail open: it throws when the gateway is
/// absent or refuses, since the caller wants to know that the entry is gone.
@discardableResult
public func invalidate<Result, each Argument: Encodable>(
    function: String,
    returning: Result.Type,
    arguments: repeat each Argument
) async throws(GatewayError) -> UInt64 {
    // An empty `fileID` leaves the name as it is (see `KeyBuilder.qualified`).
    guard let call = CachedCall(function: function, version: "", fileID: "", result: Result.self, arguments: repeat each arguments) else {
        throw GatewayError(.unencodable, "the arguments of \(function) cannot be encoded, so no entry was ever cached for them")
    }
    return try await CacheClient.shared.invalidate(Invalidate(function: call.function.function, version: nil, key: call.key))
}

/// Deletes every cached result of `function`, in every version or only in
/// `version`, and returns how many entries went. `function` is the full name,
/// `Module.Name`, as for `invalidate(function:returning:arguments:)`, used
/// exactly as given; it is also what the gateway's `purge` command takes.
/// ```swift
/// try await invalidateAll(function: "Billing.InvoiceService.total(for:currency:)")
/// ```
/// Throws when the gateway is absent or refuses.
@discardableResult
public func invalidateAll(function: String, version: String? = nil) async throws(GatewayError) -> UInt64 {
    try await CacheClient.shared.invalidate(Invalidate(function: function, version: version))
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
