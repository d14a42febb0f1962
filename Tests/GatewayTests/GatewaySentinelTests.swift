import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import NIOCore
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

extension IntegrationTests {
    /// Real gateways against the master, replica and three sentinels of
    /// scripts/redis-sentinel.sh. The failover test leaves the topology as it
    /// found it: a master, a replica in sync, and three sentinels that agree.
    @Suite(.serialized, .enabled(if: TestRedisTopologies.hasSentinel, Comment(rawValue: TestRedisTopologies.missingMessage)))
    struct GatewaySentinelTests {
        static let function = FunctionVersion(function: "Tests.sentinel(x:)", version: "v1")

        static var url: String {
            // A sentinel that is down goes first: it is skipped after its (short) timeout.
            "redis+sentinel://127.0.0.1:1,\(TestRedisTopologies.sentinels)/\(TestRedisTopologies.sentinelMaster)"
        }

        /// The master's port, as the first sentinel says.
        static func masterPort() throws -> Int {
            let port = TestRedisTopologies.sentinelPorts[0]
            let reply = try TestRedisTopologies.redisCLI(["-p", "\(port)", "sentinel", "get-master-addr-by-name", TestRedisTopologies.sentinelMaster])
            guard let text = reply.split(separator: "\n").last, let master = Int(text) else { throw TestFailure("no master: \(reply)") }
            return master
        }

        static func stat(_ connection: GatewayConnection, _ name: String) async throws -> UInt64 {
            guard case .statsReply(let stats) = try await connection.request(.stats) else { throw TestFailure("no stats") }
            return stats[count: name] ?? 0
        }

        static func value(for key: Int) -> ByteBuffer { ByteBuffer(string: "value of key \(key)") }

        @Test func theGatewayFindsTheMasterThroughTheSentinels() async throws {
            let namespace = "sentinel-find-\(UUID().uuidString.prefix(8))"
            let gateway = try GatewayProcess(arguments: ["--redis", Self.url, "--namespace", namespace, "--near-cache-size", "0"])
            let connection = try await gateway.connect()
            let key = try CacheKey(hashing: "found")
            let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 10, value: Self.value(for: 0))
            #expect(try await connection.request(.store(store)) == .storeReply(stored: true))
            #expect(try await connection.request(.lookup(Lookup(function: Self.function, key: key))) == .lookupReply(.hit(Self.value(for: 0))))
            // The entry is on the master the sentinels name.
            let keys = try TestRedisTopologies.redisCLI(["-p", "\(try Self.masterPort())", "--scan", "--pattern", "cg:\(namespace):e:*"])
            #expect(!keys.isEmpty, "no entry on the master")
            #expect(gateway.log.contains("found the Redis master through Sentinel"))
            await connection.close()
            #expect(gateway.stop() == 0)
        }

        /// What the workers saw.
        struct Tally: Sendable {
            var hits = 0
            var misses = 0
            var missesDoNotStore = 0
            var storesRefused = 0
            var problems: [String] = []
        }

        @Test func aSigkilledMasterIsFollowedWithinOneSecondOfThePromotionWithoutErrorsOrWrongValues() async throws {
            let namespace = "sentinel-failover-\(UUID().uuidString.prefix(8))"
            // The near-cache is on: it must flush on the move (invalidations from the old master are lost).
            let gateway = try GatewayProcess(arguments: ["--redis", Self.url, "--namespace", namespace])
            let admin = try await gateway.connect(name: "admin")
            let oldMaster = try Self.masterPort()
            let pidText = try String(contentsOfFile: "\(TestRedisTopologies.sentinelDirectory)/node-\(oldMaster).pid", encoding: .utf8)
            guard let oldPID = Int32(pidText.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("no pid for the master") }

            // The test hears the promotion itself, from another sentinel than the gateway may use.
            let announcements = try LineReader(arguments: ["redis-cli", "-p", "\(TestRedisTopologies.sentinelPorts[2])", "subscribe", "+switch-master"])
            let subscribed = await RedisTestSupport.waitUntil(timeout: .seconds(10)) { announcements.lines.contains { $0.text == "+switch-master" } }
            #expect(subscribed, "the test could not subscribe to +switch-master")

            let stop = StopFlag()
            let workers = (0..<8).map { index in
                Task { () throws -> Tally in
                    let connection = try await gateway.connect(name: "worker-\(index)")
                    var tally = Tally()
                    var round = 0
                    while !stop.isSet {
                        round += 1
                        let keyIndex = (index * 7 + round) % 32
                        let key = try CacheKey(hashing: "failover-\(keyIndex)")
                        do {
                            switch try await connection.request(.lookup(Lookup(function: Self.function, key: key)), timeout: .seconds(5)) {
                            case .lookupReply(.hit(let bytes)):
                                if bytes != Self.value(for: keyIndex) { tally.problems.append("key \(keyIndex): a wrong value") }
                                tally.hits += 1
                            case .lookupReply(.miss):
                                tally.misses += 1
                                let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 10, value: Self.value(for: keyIndex))
                                if case .storeReply(let stored) = try await connection.request(.store(store), timeout: .seconds(5)) {
                                    if !stored { tally.storesRefused += 1 }
                                } else {
                                    tally.problems.append("a store answered otherwise")
                                }
                            case .lookupReply(.missDoNotStore):
                                tally.missesDoNotStore += 1
                            case let other:
                                tally.problems.append("\(other)")
                            }
                        } catch {
                            tally.problems.append("\(error)")
                        }
                    }
                    await connection.close()
                    return tally
                }
            }

