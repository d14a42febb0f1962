import SwiftSyntaxMacrosGenericTestSupport
import Testing

/// Expansion snapshots of `@Cached` for every supported shape of function.
@Suite("@Cached expansions")
struct CachedExpansionTests {
    // MARK: Free functions: sync/async × throwing/non-throwing

    @Test func synchronousFunction() {
        assertCached(
            """
            @Cached(ttl: .seconds(60))
            func square(_ x: Int) -> Int {
                x * x
            }
            """,
            expandedSource: """
                func square(_ x: Int) -> Int {
                    GatewayClient.cacheSync(ttl: .seconds(60), function: "square(_:)", version: __cacheGatewayVersion(0x869c03748c9e5b7e, "869c03748c9e5b7ecd76a683ee5761f39f1b299b7f98cb0b2444f4e6bd61758f"), arguments: x) {
                        x * x
                    }
                }
                """
        )
    }

    @Test func synchronousThrowingFunction() {
        assertCached(
            """
            @Cached(ttl: .minutes(5))
            func parse(text: String, radix: Int) throws -> Int {
                guard let value = Int(text, radix: radix) else { throw ParseError() }
                return value
            }
            """,
            expandedSource: """
                func parse(text: String, radix: Int) throws -> Int {
                    try GatewayClient.cacheSync(ttl: .minutes(5), function: "parse(text:radix:)", version: __cacheGatewayVersion(0x433d30520762a275, "433d30520762a275b31106bec2d112b4d4ab9ccf5d15ca5d98bce34ceb4a9cfd"), arguments: text, radix) { () throws in
                        guard let value = Int(text, radix: radix) else { throw ParseError() }
                        return value
                    }
                }
                """
        )
    }

    @Test func asynchronousFunction() {
        assertCached(
            """
            @Cached(ttl: .seconds(30))
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

    @Test func asynchronousThrowingFunction() {
        assertCached(
            """
            @Cached(ttl: .seconds(300))
            func exchangeRate(from: Currency, to: Currency) async throws -> Decimal {
                try await rates.fetch(from, to)
            }
            """,
            expandedSource: """
                func exchangeRate(from: Currency, to: Currency) async throws -> Decimal {
                    try await GatewayClient.cache(ttl: .seconds(300), function: "exchangeRate(from:to:)", version: __cacheGatewayVersion(0x9c7cd2542fcde90b, "9c7cd2542fcde90b9650535e3f63cd1f13cd2d9ec33162e91c8f986bda8f3786"), arguments: from, to) { () throws in
                        try await rates.fetch(from, to)
                    }
                }
                """
        )
    }

    @Test func typedThrowsKeepsItsErrorType() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func load(id: Int) async throws(LoadError) -> Record {
                try await store.load(id)
            }
            """,
            expandedSource: """
                func load(id: Int) async throws(LoadError) -> Record {
                    try await GatewayClient.cache(ttl: .seconds(1), function: "load(id:)", version: __cacheGatewayVersion(0x705a072d910ef3bc, "705a072d910ef3bc4715fc00671960bce30f8b9d1ad5e28131961f848c00409c"), arguments: id) { () throws(LoadError) in
                        try await store.load(id)
                    }
                }
                """
        )
    }

    @Test func functionWithoutParametersPassesNoArguments() {
        assertCached(
            """
            @Cached(ttl: .seconds(10))
            func now() -> Date {
                Date()
            }
            """,
            expandedSource: """
                func now() -> Date {
                    GatewayClient.cacheSync(ttl: .seconds(10), function: "now()", version: __cacheGatewayVersion(0x002bdbe64105da1a, "002bdbe64105da1a06fa0203f95b0a1827cb9c41403d621f6032bea12700c7f4")) {
                        Date()
                    }
                }
                """
        )
    }

    // MARK: Methods

    @Test func instanceMethodOfStruct() {
        assertCached(
            """
            struct InvoiceService {
                @Cached(ttl: .seconds(300))
                func total(for customer: CustomerID, currency: Currency) async throws -> Money {
                    try await database.sumInvoices(customer, currency)   // runs only on a miss
                }
            }
            """,
            expandedSource: """
                struct InvoiceService {
                    func total(for customer: CustomerID, currency: Currency) async throws -> Money {
                        try await GatewayClient.cache(ttl: .seconds(300), function: "InvoiceService.total(for:currency:)", version: __cacheGatewayVersion(0x4a6df1c60a2638a8, "4a6df1c60a2638a8053595319973134b4e67f8ae82f305baf77e680bbbee1577"), arguments: self, customer, currency) { () throws in
                            try await database.sumInvoices(customer, currency)   // runs only on a miss
                        }
                    }
                }
                """
        )
    }

