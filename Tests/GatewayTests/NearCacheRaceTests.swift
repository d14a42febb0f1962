import GatewayProtocol
import GatewayTestSupport
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Gateway

extension IntegrationTests {
    /// The race that placeholders exist for, forced: an invalidation that
    /// arrives before the reply to the read it concerns. A `NearCacheStore`
    /// on the shared test redis-server holds the read's reply (a test hook)
    /// while another store overwrites the key and the invalidation arrives;
    /// the held reply must then not enter the near-cache.
    @Suite(.serialized) struct NearCacheRaceTests {
        static func stat(_ store: any CacheStore, _ name: String) -> UInt64 {
            if case .count(let value) = store.statistics[name] { return value }
            return 0
        }

        @Test func anInvalidationThatOvertakesTheReadsReplyKeepsTheOldValueOut() async throws {
            let loop = RedisTestSupport.eventLoopGroup.next()
            let url = try RedisTestSupport.sharedURL()
            let redis = try RedisStore(url: url, configuration: RedisStore.Configuration(lookupTimeout: .seconds(5), writeTimeout: .seconds(10), tracksStoredKeys: true), eventLoopGroup: RedisTestSupport.eventLoopGroup, logger: RedisTestSupport.logger)
            let near = NearCacheStore(wrapping: redis, redis: redis, logger: RedisTestSupport.logger, metrics: GatewayMetrics())
            let writer = try RedisStore(url: url, configuration: RedisStore.Configuration(lookupTimeout: .seconds(5), writeTimeout: .seconds(10)), eventLoopGroup: RedisTestSupport.eventLoopGroup, logger: RedisTestSupport.logger)
            near.start()
            redis.start()
            writer.start()
            // Both pools connected before anything is sent (a loaded machine takes a moment).
            let connected = await RedisTestSupport.waitUntil(timeout: .seconds(30)) {
                redis.standalonePool!.availableConnectionCount == redis.standalonePool!.configuration.size
                    && writer.standalonePool!.availableConnectionCount == writer.standalonePool!.configuration.size
            }
            #expect(connected)
            do {
                try await Self.race(near: near, writer: writer, on: loop)
            } catch {
                await near.shutdown()
                await writer.shutdown()
                throw error
            }
            await near.shutdown()
            await writer.shutdown()
        }

        static func race(near: NearCacheStore, writer: RedisStore, on loop: any EventLoop) async throws {
            let filling = await RedisTestSupport.waitUntil(timeout: .seconds(30)) { Self.stat(near, "nearCacheFilling") == 1 }
            #expect(filling)

            let key = StorageKey(namespace: "race\(UInt32.random(in: 0...UInt32.max))", function: FunctionVersion(function: "Tests.race()", version: "v1"), key: try CacheKey(hashing: 1))
            let entry = { (text: String) in StoreEntry(value: ByteBuffer(string: text), ttl: .seconds(60), computeMicroseconds: 1) }
            #expect(try await writer.store(key, entry: entry("old"), on: loop).get())

            // The read goes out, and its reply ("old") is held before it can fill.
            let release = loop.makePromise(of: Void.self)
            let held = NIOLockedValueBox(false)
            near.holdFillsForTesting { _ in
                held.withLockedValue { $0 = true }
                return release.futureResult
            }
            let read = near.lookup(key, on: loop)
            let replied = await RedisTestSupport.waitUntil(timeout: .seconds(30)) { held.withLockedValue { $0 } }
            #expect(replied, "the read's reply did not arrive")

            // Meanwhile the key changes, and the invalidation arrives.
            let messages = Self.stat(near, "nearCacheInvalidationMessages")
            #expect(try await writer.store(key, entry: entry("new"), on: loop).get())
            let invalidated = await RedisTestSupport.waitUntil(timeout: .seconds(30)) { Self.stat(near, "nearCacheInvalidationMessages") > messages }
            #expect(invalidated, "the invalidation did not arrive")

            // Now the held reply completes: the caller gets what Redis answered
            // then, but the near-cache does not keep it.
            release.succeed()
            guard case .hit(let readValue, _, _) = try await read.get() else { throw TestFailure("expected the read's hit") }
            #expect(readValue == ByteBuffer(string: "old"))
            #expect(Self.stat(near, "nearCacheDiscardedFills") == 1)
            #expect(near.lookupImmediately(key) == nil, "the old value must not be held")
            near.holdFillsForTesting { _ in loop.makeSucceededVoidFuture() }
            guard case .hit(let value, _, _) = try await near.lookup(key, on: loop).get() else { throw TestFailure("expected a hit") }
            #expect(value == ByteBuffer(string: "new"))
            guard case .hit(let nearValue, _, _) = try #require(near.lookupImmediately(key)) else { throw TestFailure("expected a near hit") }
            #expect(nearValue == ByteBuffer(string: "new"))
        }
    }
}
