import Foundation
import GatewayConnection
import GatewayProtocol
import NIOCore
import GatewayTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Bad input over the socket, shutdown while busy, and the socket file's life.
    @Suite(.serialized) struct GatewayRobustnessTests {
        /// A healthy connection that must keep working whatever the others send.
        func expectServing(_ connection: GatewayConnection, _ argument: Int) async throws {
            let function = FunctionVersion(function: "Tests.robust(x:)", version: "v1")
            let key = try CacheKey(hashing: argument)
            let value = ByteBuffer(string: "still here \(argument)")
            #expect(try await connection.request(.store(Store(function: function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: value))) == .storeReply(stored: true))
            #expect(try await connection.request(.lookup(Lookup(function: function, key: key))) == .lookupReply(.hit(value)))
        }

        @Test func garbageBytesCloseOnlyTheOffendingConnection() async throws {
            let gateway = try GatewayProcess()
            let healthy = try await gateway.connect(name: "healthy")
            var generator = SystemRandomNumberGenerator()
            for round in 0..<20 {
                // Garbage whose first byte is not zero announces a frame of at least
                // 16 MiB, above the 8 MiB limit: an error, then the connection closes.
                var garbage = (0..<4_096).map { _ in UInt8.random(in: 0...255, using: &generator) }
                garbage[0] = UInt8.random(in: 1...255, using: &generator)
                let socket = try RawSocket(path: gateway.socketPath)
                try socket.write(garbage)
                let reply = try socket.readMessage()
                guard case .error(let error) = reply.body else { throw TestFailure("expected an error, got \(reply)") }
                #expect(error.code == .frameTooLarge)
                #expect(socket.isClosedByPeer())

                // Garbage inside a well-formed frame: an error, and the connection stays usable.
                var payload = (0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) }
                payload[0] = 0xc1
                let framed = try RawSocket(path: gateway.socketPath)
                try framed.write(frame(payload))
                guard case .error(let malformed) = try framed.readMessage().body else { throw TestFailure("expected an error") }
                #expect(malformed.code == .malformedFrame)
                try framed.write(GatewayMessage(id: 1, .hello(Hello(clientName: "after garbage", pid: 1))))
                guard case .helloReply = try framed.readMessage().body else { throw TestFailure("expected a hello reply") }

                try await self.expectServing(healthy, round)
            }
            #expect(gateway.stop() == 0)
        }

        @Test func aFourGibibyteLengthPrefixGetsFrameTooLargeAndTheConnectionIsClosed() async throws {
            let gateway = try GatewayProcess()
            let healthy = try await gateway.connect(name: "healthy")
            let before = try gateway.residentKiB()
            for prefix: [UInt8] in [[0xff, 0xff, 0xff, 0xff], [0x00, 0x80, 0x00, 0x01]] {
                let socket = try RawSocket(path: gateway.socketPath)
                try socket.write(prefix)
                let reply = try socket.readMessage()
                #expect(reply.id == 0)
                guard case .error(let error) = reply.body else { throw TestFailure("expected an error reply, got \(reply)") }
                #expect(error.code == .frameTooLarge)
                #expect(socket.isClosedByPeer())
            }
            // Nothing was allocated for the announced 4 GiB.
            #expect(try gateway.residentKiB() - before < 16 * 1024)
            try await self.expectServing(healthy, 1)
            #expect(gateway.stop() == 0)
        }

        @Test func aFrameThatNeverCompletesIsCutOffWithoutDisturbingOtherConnections() async throws {
            let gateway = try GatewayProcess(arguments: ["--frame-timeout-ms", "500"])
            let healthy = try await gateway.connect(name: "healthy")
            // Announce 1 MiB, send 1 KiB, and never send the rest.
            let stuck = try RawSocket(path: gateway.socketPath)
            let started = ContinuousClock.now
            try stuck.write([0x00, 0x10, 0x00, 0x00] + [UInt8](repeating: 0x90, count: 1_024))
            try await self.expectServing(healthy, 2)
            // At the frame deadline: an error, then the connection is closed.
            let reply = try stuck.readMessage(timeout: .seconds(10))
            guard case .error(let error) = reply.body else { throw TestFailure("expected an error, got \(reply)") }
            #expect(reply.id == 0 && error.code == .malformedFrame)
            #expect(stuck.isClosedByPeer())
            #expect(ContinuousClock.now - started >= .milliseconds(450))
            // A connection that is merely idle between frames is left alone.
            try await Task.sleep(for: .milliseconds(700))
            try await self.expectServing(healthy, 3)
            #expect(gateway.stop() == 0)
        }

        @Test func tenThousandAbandonedConnectionsLeaveTheGatewayServingWithBoundedMemory() async throws {
            let gateway = try GatewayProcess()
            let healthy = try await gateway.connect(name: "healthy")
            try await self.expectServing(healthy, 0)
            let before = try gateway.residentKiB()
            for batch in 0..<20 {
                var sockets: [RawSocket] = []
                for index in 0..<500 {
                    let socket = try RawSocket(path: gateway.socketPath)
                    // Half say nothing; half leave half a frame behind.
                    if index % 2 == 1 { try socket.write([0x00, 0x00, 0x01, 0x00, 0x95]) }
                    sockets.append(socket)
                }
                sockets.removeAll()  // closes them all
                try await self.expectServing(healthy, batch + 1)
            }
            // Wait until the gateway has seen every one of them close.
            let deadline = ContinuousClock.now + .seconds(20)
            var open: UInt64 = .max
            while ContinuousClock.now < deadline {
                guard case .statsReply(let stats) = try await healthy.request(.stats) else { throw TestFailure("no stats") }
                open = stats[count: "connections"] ?? .max
                if open == 1 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(open == 1)
            let after = try gateway.residentKiB()
            #expect(after - before < 32 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
            #expect(gateway.stop() == 0)
        }

        @Test func sigtermAnswersTheRequestsInFlightRemovesTheSocketAndExitsZero() async throws {
            let gateway = try GatewayProcess()
            let socket = try RawSocket(path: gateway.socketPath)
            try socket.write(GatewayMessage(id: 1, .hello(Hello(clientName: "drain", pid: 1))))
            guard case .helloReply = try socket.readMessage().body else { throw TestFailure("no hello reply") }
            let function = FunctionVersion(function: "Tests.drain(x:)", version: "v1")
            // 2,000 requests, all handed to the kernel (a blocking write) before
            // SIGTERM: each one is in flight, and each must be answered.
            var burst: [UInt8] = []
            for index in 0..<2_000 {
                let body: GatewayMessage.Body = index % 2 == 0
                    ? .store(Store(function: function, key: try CacheKey(hashing: index), ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(string: "\(index)")))
                    : .lookup(Lookup(function: function, key: try CacheKey(hashing: index - 1)))
                burst += Array(try GatewayMessage(id: UInt64(index + 2), body).encodedFrame().readableBytesView)
            }
            try socket.write(burst)
            kill(gateway.pid, SIGTERM)
            for index in 0..<2_000 {
                let reply = try socket.readMessage()
                #expect(reply.id == UInt64(index + 2))
                if index % 2 == 0 {
                    #expect(reply.body == .storeReply(stored: true))
                } else {
                    #expect(reply.body == .lookupReply(.hit(ByteBuffer(string: "\(index - 1)"))))
                }
            }
            // Then the gateway closes the idle connection, removes its socket and exits 0.
            #expect(socket.isClosedByPeer(timeout: .seconds(15)))
            #expect(try gateway.nextNotification().contains("STOPPING=1"))
            gateway.process.waitUntilExit()
            #expect(gateway.process.terminationStatus == 0)
            #expect(!FileManager.default.fileExists(atPath: gateway.socketPath))
        }

        @Test func anUnsupportedProtocolVersionGetsItsErrorBeforeTheConnectionCloses() throws {
            let gateway = try GatewayProcess()
            let socket = try RawSocket(path: gateway.socketPath)
            try socket.write(GatewayMessage(id: 3, .hello(Hello(protocolVersion: 99, clientName: "future", pid: 1))))
            let reply = try socket.readMessage()
            #expect(reply.id == 3)
            guard case .error(let error) = reply.body else { throw TestFailure("expected an error, got \(reply)") }
            #expect(error.code == .unsupportedVersion)
            #expect(socket.isClosedByPeer())
            #expect(gateway.stop() == 0)
        }

        @Test func aPeerThatNeverReadsItsRepliesCannotMakeTheGatewayGrow() async throws {
            let gateway = try GatewayProcess()
            let connection = try await gateway.connect()
            let function = FunctionVersion(function: "Tests.big(x:)", version: "v1")
            let key = try CacheKey(hashing: 1)
            // A 1 MiB entry: every lookup of it would queue another 1 MiB reply.
            #expect(try await connection.request(.store(Store(function: function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 1, value: ByteBuffer(repeating: 7, count: 1 << 20)))) == .storeReply(stored: true))
            let before = try gateway.residentKiB()
            let greedy = try RawSocket(path: gateway.socketPath)
            try greedy.write(GatewayMessage(id: 1, .hello(Hello(clientName: "greedy", pid: 1))))
            // 3,000 lookups (3 GiB of replies) sent, none read. The write may
            // block once the gateway stops reading: that is the point, so it
            // runs in the background while the test watches the gateway.
            let frame = Array(try GatewayMessage(id: 2, .lookup(Lookup(function: function, key: key))).encodedFrame().readableBytesView)
            let burst = [[UInt8]](repeating: frame, count: 3_000).flatMap { $0 }
            let writer = Thread { try? greedy.write(burst) }
            writer.start()
            // Wait until the gateway has served one of them: its 1 MiB reply
            // reaches the 1 MiB at which the gateway stops reading, so from
            // then on the peer's backlog is what the test is about (and a
            // starved writer thread cannot make it pass untested).
            let reading = try await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                guard case .statsReply(let stats) = try await connection.request(.stats) else { return false }
                return (stats[count: "hits"] ?? 0) >= 1
            }
            #expect(reading, "the gateway never read the greedy peer's lookups")
            // Give the gateway time to read what it will; other connections are still served.
            for _ in 0..<20 {
                #expect(try await connection.request(.ping) == .pong)
                try await Task.sleep(for: .milliseconds(25))
            }
            let after = try gateway.residentKiB()
            #expect(after - before < 64 * 1024, "RSS grew from \(before) KiB to \(after) KiB")
            #expect(gateway.stop() == 0)
            withExtendedLifetime(greedy) {}
        }

        @Test func drainingEndsQuicklyEvenWithAClientThatNeverStopsSending() async throws {
            let gateway = try GatewayProcess()
            let busy = try await gateway.connect(name: "busy")
            let started = ContinuousClock.now
            kill(gateway.pid, SIGTERM)
            #expect(try gateway.nextNotification().contains("STOPPING=1"))
            // Keep sending, as a busy worker would: the gateway must still let go
            // (after its short grace period), not wait for the connection to go quiet.
            var closedByGateway = false
            while ContinuousClock.now - started < .seconds(8) {
                do {
                    _ = try await busy.request(.ping, timeout: .seconds(2))
                } catch let error as GatewayError where error.code == .remote && error.wireCode == .shuttingDown {
                    continue
                } catch let error as GatewayError where error.code == .connectionClosed {
                    closedByGateway = true
                    break
                }
                try await Task.sleep(for: .milliseconds(5))
            }
            gateway.process.waitUntilExit()
            let took = ContinuousClock.now - started
            #expect(closedByGateway)
            #expect(gateway.process.terminationStatus == 0)
            #expect(took < .seconds(5), "shutdown took \(took)")
        }

        @Test func aStaleSocketFileIsReplacedAndALiveOneIsRefused() async throws {
            let gateway = try GatewayProcess()
            // A second gateway on the same path refuses to start, with a clear message.
            let second = Process()
            second.executableURL = try GatewayProcess.executable
            second.arguments = ["serve", "--socket", gateway.socketPath]
            let (status, message) = try second.runToEnd()
            #expect(status != 0)
            #expect(message.contains("already serving"))
            try await self.expectServing(try await gateway.connect(), 3)

            // Killed without cleaning up, the gateway leaves its socket file behind…
            #expect(gateway.stop(signal: SIGKILL) != 0)
            #expect(FileManager.default.fileExists(atPath: gateway.socketPath))
            // …and the next gateway replaces it.
            let replacement = try GatewayProcess(arguments: [], reuseSocketOf: gateway)
            try await self.expectServing(try await replacement.connect(), 4)
            #expect(replacement.stop() == 0)
        }
    }
}
