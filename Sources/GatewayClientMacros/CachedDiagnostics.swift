import SwiftDiagnostics

/// A diagnostic that `@Cached` reports.
///
/// Every message names `@Cached` and says why the declaration cannot be
/// cached, so that it reads well in a build log without the source at hand.
struct CachedDiagnostic: DiagnosticMessage {
    /// The stable identifier of the diagnostic, e.g. `"inoutParameter"`.
    let id: String
    let message: String
    let severity: DiagnosticSeverity

    var diagnosticID: MessageID { MessageID(domain: "GatewayClientMacros.Cached", id: self.id) }

    private init(_ id: String, _ message: String, severity: DiagnosticSeverity = .error) {
        self.id = id
        self.message = message
        self.severity = severity
    }

    // MARK: Errors

    /// On a variable, subscript, deinitializer, accessor, closure and so on.
    static func notAFunction(_ what: String) -> Self {
        Self("notAFunction", "@Cached can only be applied to a function or method, not to \(what)")
    }

    static let initializer = Self(
        "initializer",
        "@Cached cannot be applied to an initializer: it caches a function's result, and an initializer has none"
    )

    static let noBody = Self(
        "noBody",
        "@Cached needs a function with a body; the body is what runs on a cache miss"
    )

    static func inoutParameter(_ name: String) -> Self {
        Self(
            "inoutParameter",
            "@Cached cannot cache a function with an 'inout' parameter ('\(name)'): a cache hit would skip the changes the body makes to it"
        )
    }

    static func functionParameter(_ name: String) -> Self {
        Self(
            "functionParameter",
            "@Cached cannot cache a function with a closure parameter ('\(name)'): a closure cannot be part of a cache key"
        )
    }

    /// `parameter` is the parameter as written, e.g. `_: Int` or `_ _: Int`.
    static func unnamedParameter(_ parameter: String) -> Self {
        Self(
            "unnamedParameter",
            "@Cached needs a name for every parameter, because each argument is part of the cache key; give '\(parameter)' a parameter name"
        )
    }

    static let noResult = Self(
        "noResult",
        "@Cached needs a function that returns a value; this one has no result type"
    )

    static func voidResult(_ type: String) -> Self {
        Self("voidResult", "@Cached needs a function that returns a value; '\(type)' is nothing to cache")
    }

    static func neverResult(_ type: String) -> Self {
        Self("neverResult", "@Cached needs a function that returns a value; a function returning '\(type)' never does")
    }

    static func notAStringLiteral(_ label: String) -> Self {
        Self(
            "notAStringLiteral",
            "@Cached needs '\(label):' as a plain string literal (no interpolation, no expression), because it is read at compile time"
        )
    }

    static func emptyString(_ label: String) -> Self {
        Self("emptyString", "@Cached needs a non-empty '\(label):'")
    }

    static let keyOnNonInstanceMethod = Self(
        "keyOnNonInstanceMethod",
        "@Cached 'key:' selects the part of 'self' that identifies it, so it applies only to instance methods; remove it"
    )

    /// `ttl` is the TTL as written (`.seconds(0)`).
    ///
    /// An error, not a warning: a TTL of zero or less caches nothing (the
    /// runtime runs every such call uncached, with no lookup and no store), so
    /// a literal one makes the attribute do nothing while it reads as if the
    /// function were cached. That is a mistake to fix before it ships, not a
    /// style question; a TTL that is zero or less on purpose, to switch
    /// caching off at run time, comes from an expression the macro cannot
    /// read, and that still works.
    static func nonPositiveTTL(_ ttl: String) -> Self {
        Self(
            "nonPositiveTTL",
            "@Cached needs a positive 'ttl:'; with '\(ttl)' nothing is ever cached (every call runs the function, with no lookup and no store), so give a positive TTL or remove '@Cached'"
        )
    }

    /// `example` is a key path to suggest, like `\Self.id`.
    static func actorNeedsKey(_ example: String) -> Self {
        Self(
            "actorNeedsKey",
            "@Cached on an actor's method needs 'key:', because an actor is not Encodable and so cannot be part of the cache key; name the property that identifies the instance, for example 'key: \(example)'"
        )
    }

    /// `written` is the key path as written (`\.id`), `suggested` the same with its root (`\Self.id`).
    static func keyPathWithoutRoot(_ written: String, _ suggested: String) -> Self {
        Self(
            "keyPathWithoutRoot",
            "@Cached needs 'key:' as a key path that names its root type: write '\(suggested)' instead of '\(written)'; the attribute's arguments are type-checked on their own, where nothing tells the compiler what the root of '\(written)' is"
        )
    }

    /// `written` is the argument as written.
    static func refreshNotALiteral(_ written: String) -> Self {
        Self(
            "refreshNotALiteral",
            "@Cached needs 'refresh:' written as '.early' or '.never', not '\(written)': it is read at compile time, because early refresh expands to another form (a body that runs again in the background, so it escapes and must be @Sendable)"
        )
    }

    static let refreshOnActor = Self(
        "refreshOnActor",
        "@Cached 'refresh: .early' cannot be used on an actor's method: a refresh runs the body in the background, outside the actor, where its state cannot be used; cache a nonisolated function the method calls instead"
    )

    // MARK: Warnings

    static let mutatingMethod = Self(
        "mutatingMethod",
        "@Cached on a 'mutating' method: a cache hit returns the stored result without running the body, so the body's changes to 'self' are skipped",
        severity: .warning
    )

    static let localFunction = Self(
        "localFunction",
        "@Cached on a local function: the values it captures from the enclosing scope are not part of the cache key, so a hit may return a result computed from other captured values",
        severity: .warning
    )
}

/// A fix-it that `@Cached` offers.
struct CachedFixIt: FixItMessage {
    let message: String
    let id: String

    var fixItID: MessageID { MessageID(domain: "GatewayClientMacros.Cached", id: self.id) }

    static let removeAttribute = Self(message: "Remove '@Cached'", id: "removeAttribute")
    static let removeKey = Self(message: "Remove 'key:'", id: "removeKey")
    static func nameRoot(_ keyPath: String) -> Self {
        Self(message: "Write '\(keyPath)'", id: "nameRoot")
    }
    static func nameParameter(_ name: String) -> Self {
        Self(message: "Name the parameter '\(name)'", id: "nameParameter")
    }
}

/// A thrown error for inputs the compiler never produces (an attribute without
/// `ttl:`, for instance); the compiler reports its description at the attribute.
struct CachedMacroError: Error, CustomStringConvertible {
    let description: String
}
