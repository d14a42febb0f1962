import Foundation
import GatewayConnection
import GatewayProtocol
import NIOCore
import GatewayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The backends a gateway under test can use.
enum TestBackend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case memory
    case redis

    var testDescription: String { self.rawValue }

    /// `serve` arguments: Redis is the test run's private redis-server, with a
    /// namespace of the test's own so that tests do not see each other's entries.
    func arguments(namespace: String = "t\(UInt32.random(in: 0...UInt32.max))") throws -> [String] {
        switch self {
        case .memory: ["--namespace", namespace]
        // Generous timeouts, as long as the clients': these tests check
        // answers, not speed, and run a debug build on a busy machine, where
        // 5,000 pipelined stores once waited on Redis for over 10 s (the
        // outage tests use the defaults).
        case .redis: ["--redis", "unix://\(try TestRedis.socketPath)", "--namespace", namespace, "--lookup-timeout-ms", "60000", "--write-timeout-ms", "60000"]
        }
    }
}

extension IntegrationTests {
    /// A real `cache-gateway` process, on each backend, over its Unix socket.
    @Suite(.serialized) struct GatewayServerTests {
        static let function = FunctionVersion(function: "Tests.slow(x:)", version: "v1")

        static func key(_ argument: Int) throws -> CacheKey { try CacheKey(hashing: argument) }

        static func store(_ argument: Int, _ value: ByteBuffer, ttlMilliseconds: UInt64 = 60_000, function: FunctionVersion = Self.function) throws -> GatewayMessage.Body {
            .store(Store(function: function, key: try self.key(argument), ttlMilliseconds: ttlMilliseconds, computeMicroseconds: 1_000, value: value))
        }

        static func lookup(_ argument: Int, function: FunctionVersion = Self.function) throws -> GatewayMessage.Body {
            .lookup(Lookup(function: function, key: try self.key(argument)))
        }

