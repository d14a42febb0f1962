import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import GatewayTestSupport
import NIOConcurrencyHelpers
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension ClientIntegrationTests {
    /// The client's transport (`GatewayLink`): many tasks and threads on one
    /// socket, replies in any order, deadlines, a gateway that stops or dies, and
    /// the order of register frames on the wire.
    ///
    /// Each test opens connections of its own (not `CacheClient.shared`), against
    /// a real gateway process, or against `ScriptedGateway` where the test must
    /// see the frames on the wire or choose the order of the replies. They run one
    /// at a time: they stop and kill gateways and measure deadlines in wall-clock time.
    @Suite(.serialized) struct GatewayLinkTests {
        /// A connection that has said hello.
        static func open(_ socketPath: String, inlineWait: TimeAmount = .milliseconds(1)) throws -> GatewayLink {
            let connection = try GatewayLink(socketPath: socketPath, inlineWait: inlineWait)
            let reply = connection.requestBlocking(.hello(Hello(clientName: "GatewayLinkTests", pid: UInt64(getpid()))), timeout: .seconds(10))
            guard case .success(let message) = reply, case .helloReply(let hello) = message.body else {
                connection.close()
                throw TestFailure("no hello reply: \(reply)")
            }
            connection.hello = hello
            return connection
        }

        /// Runs `body` on a thread of its own (blocking calls must not take the
        /// test's cooperative threads) and returns its result.
        static func onThread<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
            await withCheckedContinuation { continuation in
                Thread { continuation.resume(returning: body()) }.start()
            }
        }

        /// Waits until `condition` holds, up to `timeout`.
        static func wait(until condition: () -> Bool, timeout: Duration = .seconds(10)) async throws {
            let deadline = ContinuousClock.now + timeout
            while !condition() {
                guard ContinuousClock.now < deadline else { throw TestFailure("the condition did not hold within \(timeout)") }
                try await Task.sleep(for: .milliseconds(2))
            }
        }

        static let function = FunctionVersion(function: "GatewayLinkTests.value(_:)", version: "v1")

        static func lookup(_ key: CacheKey) -> GatewayMessage.Body {
            .lookup(Lookup(function: Self.function, key: key))
        }

        static func failureCode(_ reply: GatewayLink.Reply) -> GatewayError.Code? {
            if case .failure(let error) = reply { return error.code }
            return nil
        }

        /// With the caller reading for itself (1 ms) and with every caller parked
        /// for the background reader (0).
        @Test(arguments: [TimeAmount.milliseconds(1), .zero])
        func manyTasksAndThreadsOnOneConnectionEachGetTheirOwnReply(inlineWait: TimeAmount) async throws {
            let gateway = try GatewayProcess()
            let connection = try Self.open(gateway.socketPath, inlineWait: inlineWait)
            let keys = try (0..<64).map { try CacheKey(hashing: $0) }
            for (index, key) in keys.enumerated() {
                let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(string: "value \(index)"))
                let reply = try await connection.request(.store(store), registering: CallSite.named(Self.function), timeout: .seconds(10)).get()
                #expect(reply.body == .storeReply(stored: true))
            }
            let wrong = NIOLockedValueBox(0)
            let answered = NIOLockedValueBox(0)
            @Sendable func check(_ index: Int, _ reply: GatewayLink.Reply) {
                answered.withLockedValue { $0 += 1 }
                guard case .success(let message) = reply, message.body == .lookupReply(.hit(ByteBuffer(string: "value \(index)"))) else {
                    wrong.withLockedValue { $0 += 1 }
                    return
                }
            }
            await withTaskGroup(of: Void.self) { group in
                for task in 0..<40 {
                    group.addTask {
                        for round in 0..<25 {
                            let index = (task * 7 + round) % keys.count
                            check(index, await connection.lookup(CallSite.named(Self.function), key: keys[index], timeout: .seconds(10)))
                        }
                    }
                }
                for thread in 0..<4 {
                    group.addTask {
                        await Self.onThread {
                            for round in 0..<100 {
                                let index = (thread * 13 + round) % keys.count
                                check(index, connection.lookupBlocking(CallSite.named(Self.function), key: keys[index], timeout: .seconds(10)))
                            }
                        }
                    }
                }
            }
            let expected = 40 * 25 + 4 * 100
            let answers = answered.withLockedValue { $0 }
            let wrongAnswers = wrong.withLockedValue { $0 }
            #expect(answers == expected)
            #expect(wrongAnswers == 0)
            #expect(connection.awaitedCount == 0)
            connection.close()
            #expect(gateway.stop() == 0)
        }

        /// A Redis-backed lookup and a ping written together: the real gateway
        /// answers the ping first (the lookup waits for Redis; the near-cache,
        /// which would answer it at once, is off). The gateway is stopped
        /// while the calls write, so both are on the wire before it reads.
        @Test(arguments: [TimeAmount.milliseconds(1), .zero])
        func repliesOutOfOrderFromARealGatewayReachTheirCallers(inlineWait: TimeAmount) async throws {
            let gateway = try GatewayProcess(arguments: [
                "--redis", "unix://\(try TestRedis.socketPath)", "--namespace", "ooo\(UInt32.random(in: 0...UInt32.max))", "--lookup-timeout-ms", "5000",
                "--near-cache-size", "0",
            ])
            let key = try CacheKey(hashing: "out of order")
            let value = ByteBuffer(string: "from redis")
            let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: value)

            // The gateway itself: what is being tested does happen.
            let raw = try RawSocket(path: gateway.socketPath)
            try raw.write(GatewayMessage(id: 1, .hello(Hello(clientName: "raw", pid: 1))))
            _ = try raw.readMessage()
            try raw.write(GatewayMessage(id: 2, .store(store)))
            #expect(try raw.readMessage().body == .storeReply(stored: true))
            var both = ByteBuffer()
            try GatewayMessage(id: 3, Self.lookup(key)).encodeFrame(into: &both)
            try GatewayMessage(id: 4, .ping).encodeFrame(into: &both)
            try raw.write(Array(both.readableBytesView))
            #expect(try raw.readMessage().id == 4)
            #expect(try raw.readMessage() == GatewayMessage(id: 3, .lookupReply(.hit(value))))

            // The client: the same two requests from two tasks and from two threads.
            let connection = try Self.open(gateway.socketPath, inlineWait: inlineWait)
            for threads in [false, true] {
                try gateway.suspend()
                async let lookupReply = threads
                    ? Self.onThread { connection.lookupBlocking(CallSite.named(Self.function), key: key, timeout: .seconds(20)) }
                    : connection.lookup(CallSite.named(Self.function), key: key, timeout: .seconds(20))
                async let pingReply = threads
                    ? Self.onThread { connection.requestBlocking(.ping, timeout: .seconds(20)) }
                    : connection.request(.ping, timeout: .seconds(20))
                try await Self.wait(until: { connection.awaitedCount == 2 })
                gateway.resume()
                #expect(try await lookupReply.get().body == .lookupReply(.hit(value)))
                #expect(try await pingReply.get().body == .pong)
            }
            connection.close()
            #expect(gateway.stop() == 0)
        }

        /// Replies in exactly the reverse order of the requests, from a scripted peer.
        @Test func repliesInReverseOrderReachTheirCallers() async throws {
            let callers = 8
            let peer = try ScriptedGateway { unanswered in
                guard unanswered.count == callers else { return nil }
                return unanswered.reversed().map { request in
                    guard case .lookup(let lookup) = request.body else { return ScriptedGateway.answer(request) }
                    return GatewayMessage(id: request.id, .lookupReply(.hit(ByteBuffer(string: lookup.key.description))))
                }
            }
            let connection = try Self.open(peer.socketPath)
            let keys = try (0..<callers).map { try CacheKey(hashing: "reverse \($0)") }
            let replies = await withTaskGroup(of: (Int, GatewayLink.Reply).self) { group in
                for index in 0..<callers {
                    group.addTask {
                        // Half the callers are threads, half tasks.
                        if index % 2 == 0 {
                            return (index, await Self.onThread { connection.requestBlocking(Self.lookup(keys[index]), timeout: .seconds(20)) })
                        }
                        return (index, await connection.request(Self.lookup(keys[index]), timeout: .seconds(20)))
                    }
                }
                var replies: [Int: GatewayLink.Reply] = [:]
                for await (index, reply) in group { replies[index] = reply }
                return replies
            }
            for index in 0..<callers {
                #expect(try replies[index]?.get().body == .lookupReply(.hit(ByteBuffer(string: keys[index].description))))
            }
            connection.close()
            #expect(peer.waitUntilClosed())
            #expect(peer.requests.count == 1 + callers)
        }

        /// A stopped gateway answers nothing: each way of waiting ends at its
        /// deadline with `.timeout`, not before; once the gateway runs again the
        /// late replies are dropped and the connection serves new requests.
        @Test func requestsTimeOutAtTheirDeadlineAndTheConnectionStaysUsable() async throws {
            let gateway = try GatewayProcess()
            let leading = try Self.open(gateway.socketPath)
            let parking = try Self.open(gateway.socketPath, inlineWait: .zero)
            try gateway.suspend()
            let timeout = TimeAmount.milliseconds(100)
            // Each waiter times its own request (the test's tasks may start late
            // on a busy machine; that is not what is measured).
            @Sendable func timed(_ request: () async -> GatewayLink.Reply) async -> (GatewayError.Code?, Duration) {
                let started = ContinuousClock.now
                let reply = await request()
                return (Self.failureCode(reply), ContinuousClock.now - started)
            }
            @Sendable func timedOnThread(_ request: @escaping @Sendable () -> GatewayLink.Reply) async -> (GatewayError.Code?, Duration) {
                await Self.onThread {
                    let started = ContinuousClock.now
                    let reply = request()
                    return (Self.failureCode(reply), ContinuousClock.now - started)
                }
            }
            async let inline = timed { await leading.request(.ping, timeout: timeout) }
            async let parked = timed { await parking.request(.ping, timeout: timeout) }
            async let blocked = timedOnThread { leading.requestBlocking(.ping, timeout: timeout) }
            async let follower = timedOnThread { parking.requestBlocking(.ping, timeout: timeout) }
            let outcomes = await [inline, parked, blocked, follower]
            #expect(outcomes.map(\.0) == Array(repeating: .timeout, count: 4))
            for (_, elapsed) in outcomes {
                #expect(elapsed >= .milliseconds(100))
                #expect(elapsed < .seconds(5))
            }
            gateway.resume()
            for connection in [leading, parking] {
                #expect(try await connection.request(.ping, timeout: .seconds(10)).get().body == .pong)
                #expect(connection.awaitedCount == 0)
                #expect(!connection.isClosed)
                connection.close()
            }
            #expect(gateway.stop() == 0)
        }

        /// Frames larger than the socket takes at once: what a write leaves
        /// waits in the connection's outbox, later frames queue behind it, and
        /// the background thread writes it all out, in order and intact, once
        /// the gateway reads again.
        @Test func framesTheSocketCannotTakeAtOnceGoOutInOrderLater() async throws {
            let gateway = try GatewayProcess()
            let connection = try Self.open(gateway.socketPath)
            try gateway.suspend()
            // A megabyte each, far beyond a Unix socket's buffer; each value
            // differs, so a frame cut or reordered would show in what is read back.
            let values = (0..<3).map { index in ByteBuffer(repeating: UInt8(index + 1), count: 1 << 20) }
            let key = try CacheKey(hashing: "outbox")
            for value in values {
                connection.send(.store(Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: value)))
            }
            // Queued behind the stores: it is answered after the last of them.
            async let lookup = Self.onThread { connection.requestBlocking(Self.lookup(key), timeout: .seconds(30)) }
            gateway.resume()
            let reply = try await lookup.get()
            #expect(reply.body == .lookupReply(.hit(values[2])))
            #expect(!connection.isClosed)
            connection.close()
            #expect(gateway.stop() == 0)
        }

        /// A gateway killed while requests wait: every waiter (reading, parked,
        /// blocked) fails with `.connectionClosed` at once, not at its deadline,
        /// the close handler runs once, and later requests fail without waiting.
        @Test func killingTheGatewayFailsEveryWaitingRequestAtOnce() async throws {
            let gateway = try GatewayProcess()
            let connection = try Self.open(gateway.socketPath)
            let closes = NIOLockedValueBox(0)
            connection.whenClosed { _ in closes.withLockedValue { $0 += 1 } }
            try gateway.suspend()
            let codes = try await withThrowingTaskGroup(of: GatewayError.Code?.self) { group in
                for index in 0..<12 {
                    group.addTask {
                        let reply = index % 3 == 0
                            ? await Self.onThread { connection.requestBlocking(.ping, timeout: .seconds(60)) }
                            : await connection.request(.ping, timeout: .seconds(60))
                        return Self.failureCode(reply)
                    }
                }
                try await Self.wait(until: { connection.awaitedCount == 12 })
                #expect(gateway.stop(signal: SIGKILL) != 0)
                let killed = ContinuousClock.now
                var codes: [GatewayError.Code?] = []
                for try await code in group { codes.append(code) }
                #expect(ContinuousClock.now - killed < .seconds(5))
                return codes
            }
            #expect(codes == Array(repeating: .connectionClosed, count: 12))
            #expect(connection.isClosed)
            #expect(closes.withLockedValue { $0 } == 1)
            #expect(Self.failureCode(await connection.request(.ping, timeout: .seconds(60))) == .connectionClosed)
            #expect(connection.awaitedCount == 0)
        }

        /// However the threads interleave, a function version's register frame is
        /// on the wire before every lookup and store that names it, exactly once.
        @Test func aVersionsRegisterFrameAlwaysPrecedesItsLookupsAndStores() async throws {
            let peer = try ScriptedGateway { unanswered in unanswered.map(ScriptedGateway.answer) }
            let connection = try Self.open(peer.socketPath)
            let functions = (0..<40).map { FunctionVersion(function: "Ordering.f\($0)()", version: "v\($0)") }
            let key = try CacheKey(hashing: 1)
            @Sendable func store(_ function: FunctionVersion) {
                connection.send(.store(Store(function: function, key: key, ttlMilliseconds: 1_000, computeMicroseconds: 1, value: ByteBuffer(string: "x"))), registering: CallSite.named(function))
            }
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<16 {
                    group.addTask {
                        for function in functions.shuffled() {
                            _ = await connection.lookup(CallSite.named(function), key: key, timeout: .seconds(10))
                            store(function)
                        }
                    }
                }
                for _ in 0..<4 {
                    group.addTask {
                        await Self.onThread {
                            for function in functions.shuffled() {
                                store(function)
                                _ = connection.lookupBlocking(CallSite.named(function), key: key, timeout: .seconds(10))
                            }
                        }
                    }
                }
            }
            connection.close()
            #expect(peer.waitUntilClosed())
            let requests = peer.requests
            var checked = 0
            for function in functions {
                let registers = requests.indices.filter { requests[$0].body == .register(function) }
                let uses = requests.indices.filter { index in
                    switch requests[index].body {
                    case .lookup(let lookup): lookup.function == function
                    case .store(let store): store.function == function
                    default: false
                    }
                }
                #expect(registers.count == 1, "\(function.function) registered \(registers.count) times")
                #expect(uses.count > 0)
                if let register = registers.first, let firstUse = uses.first {
                    #expect(register < firstUse, "\(function.function): a request at \(firstUse) came before its register at \(register)")
                    checked += 1
                }
            }
            #expect(checked == functions.count)
        }
    }
}

extension GatewayProcess {
    /// Stops the gateway (SIGSTOP) and waits until every one of its threads
    /// has stopped: a stop signal takes effect only when a thread of the
    /// process next runs, and meanwhile another thread may still answer.
    func suspend(timeout: Duration = .seconds(10)) throws {
        guard kill(self.pid, SIGSTOP) == 0 else { throw TestFailure("SIGSTOP: errno \(errno)") }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(self.pid)/task")) ?? []
            let states = threads.compactMap { thread -> Character? in
                guard let stat = try? String(contentsOfFile: "/proc/\(self.pid)/task/\(thread)/stat", encoding: .utf8),
                      let end = stat.lastIndex(of: ")") else { return nil }
                // "pid (name) S …": the state follows the name.
                return stat[stat.index(end, offsetBy: 2)...].first
            }
            if !states.isEmpty && states.allSatisfy({ $0 == "T" }) { return }
            usleep(1_000)
        }
        throw TestFailure("the gateway did not stop within \(timeout)")
    }

    /// Lets a suspended gateway run again.
    func resume() {
        kill(self.pid, SIGCONT)
    }
}