    @Test func instanceMethodOfClass() {
        assertCached(
            """
            final class Catalog: Encodable {
                @Cached(ttl: .seconds(60))
                func price(of sku: String) throws -> Int {
                    try lookup(sku)
                }
            }
            """,
            expandedSource: """
                final class Catalog: Encodable {
                    func price(of sku: String) throws -> Int {
                        try GatewayClient.cacheSync(ttl: .seconds(60), function: "Catalog.price(of:)", version: __cacheGatewayVersion(0x5d720e18426185de, "5d720e18426185de69ee48c1aec14d77efe65145603700b2455df24b0a07adb5"), arguments: self, sku) { () throws in
                            try lookup(sku)
                        }
                    }
                }
                """
        )
    }

    @Test func instanceMethodOfEnum() {
        assertCached(
            """
            enum Region: String, Codable {
                case eu, us

                @Cached(ttl: .seconds(3600))
                func holidays(in year: Int) async -> [Date] {
                    await calendar.holidays(self.rawValue, year)
                }
            }
            """,
            expandedSource: """
                enum Region: String, Codable {
                    case eu, us
                    func holidays(in year: Int) async -> [Date] {
                        await GatewayClient.cache(ttl: .seconds(3600), function: "Region.holidays(in:)", version: __cacheGatewayVersion(0xeb24cec940758237, "eb24cec9407582376cfe22529c6c1584a659ab37a62f20162ba540cf23496bc9"), arguments: self, year) {
                            await calendar.holidays(self.rawValue, year)
                        }
                    }
                }
                """
        )
    }

    @Test func keyPathReplacesSelf() {
        assertCached(
            """
            actor Recommender {
                let id: String
                @Cached(ttl: .seconds(120), key: \\Recommender.id)
                func recommendations(for user: UserID) async throws -> [ItemID] {
                    try await model.rank(user)
                }
            }
            """,
            expandedSource: """
                actor Recommender {
                    let id: String
                    func recommendations(for user: UserID) async throws -> [ItemID] {
                        try await GatewayClient.cache(ttl: .seconds(120), function: "Recommender.recommendations(for:)", version: __cacheGatewayVersion(0x53ad6b1e2f9896bc, "53ad6b1e2f9896bcc5e5a8317595c748532a384eeccf5f87dc9ab278ecf2d03e"), arguments: self[keyPath: \\Recommender.id], user) { () throws in
                            try await model.rank(user)
                        }
                    }
                }
                """
        )
    }

    @Test func keyPathOnMethodWithoutParameters() {
        assertCached(
            """
            struct Account {
                let id: UUID
                @Cached(ttl: .seconds(5), key: \\Self.id, version: "7")
                func balance() async throws -> Money {
                    try await ledger.balance(id)
                }
            }
            """,
            expandedSource: """
                struct Account {
                    let id: UUID
                    func balance() async throws -> Money {
                        try await GatewayClient.cache(ttl: .seconds(5), function: "Account.balance()", version: "7", arguments: self[keyPath: \\Self.id]) { () throws in
                            try await ledger.balance(id)
                        }
                    }
                }
                """
        )
    }

    @Test func staticMethodHasNoSelf() {
        assertCached(
            """
            struct Rates {
                @Cached(ttl: .seconds(60))
                static func current(in currency: Currency) async throws -> Decimal {
                    try await fetch(currency)
                }
            }
            """,
            expandedSource: """
                struct Rates {
                    static func current(in currency: Currency) async throws -> Decimal {
                        try await GatewayClient.cache(ttl: .seconds(60), function: "Rates.current(in:)", version: __cacheGatewayVersion(0x6841c5914d1e80e0, "6841c5914d1e80e0509cf62b1ca66de3216199d89efa735d957108f13cfc67fb"), arguments: currency) { () throws in
                            try await fetch(currency)
                        }
                    }
                }
                """
        )
    }

    @Test func classMethodHasNoSelf() {
        assertCached(
            """
            class Loader {
                @Cached(ttl: .seconds(60))
                class func defaults() -> [String: String] {
                    readDefaults()
                }
            }
            """,
            expandedSource: """
                class Loader {
                    class func defaults() -> [String: String] {
                        GatewayClient.cacheSync(ttl: .seconds(60), function: "Loader.defaults()", version: __cacheGatewayVersion(0xc3647276d0b9876a, "c3647276d0b9876acb1bba6386d0f5699fcb225a5ca758370d886703f0f160a3")) {
                            readDefaults()
                        }
                    }
                }
                """
        )
    }

