import SwiftSyntaxMacrosGenericTestSupport
import Testing

/// `@Cached(ttl:refresh:)`: `.early` expands to the runtime's form with an
/// escaping, `@Sendable` body; `.never` to the plain form; anything else is
/// an error, since the form is chosen at compile time. (The version hashes
/// are those of the same functions in `CachedExpansionTests`: the attribute
/// is not part of the hashed source.)
@Suite("@Cached refresh:")
struct CachedRefreshTests {
    @Test func earlyRefreshOfAnAsynchronousFunction() {
        assertCached(
            """
            @Cached(ttl: .seconds(30), refresh: .early)
            func weather(in city: String) async -> Forecast {
                await service.forecast(city)
            }
            """,
            expandedSource: """
                func weather(in city: String) async -> Forecast {
                    await GatewayClient.cache(ttl: .seconds(30), refresh: .early, function: "weather(in:)", version: __cacheGatewayVersion(0x99710f3fe73d5b1e, "99710f3fe73d5b1e4e50784bc16eb3244a5d86e6a97b8deacd135977b5c7de48"), arguments: city) {
                        await service.forecast(city)
                    }
                }
                """
        )
    }

    @Test func earlyRefreshOfASynchronousFunctionWithOtherArguments() {
        assertCached(
            """
            @Cached(ttl: .seconds(60), refresh: CacheRefresh.early, name: "square")
            func square(_ x: Int) -> Int {
                x * x
            }
            """,
            expandedSource: """
                func square(_ x: Int) -> Int {
                    GatewayClient.cacheSync(ttl: .seconds(60), refresh: .early, function: "square", version: __cacheGatewayVersion(0x869c03748c9e5b7e, "869c03748c9e5b7ecd76a683ee5761f39f1b299b7f98cb0b2444f4e6bd61758f"), arguments: x) {
                        x * x
                    }
                }
                """
        )
    }

    @Test func neverIsThePlainForm() {
        assertCached(
            """
            @Cached(ttl: .seconds(30), refresh: .never)
            func weather(in city: String) async -> Forecast {
                await service.forecast(city)
            }
            """,
            expandedSource: """
                func weather(in city: String) async -> Forecast {
                    await GatewayClient.cache(ttl: .seconds(30), function: "weather(in:)", version: __cacheGatewayVersion(0x99710f3fe73d5b1e, "99710f3fe73d5b1e4e50784bc16eb3244a5d86e6a97b8deacd135977b5c7de48"), arguments: city) {
                        await service.forecast(city)
                    }
                }
                """
        )
    }

    @Test func refreshThatIsNotALiteral() {
        assertCached(
            """
            @Cached(ttl: .seconds(30), refresh: Settings.refresh)
            func weather(in city: String) async -> Forecast {
                await service.forecast(city)
            }
            """,
            expandedSource: """
                func weather(in city: String) async -> Forecast {
                    await service.forecast(city)
                }
                """,
            diagnostics: [
                DiagnosticSpec(
                    message: "@Cached needs 'refresh:' written as '.early' or '.never', not 'Settings.refresh': it is read at compile time, because early refresh expands to another form (a body that runs again in the background, so it escapes and must be @Sendable)",
                    line: 1,
                    column: 1,
                    highlights: ["Settings.refresh"]
                )
            ]
        )
    }

    @Test func earlyRefreshOnAnActorsMethod() {
        assertCached(
            """
            actor Recommender {
                let id: String
                @Cached(ttl: .seconds(120), key: \\Self.id, refresh: .early)
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
                    message: "@Cached 'refresh: .early' cannot be used on an actor's method: a refresh runs the body in the background, outside the actor, where its state cannot be used; cache a nonisolated function the method calls instead",
                    line: 3,
                    column: 5
                )
            ]
        )
    }
}
