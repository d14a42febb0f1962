import GatewayDigest
import SwiftSyntax

/// The version `@Cached` gives a function on its own: a SHA-256 of its tokens.
///
/// The hashed text is the function declaration (attributes, modifiers,
/// signature, generic clauses and body) *without* the `@Cached` attribute
/// itself, as a sequence of tokens with no trivia at all: comments, spaces and
/// line breaks never change the version, and the cache's own settings (`ttl:`,
/// `key:`, `version:`, `name:`) don't either. Any other edit does, including
/// one that is semantically neutral (renaming a local variable, for example):
/// that costs a cache miss after the deployment, never a stale hit.
///
/// The tokens are serialised without ambiguity: each one is written as its
/// UTF-8 length in decimal, a colon, and its text. A token's text can contain
/// spaces, quotes or line breaks (a string literal segment can), so joining
/// with a separator would let two different token sequences produce the same
/// bytes; a length prefix cannot. The serialisation starts with ``scheme``, so
/// that a future change to the algorithm changes every version.
///
/// The macro (for the version it writes into the expansion) and the
/// `CacheVersions` tool (to find the same function in the generated table)
/// both call this, so they cannot disagree.
public enum OwnVersion {
    /// The first line of the hashed text: names this algorithm.
    public static let scheme = "cache-gateway @Cached version 1\n"

    /// The 64-hex-digit version of `declaration`, leaving out `attribute` (the
    /// `@Cached` attribute being expanded) wherever it is in the declaration's
    /// attribute list.
    public static func version(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) throws -> String {
        try SHA256.hash(self.serialization(of: declaration, excluding: attribute)).hexString
    }

    /// The exact bytes that ``version(of:excluding:)`` hashes.
    public static func serialization(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) -> [UInt8] {
        var bytes = Array(self.scheme.utf8)
        for token in self.tokens(of: declaration, excluding: attribute) {
            self.append(token.text, to: &bytes)
        }
        return bytes
    }

    /// Appends `text` length-prefixed: its UTF-8 length in decimal, a colon, its bytes.
    public static func append(_ text: String, to bytes: inout [UInt8]) {
        let utf8 = text.utf8
        bytes.append(contentsOf: String(utf8.count).utf8)
        bytes.append(UInt8(ascii: ":"))
        bytes.append(contentsOf: utf8)
    }

    /// The tokens of `declaration` as written, without those of `attribute`.
    public static func tokens(of declaration: FunctionDeclSyntax, excluding attribute: AttributeSyntax?) -> [TokenSyntax] {
        var declaration = declaration
        if let attribute {
            // The attribute the compiler hands the macro is a detached copy of the one
            // in the declaration, so it is found by its tokens, not by its identity.
            let texts = attribute.tokens(viewMode: .sourceAccurate).map(\.text)
            let elements = Array(declaration.attributes)
            if let index = elements.firstIndex(where: { element in
                guard case .attribute(let candidate) = element else { return false }
                return candidate.tokens(viewMode: .sourceAccurate).map(\.text) == texts
            }) {
                var remaining = elements
                remaining.remove(at: index)
                declaration.attributes = AttributeListSyntax(remaining)
            }
        }
        return Array(declaration.tokens(viewMode: .sourceAccurate))
    }

    /// The key under which the generated table of a module holds the version
    /// of the function whose own version is `version`: its first 16 hex digits
    /// as a number. The macro writes it as a literal into the expansion, so that
    /// finding a function's version is a `switch` over integers.
    public static func lookupKey(of version: String) -> UInt64 {
        UInt64(version.prefix(16), radix: 16) ?? 0
    }

    /// `lookupKey(of:)` as a Swift hexadecimal literal (`0x` and 16 digits).
    public static func lookupKeyLiteral(of version: String) -> String {
        let hex = String(self.lookupKey(of: version), radix: 16)
        return "0x" + String(repeating: "0", count: 16 - hex.count) + hex
    }
}
