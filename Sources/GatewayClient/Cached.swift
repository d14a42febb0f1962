/// Caches a function's results in the gateway, keyed by its arguments and by
/// a hash of its own source code.
///
/// ```swift
/// @Cached(ttl: .seconds(300))
/// func exchangeRate(from: Currency, to: Currency) async throws -> Decimal {
///     try await ratesService.fetch(from, to)   // runs only on a miss
/// }
/// ```
///
/// The macro replaces the body with a call to the runtime's
/// `cache(ttl:function:version:arguments:body:)` (or to `cacheSync` for a
/// function that is not `async`) that passes the original body as a closure:
///
/// ```swift
/// func exchangeRate(from: Currency, to: Currency) async throws -> Decimal {
///     try await GatewayClient.cache(ttl: .seconds(300), function: "exchangeRate(from:to:)", version: __cacheGatewayVersion(0x3f1c…, "3f1c…"), arguments: from, to) { () throws in
///         try await ratesService.fetch(from, to)
///     }
/// }
/// ```
///
/// `try` is there when the function throws, `await` when it is `async`. The
/// closure of a throwing function is declared like the function, `() throws in`
/// or `() throws(E) in`: the runtime throws exactly the closure's error type,
/// so a function declared `throws(E)` keeps its typed error, and the call
/// throws (and its `try` is needed) even when the body happens not to.
/// A function without parameters (other than an instance method) passes no
/// `arguments:` at all.
///
/// - The **key** is made of the arguments, which must therefore be `Encodable`,
///   and their types; the result must be `Codable`. An instance method also
///   passes `self` first, so its type must be `Encodable` too (the compiler
///   says so at the method if it is not); use the `key:` form to pass a part of
///   `self` instead. An actor is never `Encodable`, so an actor's method needs
///   `key:` (the macro says so at the attribute).
/// - The **version** is the SHA-256 of the function's tokens (signature and
///   body, without comments, whitespace or this attribute), so every edit to the
///   function's code gives it new entries, and redeployed code never reads
///   results of the old code. In a target built with the `CacheVersions`
///   plugin, it also covers every declaration of the module the function
///   reaches (callees, constants, its result type...): the expansion's
///   `__cacheGatewayVersion(key, "own hash")` then finds the plugin's table
///   (see ``__cacheGatewayVersion(_:_:)``). Pass `version:` to set it by hand
///   instead, for example to keep entries across a refactoring that changes nothing.
/// - The **name** is the function's full name with its enclosing types, such as
///   `InvoiceService.total(for:currency:)`; the runtime prepends the module
///   the function is declared in, giving its full name
///   (`Billing.InvoiceService.total(for:currency:)`): the name that the
///   gateway's `stats`, `functions` and `purge` and the runtime's
///   `invalidate(function:…)` and `invalidateAll(function:…)` use. Pass
///   `name:` to set it by hand, for example to keep entries across a rename.
/// - The **TTL** is how long an entry stays valid: at least 1 ms and at most a
///   year (longer is clamped). A TTL of zero or less caches nothing (every
///   call runs the body, with no lookup and no store); the macro rejects one
///   that it can read as a literal (`.zero`, `.seconds(0)`, `.milliseconds(-5)`).
///
/// The macro rejects, with an error at the attribute, what cannot be cached:
/// anything but a function with a body (an initializer, a deinitializer, a
/// function without a body; the compiler itself rejects it on a variable, a
/// subscript or a type), `inout` and closure parameters, parameters without a
/// name (`_`), functions that return nothing (`Void`, `()`) or never return
/// (`Never`), a literal TTL of zero or less, an actor's method without `key:`,
/// a `key:` path that does not name its root type (`\.id`), and `version:` or
/// `name:` given as anything but a plain, non-empty string literal. It warns on a `mutating` method, whose changes to
/// `self` a cache hit skips, and on a local function, whose captured values are
/// not part of the key. An error leaves the body as it was.
///
/// - Parameters:
///   - ttl: How long an entry stays valid once stored. The expression is passed
///     to the runtime as written, and is evaluated at each call.
///   - refresh: `.early` lets the gateway ask a caller to compute an entry
///     again shortly before it expires: that call returns the cached value at
///     once and computes the new one in the background (a detached `Task` for
///     an `async` function, a Dispatch global queue for a synchronous one),
///     so that under steady load entries never expire and no caller waits.
///     The body then escapes into that background work: it is `@Sendable`,
///     so what it captures (`self` included, for a method) must be
///     `Sendable`, and the compiler says so where it is not; the result type
///     must not be isolated to a global actor. Not on an actor's method.
///     Write it as `.early` or `.never` (default): the macro reads it.
///   - version: A string literal that replaces the computed source hash.
///   - name: A string literal that replaces the computed function name (the
///     module is still prepended).
@attached(body)
public macro Cached(
    ttl: Duration,
    refresh: CacheRefresh = .never,
    version: String? = nil,
    name: String? = nil
) = #externalMacro(module: "GatewayClientMacros", type: "CachedMacro")

/// Caches an instance method's results, identifying `self` by the value at a
/// key path instead of encoding all of it.
///
/// ```swift
/// struct InvoiceService {
///     let id: ServiceID
///     let database: Database          // not Encodable, and not part of the key
///
///     @Cached(ttl: .seconds(300), key: \InvoiceService.id)
///     func total(for customer: CustomerID) async throws -> Money { ... }
/// }
/// ```
///
/// The expansion passes `self[keyPath: key]` as the first argument where the
/// plain form passes `self`. The key path must name its root type
/// (`\InvoiceService.id`, or `\Self.id` inside the type): the attribute's
/// arguments are type-checked before the macro runs, and nothing there tells
/// the compiler what the root of `\.id` is. The value must be `Encodable`.
/// An actor's method needs this form: an actor is not `Encodable`.
///
/// Everything else is as for ``Cached(ttl:refresh:version:name:)``. `key:` on a static
/// method or a free function is an error.
///
/// - Parameters:
///   - ttl: How long an entry stays valid once stored.
///   - key: The part of `self` that identifies it for caching.
///   - refresh: `.early` or `.never` (default), as for ``Cached(ttl:refresh:version:name:)``.
///   - version: A string literal that replaces the computed source hash.
///   - name: A string literal that replaces the computed function name.
@attached(body)
public macro Cached<Root, Key: Encodable>(
    ttl: Duration,
    key: KeyPath<Root, Key>,
    refresh: CacheRefresh = .never,
    version: String? = nil,
    name: String? = nil
) = #externalMacro(module: "GatewayClientMacros", type: "CachedMacro")