    @Test func genericFunction() {
        assertCached(
            """
            @Cached(ttl: .seconds(60))
            func largest<Element: Comparable & Codable>(of values: [Element], default fallback: Element) -> Element where Element: Sendable {
                values.max() ?? fallback
            }
            """,
            expandedSource: """
                func largest<Element: Comparable & Codable>(of values: [Element], default fallback: Element) -> Element where Element: Sendable {
                    GatewayClient.cacheSync(ttl: .seconds(60), function: "largest(of:default:)", version: __cacheGatewayVersion(0x385a672ff61bc289, "385a672ff61bc289764fc7873fadfe1f8badfd6c7de5cc71a288107048bea36f"), arguments: values, fallback) {
                        values.max() ?? fallback
                    }
                }
                """
        )
    }

    // MARK: Names

    @Test func nestedTypesAndExtensionsNameTheFunction() {
        assertCached(
            """
            enum Outer {
                struct Inner {
                    @Cached(ttl: .seconds(1))
                    static func g(_ x: Int, y: Int) -> Int { x + y }
                }
            }
            extension Outer.Inner {
                @Cached(ttl: .seconds(1))
                static func h() -> Int { 1 }
            }
            extension Outer {
                final class Deep {
                    @Cached(ttl: .seconds(1))
                    static func k(`default`: Int) -> Int { `default` }
                }
            }
            """,
            expandedSource: """
                enum Outer {
                    struct Inner {
                        static func g(_ x: Int, y: Int) -> Int {
                            GatewayClient.cacheSync(ttl: .seconds(1), function: "Outer.Inner.g(_:y:)", version: __cacheGatewayVersion(0x39900150194b1484, "39900150194b1484904f9a847f6998b5df84262c1c4a9827519f3a239528ccb7"), arguments: x, y) {
                                x + y
                            }
                        }
                    }
                }
                extension Outer.Inner {
                    static func h() -> Int {
                        GatewayClient.cacheSync(ttl: .seconds(1), function: "Outer.Inner.h()", version: __cacheGatewayVersion(0x56231599c755fb66, "56231599c755fb665a936720f27eafb53949dfb35b7b14dc70d12c53162d5418")) {
                            1
                        }
                    }
                }
                extension Outer {
                    final class Deep {
                        static func k(`default`: Int) -> Int {
                            GatewayClient.cacheSync(ttl: .seconds(1), function: "Outer.Deep.k(default:)", version: __cacheGatewayVersion(0x8932274f3c692db7, "8932274f3c692db72b692a673baef3534c4dfbfdb1534f2b9493b6920e580d5f"), arguments: `default`) {
                                `default`
                            }
                        }
                    }
                }
                """
        )
    }

    @Test func keywordParameterNameIsBackquoted() {
        assertCached(
            """
            @Cached(ttl: .seconds(1))
            func count(in: [Int]) -> Int {
                `in`.count
            }
            """,
            expandedSource: """
                func count(in: [Int]) -> Int {
                    GatewayClient.cacheSync(ttl: .seconds(1), function: "count(in:)", version: __cacheGatewayVersion(0xf402287f643669be, "f402287f643669beaf8270d2c94f4c4a01a306880f1e465c560de38c3933cfab"), arguments: `in`) {
                        `in`.count
                    }
                }
                """
        )
    }

    @Test func nameOverride() {
        assertCached(
            """
            struct InvoiceService {
                @Cached(ttl: .seconds(300), name: "Billing.total(for:)")
                func grandTotal(for customer: CustomerID) async throws -> Money {
                    try await database.sum(customer)
                }
            }
            """,
            expandedSource: """
                struct InvoiceService {
                    func grandTotal(for customer: CustomerID) async throws -> Money {
                        try await GatewayClient.cache(ttl: .seconds(300), function: "Billing.total(for:)", version: __cacheGatewayVersion(0xd7b7e9bc61c647fc, "d7b7e9bc61c647fcd3800f37f29a80b766281dbd8c0603b17113e0dc7d3d9874"), arguments: self, customer) { () throws in
                            try await database.sum(customer)
                        }
                    }
                }
                """
        )
    }

    @Test func versionOverride() {
        assertCached(
            """
            @Cached(ttl: .seconds(300), version: "2024-06 schema")
            func report(month: Int) async throws -> Report {
                try await build(month)
            }
            """,
            expandedSource: """
                func report(month: Int) async throws -> Report {
                    try await GatewayClient.cache(ttl: .seconds(300), function: "report(month:)", version: "2024-06 schema", arguments: month) { () throws in
                        try await build(month)
                    }
                }
                """
        )
    }

