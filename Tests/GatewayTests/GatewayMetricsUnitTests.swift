@testable import Gateway
import GatewayProtocol
import Metrics
import MetricsTestKit
import Testing

/// `GatewayMetrics` on swift-metrics' test factory, and `MetricsEndpoint` parsing.
struct GatewayMetricsUnitTests {
    typealias Names = GatewayMetrics.Names

    @Test func functionsPastTheBoundAreCountedTogetherUnderOther() throws {
        let factory = TestMetrics()
        let metrics = GatewayMetrics(factory: factory, maximumFunctions: 2)
        for name in ["a()", "b()", "c()", "d()", "a()"] {
            metrics.function(name).recordHit(computeMicroseconds: 10)
        }
        #expect(try factory.expectCounter(Names.hits, [("function", "a()")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.hits, [("function", "b()")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.hits, [("function", GatewayMetrics.otherFunction)]).totalValue == 2)
        #expect(try factory.expectCounter(Names.computeSaved, [("function", "a()")]).totalValue == 20)
        // c() and d() have no series of their own.
        let functions = Set(factory.counters(label: Names.hits).compactMap { $0.dimensions.first { $0.0 == "function" }?.1 })
        #expect(functions == ["a()", "b()", GatewayMetrics.otherFunction])
        // The same object is handed out again: nothing is made per request.
        #expect(metrics.function("a()") === metrics.function("a()"))
        #expect(metrics.function("c()") === metrics.function("d()"))
        // A function named like the overflow shares its series, made once.
        let named = GatewayMetrics(factory: TestMetrics())
        #expect(named.function(GatewayMetrics.otherFunction) === named.function(GatewayMetrics.otherFunction))
    }

    @Test func requestsErrorsStoresAndPurgesGoToTheirSeries() throws {
        let factory = TestMetrics()
        let metrics = GatewayMetrics(factory: factory)
        metrics.recordRequest(.lookup)
        metrics.recordRequest(.lookup)
        metrics.recordRequest(.stats)
        metrics.recordRequest(.functions)
        metrics.recordRequest(nil)
        // A reply type is not a request: it counts as invalid.
        metrics.recordRequest(.pong)
        metrics.recordError(.timeout)
        metrics.recordError(ErrorCode(rawValue: 999))
        let function = metrics.function("f()")
        metrics.recordStore(function, stored: true)
        metrics.recordStore(function, stored: false)
        metrics.recordPurge(function: "f()", deleted: 3)
        metrics.recordPurge(function: "f()", deleted: 0)
        // Compute times beyond Int64 are clamped, not a crash.
        function.recordHit(computeMicroseconds: .max)

        #expect(try factory.expectCounter(Names.requests, [("type", "lookup")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.requests, [("type", "stats")]).totalValue == 1)
        // Every request type has its series, `functions` (8) included.
        for type in (0...255).map({ MessageType(rawValue: UInt64($0)) }) where type.isRequest {
            metrics.recordRequest(type)
        }
        #expect(try factory.expectCounter(Names.requests, [("type", "functions")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.requests, [("type", "invalid")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.errors, [("code", "timeout")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.errors, [("code", "other")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.stores, [("function", "f()")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.droppedStores).totalValue == 1)
        #expect(try factory.expectCounter(Names.purges, [("function", "f()")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.purgedEntries, [("function", "f()")]).totalValue == 3)
        #expect(try factory.expectCounter(Names.computeSaved, [("function", "f()")]).totalValue == Int64.max)
    }

    @Test func latenciesConnectionsAndBackendEventsAreRecorded() throws {
        let factory = TestMetrics()
        let metrics = GatewayMetrics(factory: factory)
        let start = metrics.startTime()
        #expect(start != 0)
        metrics.recordLookup(since: start)
        metrics.recordRedisCommand(nanoseconds: 1_500)
        metrics.connectionOpened()
        metrics.connectionOpened()
        metrics.connectionClosed()
        metrics.recordBackendConnect(succeeded: true, reconnect: false)
        metrics.recordBackendConnect(succeeded: true, reconnect: true)
        metrics.recordBackendConnect(succeeded: false, reconnect: false)
        metrics.recordBackendDisconnect()
        metrics.recordBackendConnections(3)
        metrics.recordBackendError(.lookup)
        metrics.recordCorruptEntry()

        let lookup = try factory.expectTimer(Names.lookupDuration)
        #expect(lookup.values.count == 1)
        #expect(lookup.values[0] >= 0)
        #expect(try factory.expectTimer(Names.redisCommandDuration).values == [1_500])
        #expect(try factory.expectMeter(Names.connections).lastValue == 1)
        #expect(try factory.expectCounter(Names.connectionsAccepted).totalValue == 2)
        #expect(try factory.expectCounter(Names.backendConnects, [("result", "success")]).totalValue == 2)
        #expect(try factory.expectCounter(Names.backendConnects, [("result", "failure")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.backendReconnects).totalValue == 1)
        #expect(try factory.expectCounter(Names.backendDisconnects).totalValue == 1)
        #expect(try factory.expectGauge(Names.backendConnections).lastValue == 3)
        #expect(try factory.expectCounter(Names.backendErrors, [("operation", "lookup")]).totalValue == 1)
        #expect(try factory.expectCounter(Names.corruptEntries).totalValue == 1)
    }

    @Test func aNoOpFactoryRecordsNothingAndReadsNoClock() {
        let metrics = GatewayMetrics(factory: NOOPMetricsHandler.instance)
        #expect(metrics.startTime() == 0)
        // Every function shares one object: no table, no lock.
        #expect(metrics.function("a()") === metrics.function("b()"))
    }

    @Test(arguments: [
        ("127.0.0.1:9464", "127.0.0.1:9464"),
        ("127.1.2.3:0", "127.1.2.3:0"),
        ("localhost:9464", "127.0.0.1:9464"),
        ("[::1]:9464", "[::1]:9464"),
        ("unix:/run/cache-gateway/metrics.sock", "unix:/run/cache-gateway/metrics.sock"),
        ("unix:///run/cache-gateway/metrics.sock", "unix:/run/cache-gateway/metrics.sock"),
    ])
    func endpointsParse(text: String, description: String) throws {
        #expect(try MetricsEndpoint(text).description == description)
    }

    @Test(arguments: [
        "0.0.0.0:9464", "10.0.0.1:9464", "[::]:9464", "example.com:9464", "127.0.0.1", "127.0.0.1:65536",
        "127.0.0.1:port", "unix:relative.sock", "unix:", ":9464",
    ])
    func nonLoopbackOrMalformedEndpointsAreRefused(text: String) {
        #expect(throws: GatewayError.self) { try MetricsEndpoint(text) }
    }
}
