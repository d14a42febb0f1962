import SwiftSyntaxMacrosGenericTestSupport
import Testing

/// Snapshots of every diagnostic `@Cached` reports. Errors are thrown, all at
/// once, so the expansion fails and the declaration stays exactly as written
/// (no follow-up errors about the expansion); warnings come with the normal
/// expansion.
@Suite("@Cached diagnostics")
struct CachedDiagnosticsTests {
    // MARK: Not a function

    @Test func initializer() {
        assertCached(
            """
            struct Money {
                @Cached(ttl: .seconds(1))
                init(cents: Int) { self.cents = cents }
            }
            """,
            expandedSource: """
                struct Money {
                    init(cents: Int) { self.cents = cents }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached cannot be applied to an initializer: it caches a function's result, and an initializer has none",
                    line: 2,
                    column: 5,
                    fixIts: [FixItSpec(message: "Remove '@Cached'")]
                )
            ],
            fixedSource: """
                struct Money {
                    init(cents: Int) { self.cents = cents }
                }
                """
        )
    }

    /// The compiler rejects a body macro on a variable, a subscript or a type
    /// before the macro runs ("'body' macro cannot be attached to property
    /// ('total')", Swift 6.3), so `@Cached` never sees one: the expansion leaves
    /// the declaration alone and reports nothing. (A peer role would let the macro
    /// report it too, but the compiler's error stays, so it would only add a
    /// duplicate.)
    @Test func variableIsRejectedByTheCompilerNotTheMacro() {
        assertCached(
            """
            struct Report {
                @Cached(ttl: .seconds(1))
                var total: Int { compute() }
            }
            """,
            expandedSource: """
                struct Report {
                    var total: Int { compute() }
                }
                """
        )
    }

    @Test func deinitializer() {
        assertCached(
            """
            final class Connection {
                @Cached(ttl: .seconds(1)) deinit { close() }
            }
            """,
            expandedSource: """
                final class Connection {
                    deinit { close() }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached can only be applied to a function or method, not to a deinitializer",
                    line: 2,
                    column: 5,
                    fixIts: [FixItSpec(message: "Remove '@Cached'")]
                )
            ],
            fixedSource: """
                final class Connection {
                    deinit { close() }
                }
                """
        )
    }

    /// Swift 6.3 stops `@Cached` on an accessor before the macro sees it (its
    /// plugin library reports "declaration is not a type with an optional code
    /// block"); this is the macro's own message for a compiler that passes the
    /// accessor through.
    @Test func accessor() {
        assertCached(
            """
            struct Report {
                var total: Int {
                    @Cached(ttl: .seconds(1))
                    get { compute() }
                }
            }
            """,
            expandedSource: """
                struct Report {
                    var total: Int {
                        get { compute() }
                    }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached can only be applied to a function or method, not to an accessor",
                    line: 3,
                    column: 9,
                    fixIts: [FixItSpec(message: "Remove '@Cached'")]
                )
            ]
        )
    }

    @Test func functionWithoutBody() {
        assertCached(
            """
            protocol Rates {
                @Cached(ttl: .seconds(1))
                func rate(of currency: Currency) -> Decimal
            }
            """,
            expandedSource: """
                protocol Rates {
                    func rate(of currency: Currency) -> Decimal
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a function with a body; the body is what runs on a cache miss",
                    line: 2,
                    column: 5
                )
            ]
        )
    }

    // MARK: Parameters

    @Test func inoutParameter() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func normalise(_ values: inout [Double], scale: Double) -> Double {
                values = values.map { $0 * scale }
                return values.reduce(0, +)
            }
            """,
            expandedSource: """
                func normalise(_ values: inout [Double], scale: Double) -> Double {
                    values = values.map { $0 * scale }
                    return values.reduce(0, +)
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with an 'inout' parameter ('values'): a cache hit would skip the changes the body makes to it",
                    line: 1,
                    column: 1,
                    highlights: ["_ values: inout [Double],"]
                )
            ]
        )
    }

    @Test func closureParameters() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func run(
                transform: (Int) -> Int,
                completion: @escaping @Sendable () -> Void,
                progress: ((Double) -> Void)?,
                log: Optional<(String) -> Void>,
                filter: (@Sendable (Int) -> Bool)!
            ) -> Int {
                transform(1)
            }
            """,
            expandedSource: """
                func run(
                    transform: (Int) -> Int,
                    completion: @escaping @Sendable () -> Void,
                    progress: ((Double) -> Void)?,
                    log: Optional<(String) -> Void>,
                    filter: (@Sendable (Int) -> Bool)!
                ) -> Int {
                    transform(1)
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with a closure parameter ('transform'): a closure cannot be part of a cache key",
                    line: 1,
                    column: 1,
                    highlights: ["transform: (Int) -> Int,"]
                ),
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with a closure parameter ('completion'): a closure cannot be part of a cache key",
                    line: 1,
                    column: 1,
                    highlights: ["completion: @escaping @Sendable () -> Void,"]
                ),
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with a closure parameter ('progress'): a closure cannot be part of a cache key",
                    line: 1,
                    column: 1,
                    highlights: ["progress: ((Double) -> Void)?,"]
                ),
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with a closure parameter ('log'): a closure cannot be part of a cache key",
                    line: 1,
                    column: 1,
                    highlights: ["log: Optional<(String) -> Void>,"]
                ),
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with a closure parameter ('filter'): a closure cannot be part of a cache key",
                    line: 1,
                    column: 1,
                    highlights: ["filter: (@Sendable (Int) -> Bool)!"]
                ),
            ]
        )
    }

    @Test func unnamedParameters() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func pick(_: Int, _ _: String, label _: Bool) -> Int {
                0
            }
            """,
            expandedSource: """
                func pick(_: Int, _ _: String, label _: Bool) -> Int {
                    0
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a name for every parameter, because each argument is part of the cache key; give '_: Int' a parameter name",
                    line: 1,
                    column: 1,
                    highlights: ["_: Int,"],
                    fixIts: [FixItSpec(message: "Name the parameter '<#name#>'")]
                ),
                DiagnosticSpec(
                    message: "@Cached needs a name for every parameter, because each argument is part of the cache key; give '_ _: String' a parameter name",
                    line: 1,
                    column: 1,
                    highlights: ["_ _: String,"],
                    fixIts: [FixItSpec(message: "Name the parameter '<#name#>'")]
                ),
                DiagnosticSpec(
                    message: "@Cached needs a name for every parameter, because each argument is part of the cache key; give 'label _: Bool' a parameter name",
                    line: 1,
                    column: 1,
                    highlights: ["label _: Bool"],
                    fixIts: [FixItSpec(message: "Name the parameter 'label'")]
                ),
            ],
            fixedSource: """
                @Cached(ttl: .seconds(1))
                func pick(_ <#name#>: Int, _ <#name#>: String, label: Bool) -> Int {
                    0
                }
                """
        )
    }

    // MARK: Results

    @Test func noResultType() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func warmUp(size: Int) async {
                await pool.fill(size)
            }
            """,
            expandedSource: """
                func warmUp(size: Int) async {
                    await pool.fill(size)
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; this one has no result type",
                    line: 1,
                    column: 1,
                    highlights: ["(size: Int) async"]
                )
            ]
        )
    }

    @Test func voidResultTypes() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func a(x: Int) -> Void { log(x) }
            @Cached(ttl: .seconds(1))
            func b(x: Int) -> () { log(x) }
            @Cached(ttl: .seconds(1))
            func c(x: Int) -> Swift.Void { log(x) }
            """,
            expandedSource: """
                func a(x: Int) -> Void { log(x) }
                func b(x: Int) -> () { log(x) }
                func c(x: Int) -> Swift.Void { log(x) }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; 'Void' is nothing to cache",
                    line: 1,
                    column: 1,
                    highlights: ["Void"]
                ),
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; '()' is nothing to cache",
                    line: 3,
                    column: 1,
                    highlights: ["()"]
                ),
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; 'Swift.Void' is nothing to cache",
                    line: 5,
                    column: 1,
                    highlights: ["Swift.Void"]
                ),
            ]
        )
    }

    @Test func neverResultType() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func fail(reason: String) -> Never {
                fatalError(reason)
            }
            """,
            expandedSource: """
                func fail(reason: String) -> Never {
                    fatalError(reason)
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; a function returning 'Never' never does",
                    line: 1,
                    column: 1,
                    highlights: ["Never"]
                )
            ]
        )
    }

    // MARK: Attribute arguments

    @Test func versionNotAStringLiteral() {
        assertCached(
            #"""
            @Cached(ttl: .seconds(1), version: Build.version)
            func a(x: Int) -> Int { x }
            @Cached(ttl: .seconds(1), version: "v\(Build.number)")
            func b(x: Int) -> Int { x }
            """#,
            expandedSource: """
                func a(x: Int) -> Int { x }
                func b(x: Int) -> Int { x }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs 'version:' as a plain string literal (no interpolation, no expression), because it is read at compile time",
                    line: 1,
                    column: 1,
                    highlights: ["Build.version"]
                ),
                DiagnosticSpec(
                    message: "@Cached needs 'version:' as a plain string literal (no interpolation, no expression), because it is read at compile time",
                    line: 3,
                    column: 1,
                    highlights: [#""v\(Build.number)""#]
                ),
            ]
        )
    }

    @Test func nameNotAStringLiteral() {
        assertCached(
            """
            @Cached(ttl: .seconds(1), name: prefix + ".a")
            func a(x: Int) -> Int { x }
            """,
            expandedSource: """
                func a(x: Int) -> Int { x }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs 'name:' as a plain string literal (no interpolation, no expression), because it is read at compile time",
                    line: 1,
                    column: 1,
                    highlights: [#"prefix + ".a""#]
                )
            ]
        )
    }

    @Test func emptyVersionAndName() {
        assertCached(
            """
            @Cached(ttl: .seconds(1), version: "", name: "")
            func a(x: Int) -> Int { x }
            """,
            expandedSource: """
                func a(x: Int) -> Int { x }
                """,
            diagnostics: [
                DiagnosticSpec(message: "@Cached needs a non-empty 'version:'", line: 1, column: 1, highlights: [#""""#]),
                DiagnosticSpec(message: "@Cached needs a non-empty 'name:'", line: 1, column: 1, highlights: [#""""#]),
            ]
        )
    }

    @Test func keyOnStaticMethodOrFreeFunction() {
        assertCached(
            """
            struct Rates {
                @Cached(ttl: .seconds(1), key: \\Rates.id)
                static func current() -> Decimal { 1 }
            }
            @Cached(ttl: .seconds(1), key: \\Rates.id, name: "f")
            func f() -> Int { 1 }
            """,
            expandedSource: """
                struct Rates {
                    static func current() -> Decimal { 1 }
                }
                func f() -> Int { 1 }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached 'key:' selects the part of 'self' that identifies it, so it applies only to instance methods; remove it",
                    line: 2,
                    column: 5,
                    highlights: ["key: \\Rates.id"],
                    fixIts: [FixItSpec(message: "Remove 'key:'")]
                ),
                DiagnosticSpec(
                    message: "@Cached 'key:' selects the part of 'self' that identifies it, so it applies only to instance methods; remove it",
                    line: 5,
                    column: 1,
                    highlights: ["key: \\Rates.id,"],
                    fixIts: [FixItSpec(message: "Remove 'key:'")]
                ),
            ],
            fixedSource: """
                struct Rates {
                    @Cached(ttl: .seconds(1))
                    static func current() -> Decimal { 1 }
                }
                @Cached(ttl: .seconds(1), name: "f")
                func f() -> Int { 1 }
                """
        )
    }

    /// An actor is not `Encodable`, so `self` cannot be an argument: the
    /// plain form is an error at the attribute (not a generic-constraint error
    /// inside the expansion), saying to name the property that identifies it.
    @Test func actorMethodWithoutKey() {
        assertCached(
            """
            actor Recommender {
                let id: String
                @Cached(ttl: .seconds(120))
                func recommendations(for user: UserID) async throws -> [ItemID] {
                    try await model.rank(user)
                }
            }
            """,
            expandedSource: """
                actor Recommender {
                    let id: String
                    func recommendations(for user: UserID) async throws -> [ItemID] {
                        try await model.rank(user)
                    }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached on an actor's method needs 'key:', because an actor is not Encodable and so cannot be part of the cache key; name the property that identifies the instance, for example 'key: \\Self.id'",
                    line: 3,
                    column: 5
                )
            ]
        )
    }

    /// A static method of an actor passes no `self`, and a method with `key:`
    /// passes the key's value: neither needs more.
    @Test func actorStaticMethodOrMethodWithKeyIsFine() {
        let (expanded, diagnostics) = expand(
            """
            actor Recommender {
                let id: String
                @Cached(ttl: .seconds(120))
                static func popular(limit: Int) async -> [ItemID] { [] }
                @Cached(ttl: .seconds(120), key: \\Self.id)
                func recommendations(for user: UserID) async -> [ItemID] { [] }
            }
            """
        )
        #expect(diagnostics.isEmpty, "\(diagnostics.map(\.message))")
        #expect(expanded.contains("arguments: limit)"))
        #expect(expanded.contains("arguments: self[keyPath: \\Self.id], user)"))
    }

    /// The attribute's arguments are type-checked on their own, so `\.id` has
    /// no root type to infer; the macro says what to write instead.
    @Test func keyPathWithoutRootType() {
        assertCached(
            """
            struct Repository {
                let id: Int
                @Cached(ttl: .seconds(60), key: \\.id)
                func stars() async throws -> Int { try await fetch(id) }
            }
            """,
            expandedSource: """
                struct Repository {
                    let id: Int
                    func stars() async throws -> Int { try await fetch(id) }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs 'key:' as a key path that names its root type: write '\\Self.id' instead of '\\.id'; the attribute's arguments are type-checked on their own, where nothing tells the compiler what the root of '\\.id' is",
                    line: 3,
                    column: 5,
                    highlights: ["\\.id"],
                    fixIts: [FixItSpec(message: "Write '\\Self.id'")]
                )
            ],
            fixedSource: """
                struct Repository {
                    let id: Int
                    @Cached(ttl: .seconds(60), key: \\Self.id)
                    func stars() async throws -> Int { try await fetch(id) }
                }
                """
        )
    }

    /// A TTL of zero or less caches nothing (the runtime runs every such call
    /// uncached), so one the macro can read is an error: every spelling of a
    /// zero or negative literal, with `Duration.` or without.
    @Test(arguments: [
        ".zero", "Duration.zero", "Swift.Duration.zero", ".seconds(0)", ".seconds(-1)", ".milliseconds(-5)",
        ".microseconds(0x0)", ".nanoseconds(-1_000)", ".seconds(0.0)", ".seconds(-0.5)", "Duration.seconds(-(2))", ".seconds(0e3)",
    ])
    func zeroOrNegativeTTL(ttl: String) {
        assertCached(
            """
            enum Rates {
                @Cached(ttl: \(ttl))
                static func current(currency: String) -> Decimal { 1 }
            }
            """,
            expandedSource: """
                enum Rates {
                    static func current(currency: String) -> Decimal { 1 }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs a positive 'ttl:'; with '\(ttl)' nothing is ever cached (every call runs the function, with no lookup and no store), so give a positive TTL or remove '@Cached'",
                    line: 2,
                    column: 5,
                    highlights: [ttl],
                    fixIts: [FixItSpec(message: "Remove '@Cached'")]
                )
            ],
            fixedSource: """
                enum Rates {
                    static func current(currency: String) -> Decimal { 1 }
                }
                """
        )
    }

    /// Positive literals, and expressions the macro cannot evaluate, are
    /// left to the runtime (which runs a call with a TTL of zero or less uncached).
    @Test(arguments: [".seconds(1)", ".milliseconds(0.5)", ".nanoseconds(1)", ".seconds(0x10)", ".seconds(+3)", "ttl", ".seconds(-ttl)", ".seconds(Int64.max)"])
    func positiveOrUnknownTTL(ttl: String) {
        let (expanded, diagnostics) = expand(
            """
            enum Rates {
                @Cached(ttl: \(ttl))
                static func current(currency: String) -> Decimal { 1 }
            }
            """
        )
        #expect(diagnostics.isEmpty, "\(diagnostics.map(\.message))")
        #expect(expanded.contains("GatewayClient.cacheSync(ttl: \(ttl), "))
    }

    @Test func errorsAreAllReported() {
        assertCached(
            """
            @Cached(ttl: .seconds(1), version: v)
            func f(_: inout Int) {
            }
            """,
            expandedSource: """
                func f(_: inout Int) {
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs 'version:' as a plain string literal (no interpolation, no expression), because it is read at compile time",
                    line: 1,
                    column: 1
                ),
                DiagnosticSpec(
                    message: "@Cached cannot cache a function with an 'inout' parameter ('_'): a cache hit would skip the changes the body makes to it",
                    line: 1,
                    column: 1
                ),
                DiagnosticSpec(
                    message: "@Cached needs a name for every parameter, because each argument is part of the cache key; give '_: inout Int' a parameter name",
                    line: 1,
                    column: 1,
                    fixIts: [FixItSpec(message: "Name the parameter '<#name#>'")]
                ),
                DiagnosticSpec(
                    message: "@Cached needs a function that returns a value; this one has no result type",
                    line: 1,
                    column: 1
                ),
            ]
        )
    }

    // MARK: Warnings

    @Test func mutatingMethodWarns() {
        assertCached(
            """
            struct Counter: Codable {
                var hits = 0
                @Cached(ttl: .seconds(1))
                mutating func next(after value: Int) -> Int {
                    hits += 1
                    return value + 1
                }
            }
            """,
            expandedSource: """
                struct Counter: Codable {
                    var hits = 0
                    mutating func next(after value: Int) -> Int {
                        GatewayClient.cacheSync(ttl: .seconds(1), function: "Counter.next(after:)", version: __cacheGatewayVersion(0x5da7dd553fb65f5b, "5da7dd553fb65f5b6185b413536143fa6efb23db4cad67d27ef9cef35f455880"), arguments: self, value) {
                            hits += 1
                            return value + 1
                        }
                    }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached on a 'mutating' method: a cache hit returns the stored result without running the body, so the body's changes to 'self' are skipped",
                    line: 3,
                    column: 5,
                    severity: .warning
                )
            ]
        )
    }

    @Test func localFunctionWarns() {
        assertCached(
            """
            struct Importer {
                func run(batch: Int) -> Int {
                    @Cached(ttl: .seconds(1))
                    func parse(_ line: String) -> Int {
                        Int(line)! + batch
                    }
                    return parse("1")
                }
            }
            """,
            expandedSource: """
                struct Importer {
                    func run(batch: Int) -> Int {
                        func parse(_ line: String) -> Int {
                            GatewayClient.cacheSync(ttl: .seconds(1), function: "Importer.run(batch:).parse(_:)", version: __cacheGatewayVersion(0xcb92bf536bcde470, "cb92bf536bcde47056c2df9803990eaaedf1e7821189e096205c5f522c55c8c4"), arguments: line) {
                                Int(line)! + batch
                            }
                        }
                        return parse("1")
                    }
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached on a local function: the values it captures from the enclosing scope are not part of the cache key, so a hit may return a result computed from other captured values",
                    line: 3,
                    column: 9,
                    severity: .warning
                )
            ]
        )
    }
}