    @Test func bothOverridesArePassedAsWritten() {
        assertCached(
            #"""
            @Cached(ttl: .seconds(300), version: #"v"2""#, name: "report\u{2010}monthly", )
            func report(month: Int) -> Report {
                build(month)
            }
            """#,
            expandedSource: #"""
                func report(month: Int) -> Report {
                    GatewayClient.cacheSync(ttl: .seconds(300), function: "report\u{2010}monthly", version: #"v"2""#, arguments: month) {
                        build(month)
                    }
                }
                """#
        )
    }

    @Test func nilOverridesMeanTheDefaults() {
        assertCached(
            """
            @Cached(ttl: .seconds(300), version: nil, name: nil)
            func report(month: Int) -> Report {
                build(month)
            }
            """,
            expandedSource: """
                func report(month: Int) -> Report {
                    GatewayClient.cacheSync(ttl: .seconds(300), function: "report(month:)", version: __cacheGatewayVersion(0x8d44d1e0515061fd, "8d44d1e0515061fdbcedbc326348905ce299eb9ef14f3d1f72458b654f0a9201"), arguments: month) {
                        build(month)
                    }
                }
                """
        )
    }

    // MARK: Bodies

    @Test func ttlIsSplicedAsWritten() {
        assertCached(
            """
            @Cached(ttl: Self.defaultTTL * /* doubled */ 2 /* trailing trivia is dropped */)
            func f(x: Int) -> Int { x }
            """,
            expandedSource: """
                func f(x: Int) -> Int {
                    GatewayClient.cacheSync(ttl: Self.defaultTTL * /* doubled */ 2, function: "f(x:)", version: __cacheGatewayVersion(0x7f179c150b7db274, "7f179c150b7db274d712a0db4367f83f9aaecbeda3d4c26317e80cc03fe0c2de"), arguments: x) {
                        x
                    }
                }
                """
        )
    }

    @Test func bodyKeepsItsLayoutCommentsAndMultilineStrings() {
        assertCached(
            #"""
            struct Reports {
                @Cached(ttl: .seconds(60))
                static func render(title: String, rows: [Row]) -> String {
                    // Header first.
                    var text = """
                        # \(title)
                          indented line

                        """
                    for row in rows {
                        text += row.line   // one per row
                    }
                    return text
                }
            }
            """#,
            expandedSource: #"""
                struct Reports {
                    static func render(title: String, rows: [Row]) -> String {
                        GatewayClient.cacheSync(ttl: .seconds(60), function: "Reports.render(title:rows:)", version: __cacheGatewayVersion(0xe46091543c488e44, "e46091543c488e4477bf1e29dfe13171ca8c8072e134fa9318009d253f399743"), arguments: title, rows) {
                            // Header first.
                            var text = """
                                # \(title)
                                  indented line

                                """
                            for row in rows {
                                text += row.line   // one per row
                            }
                            return text
                        }
                    }
                }
                """#
        )
    }

    @Test func otherAttributesAndModifiersStay() {
        assertCached(
            """
            struct Service {
                @discardableResult
                @Cached(ttl: .seconds(60))
                @inlinable public nonisolated func refresh(_ id: Int) async -> Bool {
                    await reload(id)
                }
            }
            """,
            expandedSource: """
                struct Service {
                    @discardableResult
                    @inlinable public nonisolated func refresh(_ id: Int) async -> Bool {
                        await GatewayClient.cache(ttl: .seconds(60), function: "Service.refresh(_:)", version: __cacheGatewayVersion(0xd3a8dc7ae34dcc9f, "d3a8dc7ae34dcc9ffa6b6a32ae6195cbb8235f4b342e758d38d187f66a657650"), arguments: self, id) {
                            await reload(id)
                        }
                    }
                }
                """
        )
    }

    @Test func variadicAndDefaultedParametersArePassed() {
        assertCached(
            """
            @Cached(ttl: .seconds(60))
            func sum(_ values: Int..., scale: Int = 1) -> Int {
                values.reduce(0, +) * scale
            }
            """,
            expandedSource: """
                func sum(_ values: Int..., scale: Int = 1) -> Int {
                    GatewayClient.cacheSync(ttl: .seconds(60), function: "sum(_:scale:)", version: __cacheGatewayVersion(0x76dbd423e31bdb10, "76dbd423e31bdb10dfc1870bce7807ffd849535ace0de7da6cfca168c297b95a"), arguments: values, scale) {
                        values.reduce(0, +) * scale
                    }
                }
                """
        )
    }

    @Test func operatorFunction() {
        assertCached(
            """
            extension Matrix {
                @Cached(ttl: .seconds(60))
                static func * (lhs: Matrix, rhs: Matrix) -> Matrix {
                    multiply(lhs, rhs)
                }
            }
            """,
            expandedSource: """
                extension Matrix {
                    static func * (lhs: Matrix, rhs: Matrix) -> Matrix {
                        GatewayClient.cacheSync(ttl: .seconds(60), function: "Matrix.*(_:_:)", version: __cacheGatewayVersion(0x6c6ef6d5dd3e5e5e, "6c6ef6d5dd3e5e5eb5a2c0eb2defefddcbbbce501b379810a422083cc60a638f"), arguments: lhs, rhs) {
                            multiply(lhs, rhs)
                        }
                    }
                }
                """
        )
    }
}