            let warm = await RedisTestSupport.waitUntil(timeout: .seconds(20)) {
                (try? await Self.stat(admin, "hits")).map { $0 > 200 } ?? false
            }
            #expect(warm, "the workers never got hits before the failover")
            kill(oldPID, SIGKILL)

            // The promotion, as the test hears it.
            let promoted = await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
                announcements.lines.contains { $0.text.hasPrefix("\(TestRedisTopologies.sentinelMaster) ") }
            }
            guard promoted, let announcement = announcements.lines.first(where: { $0.text.hasPrefix("\(TestRedisTopologies.sentinelMaster) ") }) else {
                stop.set()
                throw TestFailure("no +switch-master within 60 s of killing the master; sentinel logs are in \(TestRedisTopologies.sentinelDirectory)")
            }
            let fields = announcement.text.split(separator: " ")
            guard fields.count == 5, let newMaster = Int(fields[4]) else { throw TestFailure("cannot read \(announcement.text)") }
            #expect(newMaster != oldMaster)

            // Followed: a store through the gateway lands on the new master and is found.
            var probe = 0
            var followedAt: ContinuousClock.Instant?
            let followed = await RedisTestSupport.waitUntil(timeout: .seconds(20)) {
                probe += 1
                let key = try? CacheKey(hashing: "probe-\(probe)")
                guard let key else { return false }
                let value = ByteBuffer(string: "probe \(probe)")
                let store = Store(function: Self.function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 10, value: value)
                guard case .storeReply(stored: true) = try? await admin.request(.store(store)),
                    case .lookupReply(.hit(value)) = try? await admin.request(.lookup(Lookup(function: Self.function, key: key)))
                else { return false }
                followedAt = ContinuousClock.now
                return true
            }
            let delay = followedAt.map { $0 - announcement.at }
            // Let the workers run on the new master for a while.
            let hitsAfter = (try? await Self.stat(admin, "hits")) ?? 0
            _ = await RedisTestSupport.waitUntil(timeout: .seconds(10)) {
                (try? await Self.stat(admin, "hits")).map { $0 > hitsAfter + 200 } ?? false
            }
            stop.set()
            var total = Tally()
            for worker in workers {
                let tally = try await worker.value
                total.hits += tally.hits
                total.misses += tally.misses
                total.missesDoNotStore += tally.missesDoNotStore
                total.storesRefused += tally.storesRefused
                total.problems += tally.problems
            }
            let probeKeys = try TestRedisTopologies.redisCLI(["-p", "\(newMaster)", "--scan", "--pattern", "cg:\(namespace):e:*"])

            // Leave the topology whole: the old master comes back as a replica of the new one.
            _ = try TestRedisTopologies.redisCLI(["-p", "\(newMaster)", "ping"])
            let restart = Process()
            restart.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            // In the foreground, as a child that is never waited for: it writes
            // its pid file, which scripts/redis-sentinel.sh stops it by.
            restart.arguments = ["redis-server", "\(TestRedisTopologies.sentinelDirectory)/node-\(oldMaster).conf", "--daemonize", "no"]
            restart.standardOutput = FileHandle.nullDevice
            restart.standardError = FileHandle.nullDevice
            try restart.run()
            let rejoined = await RedisTestSupport.waitUntil(timeout: .seconds(60)) {
                guard let info = try? TestRedisTopologies.redisCLI(["-p", "\(oldMaster)", "info", "replication"]) else { return false }
                return info.contains("role:slave") && info.contains("master_port:\(newMaster)") && info.contains("master_link_status:up")
            }

            #expect(followed, "the gateway did not follow the new master")
            #expect(delay.map { $0 < .seconds(1) } ?? false, "the gateway followed the new master \(delay.map { "\($0)" } ?? "never") after the promotion")
            #expect(total.problems.isEmpty, "worker problems: \(total.problems.prefix(5))")
            #expect(total.hits > 0)
            #expect(!probeKeys.isEmpty, "nothing was stored on the new master")
            #expect(gateway.log.contains("the Redis master moved"))
            #expect(rejoined, "the old master did not come back as a replica of the new one")
            print("sentinel failover: followed \(delay.map { "\($0)" } ?? "never") after +switch-master; hits \(total.hits), misses \(total.misses), miss-do-not-store \(total.missesDoNotStore), stores refused \(total.storesRefused)")
            await admin.close()
            #expect(gateway.stop() == 0)
        }
    }
}

/// A child process whose standard output is read line by line in the
/// background, each line stamped with the moment it was read.
final class LineReader: @unchecked Sendable {
    struct Line: Sendable {
        var text: String
        var at: ContinuousClock.Instant
    }

    private final class Received: Sendable {
        let lines = Mutex<[Line]>([])
    }

    private let process: Process
    private let received = Received()

    /// Starts `/usr/bin/env arguments…`.
    init(arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        let handle = output.fileHandleForReading
        let thread = Thread { [received] in
            var buffered = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { return }
                let now = ContinuousClock.now
                buffered += chunk
                while let end = buffered.firstIndex(of: UInt8(ascii: "\n")) {
                    let text = String(decoding: buffered[buffered.startIndex..<end], as: UTF8.self)
                    buffered = Data(buffered[(end + 1)...])
                    received.lines.withLock { $0.append(Line(text: text, at: now)) }
                }
            }
        }
        thread.start()
    }

    deinit {
        if self.process.isRunning {
            kill(self.process.processIdentifier, SIGKILL)
            self.process.waitUntilExit()
        }
    }

    /// Every line read so far.
    var lines: [Line] { self.received.lines.withLock { $0 } }
}
