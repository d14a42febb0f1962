import GatewayVersions
import SwiftSyntax

/// The code version of a `@Cached` function as the expansion states it.
///
/// The expansion passes `version: __cacheGatewayVersion(KEY, "OWN")`, where
/// `OWN` is ``OwnVersion`` of the declaration (the SHA-256 of its tokens,
/// without trivia or this attribute) and `KEY` its first 16 hex digits as a
/// number (``OwnVersion/lookupKey(of:)``). Unqualified, the call finds:
///
/// - in a module built with the `CacheVersions` plugin, the internal function
///   the plugin generates there, which returns the digest of the function and
///   of everything in the module it reaches (a declaration of the current
///   module shadows an imported one with the same signature);
/// - anywhere else, the public one in `GatewayClient`, which returns `OWN`:
///   the version is then exactly the function's own hash.
///
/// A `version:` written in the attribute replaces all of this with its literal.
enum CachedVersion {
    /// The first line of the hashed text: names this algorithm.
    static let scheme = OwnVersion.scheme

    /// The 64-hex-digit version of `declaration`, leaving out `attribute` (the
    /// `@Cached` attribute the macro is expanding) wherever it is in the
    /// declaration's attribute list.
    static func version(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) throws -> String {
        try OwnVersion.version(of: declaration, excluding: attribute)
    }

    /// The exact bytes that ``version(of:excluding:)`` hashes.
    static func serialization(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) -> [UInt8] {
        OwnVersion.serialization(of: declaration, excluding: attribute)
    }

    /// The tokens of `declaration` as written, without those of `attribute`.
    static func tokens(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) -> [TokenSyntax] {
        OwnVersion.tokens(of: declaration, excluding: attribute)
    }

    /// The expression the expansion passes as `version:` for `declaration`.
    static func expression(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) throws -> String {
        let own = try self.version(of: declaration, excluding: attribute)
        return "__cacheGatewayVersion(\(OwnVersion.lookupKeyLiteral(of: own)), \"\(own)\")"
    }
}