        @Test(arguments: TestBackend.allCases)
        func aStoreFollowedByALookupReturnsTheSameBytes(backend: TestBackend) async throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let connection = try await gateway.connect()
            #expect(connection.hello.protocolVersion == 1)
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.miss))
            let value = ByteBuffer(bytes: (0..<5_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            #expect(try await connection.request(try Self.store(1, value)) == .storeReply(stored: true))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(value)))
            // Another version of the same function never sees it.
            let other = FunctionVersion(function: Self.function.function, version: "v2")
            #expect(try await connection.request(try Self.lookup(1, function: other)) == .lookupReply(.miss))
            // A second connection (another worker) gets the same hit.
            let second = try await gateway.connect(name: "second")
            #expect(try await second.request(try Self.lookup(1)) == .lookupReply(.hit(value)))
            #expect(gateway.stop() == 0)
        }

        @Test(arguments: TestBackend.allCases)
        func entriesExpireAfterTheirTTL(backend: TestBackend) async throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let connection = try await gateway.connect()
            let stored = ContinuousClock.now
            #expect(try await connection.request(try Self.store(7, ByteBuffer(string: "soon gone"), ttlMilliseconds: 300)) == .storeReply(stored: true))
            #expect(try await connection.request(try Self.lookup(7)) == .lookupReply(.hit(ByteBuffer(string: "soon gone"))))
            // The event awaited here is the TTL itself running out.
            try await Task.sleep(until: stored + .milliseconds(400))
            #expect(try await connection.request(try Self.lookup(7)) == .lookupReply(.miss))
            #expect(gateway.stop() == 0)
        }

        @Test(arguments: TestBackend.allCases)
        func manyConnectionsWithManyRequestsInFlightGetTheirOwnAnswers(backend: TestBackend) async throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let connectionCount = 20
            let requestsPerConnection = 250
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<connectionCount {
                    group.addTask {
                        let connection = try await gateway.connect(name: "worker-\(worker)")
                        // Ids are not sequential: each reply must be matched by its id.
                        // The timeouts are generous: this checks matching, not speed, with
                        // 5,000 requests in flight on a debug build.
                        var ids = Array(1...UInt64(requestsPerConnection)).shuffled()
                        var futures: [(UInt64, Int, EventLoopFuture<GatewayMessage>)] = []
                        for index in 0..<requestsPerConnection {
                            let argument = worker * 10_000 + index
                            let id = ids.removeLast() * 1_000 + UInt64(worker)
                            let value = ByteBuffer(string: "value of \(argument)")
                            futures.append((id, argument, connection.send(GatewayMessage(id: id, try Self.store(argument, value)), timeout: .seconds(60))))
                        }
                        for (id, _, future) in futures {
                            let reply = try await future.get()
                            #expect(reply.id == id)
                            #expect(reply.body == .storeReply(stored: true), "\(gateway.log.suffix(2000))")
                        }
                        var lookups: [(UInt64, Int, EventLoopFuture<GatewayMessage>)] = []
                        for (id, argument, _) in futures.shuffled() {
                            lookups.append((id + 1_000_000_000, argument, connection.send(GatewayMessage(id: id + 1_000_000_000, try Self.lookup(argument)), timeout: .seconds(60))))
                        }
                        for (id, argument, future) in lookups {
                            let reply = try await future.get()
                            #expect(reply.id == id)
                            #expect(reply.body == .lookupReply(.hit(ByteBuffer(string: "value of \(argument)"))))
                        }
                        await connection.close()
                    }
                }
                try await group.waitForAll()
            }
            let connection = try await gateway.connect()
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            #expect(stats[count: "hits"] == UInt64(connectionCount * requestsPerConnection))
            #expect(stats[count: "stores"] == UInt64(connectionCount * requestsPerConnection))
            #expect(gateway.stop() == 0)
        }

        @Test func requestsBeforeHelloAndBadRequestsGetTypedErrorsAndTheConnectionSurvives() async throws {
            let gateway = try GatewayProcess()
            let socket = try RawSocket(path: gateway.socketPath)
            try socket.write(GatewayMessage(id: 5, .ping))
            #expect(try socket.readMessage() == GatewayMessage(id: 5, .error(ErrorReply(code: .helloRequired, message: "send hello first"))))
            try socket.write(GatewayMessage(id: 6, .hello(Hello(clientName: "raw", pid: 1))))
            guard case .helloReply = try socket.readMessage().body else { throw TestFailure("no hello reply") }

            // An unknown type, a reply type, and a lookup whose key is 3 bytes.
            try socket.write(frame([0x92, 0x63, 0x09]))
            var reply = try socket.readMessage()
            #expect(reply.id == 9)
            guard case .error(let unknown) = reply.body else { throw TestFailure("expected an error") }
            #expect(unknown.code == .unknownMessageType)

            try socket.write(GatewayMessage(id: 10, .pong))
            reply = try socket.readMessage()
            guard case .error(let notRequest) = reply.body else { throw TestFailure("expected an error") }
            #expect(reply.id == 10 && notRequest.code == .unknownMessageType)

            try socket.write(frame([0x95, 0x03, 0x0b, 0xa1, 0x66, 0xa1, 0x76, 0xc4, 0x03, 1, 2, 3]))
            reply = try socket.readMessage()
            guard case .error(let badKey) = reply.body else { throw TestFailure("expected an error") }
            #expect(reply.id == 11 && badKey.code == .invalidField)

            // A payload that is not MessagePack at all (0xc1 is reserved).
            try socket.write(frame([0xc1]))
            reply = try socket.readMessage()
            guard case .error(let malformed) = reply.body else { throw TestFailure("expected an error") }
            #expect(reply.id == 0 && malformed.code == .malformedFrame)

            // The connection still works.
            try socket.write(GatewayMessage(id: 12, .ping))
            #expect(try socket.readMessage() == GatewayMessage(id: 12, .pong))
            #expect(gateway.stop() == 0)
        }

        @Test(arguments: TestBackend.allCases)
        func invalidateDeletesOneEntryOneVersionOrTheWholeFunction(backend: TestBackend) async throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments())
            let connection = try await gateway.connect()
            let v1 = Self.function
            let v2 = FunctionVersion(function: Self.function.function, version: "v2")
            for version in [v1, v2] {
                for argument in 0..<20 {
                    #expect(try await connection.request(try Self.store(argument, ByteBuffer(string: "\(version.version)/\(argument)"), function: version)) == .storeReply(stored: true))
                }
            }
            #expect(try await connection.request(.invalidate(Invalidate(function: v1.function, version: "v1", key: try Self.key(0)))) == .invalidateReply(deleted: 1))
            #expect(try await connection.request(try Self.lookup(0)) == .lookupReply(.miss))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.hit(ByteBuffer(string: "v1/1"))))
            #expect(try await connection.request(.invalidate(Invalidate(function: v1.function, version: "v1"))) == .invalidateReply(deleted: 19))
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.miss))
            #expect(try await connection.request(try Self.lookup(1, function: v2)) == .lookupReply(.hit(ByteBuffer(string: "v2/1"))))
            #expect(try await connection.request(.invalidate(Invalidate(function: v1.function))) == .invalidateReply(deleted: 20))
            #expect(try await connection.request(try Self.lookup(1, function: v2)) == .lookupReply(.miss))
            #expect(gateway.stop() == 0)
        }

        @Test func namespacesIsolateApplicationsSharingOneRedis() async throws {
            let shared = try TestBackend.redis.arguments(namespace: "billing\(UInt32.random(in: 0...UInt32.max))")
            let billing = try GatewayProcess(arguments: shared)
            let billingOnAnotherHost = try GatewayProcess(arguments: shared)
            let search = try GatewayProcess(arguments: try TestBackend.redis.arguments(namespace: "search\(UInt32.random(in: 0...UInt32.max))"))
            let value = ByteBuffer(string: "billing's result")
            #expect(try await billing.connect().request(try Self.store(1, value)) == .storeReply(stored: true))
            // The same application on another host shares the entry…
            #expect(try await billingOnAnotherHost.connect().request(try Self.lookup(1)) == .lookupReply(.hit(value)))
            // …another application, with the same function, version and arguments, does not.
            #expect(try await search.connect().request(try Self.lookup(1)) == .lookupReply(.miss))
            #expect(billing.stop() == 0)
            #expect(billingOnAnotherHost.stop() == 0)
            #expect(search.stop() == 0)
        }

        @Test func aValueAboveTheLimitIsRefusedAndNothingIsStored() async throws {
            let gateway = try GatewayProcess(arguments: ["--max-value-size", "1024", "--max-frame-size", "65536"])
            let connection = try await gateway.connect()
            #expect(connection.hello.maxValueSize == 1024)
            let error = await #expect(throws: GatewayError.self) {
                _ = try await connection.request(try Self.store(1, ByteBuffer(repeating: 1, count: 1025)))
            }
            #expect(error?.wireCode == .valueTooLarge)
            #expect(try await connection.request(try Self.lookup(1)) == .lookupReply(.miss))
            #expect(gateway.stop() == 0)
        }
    }
}

/// `bytes` behind a 4-byte big-endian length prefix.
func frame(_ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)] + payload
}
