@testable import Gateway
import GatewayProtocol
import NIOCore
import Testing

/// `NearCache`, `TrackingState` and `InvalidationReplies`: the near-cache's
/// coherence rules, without I/O or waiting.
struct NearCacheStateTests {
    let now = NIODeadline.uptimeNanoseconds(1_000_000_000)
    var later: NIODeadline { self.now + .seconds(60) }

    static func key(_ index: Int) throws -> StorageKey {
        StorageKey(namespace: "ns", function: FunctionVersion(function: "f()", version: "v1"), key: try CacheKey(hashing: index))
    }

    static func backendKey(_ index: Int) -> String { "cg:ns:e:F:v1:\(index)" }

    func filling(capacity: Int = 1 << 20) -> NearCache {
        var cache = NearCache(capacityBytes: capacity)
        cache.startFilling()
        return cache
    }

    @Test func aFillCompletedWithItsPlaceholderInPlaceIsServedUntilItsExpiry() throws {
        var cache = self.filling()
        let ticketFill = cache.beginFill(try Self.key(1), backendKey: Self.backendKey(1))
        let ticket = try #require(ticketFill)
        let result1 = cache.get(try Self.key(1), now: self.now)
        #expect(result1 == nil, "a placeholder is not an entry")
        let result2 = cache.completeFill(ticket, value: ByteBuffer(string: "one"), computeMicroseconds: 5, expires: self.now + .seconds(1), now: self.now)
        #expect(result2)
        let result3 = cache.get(try Self.key(1), now: self.now)?.value
        #expect(result3 == ByteBuffer(string: "one"))
        let result4 = cache.get(try Self.key(1), now: self.now + .seconds(1))
        #expect(result4 == nil, "not served at its expiry")
        #expect(cache.count == 0)
    }

    @Test("a value that is a slice of a larger buffer is held as a copy of its own, so the bound counts what memory holds")
    func aSlicedValueIsHeldAsACopy() throws {
        var cache = self.filling()
        let read = ByteBuffer(repeating: 0x41, count: 64 * 1024)
        let slice = read.getSlice(at: read.readerIndex, length: 3)!
        let key = try Self.key(1)
        let began = cache.beginFill(key, backendKey: Self.backendKey(1))
        let ticket = try #require(began)
        let filled = cache.completeFill(ticket, value: slice, computeMicroseconds: 5, expires: self.later, now: self.now)
        #expect(filled)
        let entry = cache.get(key, now: self.now)
        let held = try #require(entry?.value)
        #expect(held == ByteBuffer(string: "AAA"))
        #expect(held.storageCapacity < 1024, "the 64 KiB buffer it was read from is not kept")
    }

    @Test func anInvalidationThatOvertakesTheReplyKeepsTheReadsValueOut() throws {
        var cache = self.filling()
        let ticketFill = cache.beginFill(try Self.key(1), backendKey: Self.backendKey(1))
        let ticket = try #require(ticketFill)
        // The invalidation arrives first, then the reply with the old value.
        let result5 = cache.invalidate(backendKeys: [Self.backendKey(1)])
        #expect(result5 == 0)
        let result6 = cache.completeFill(ticket, value: ByteBuffer(string: "old"), computeMicroseconds: 5, expires: self.later, now: self.now)
        #expect(!result6)
        let result7 = cache.get(try Self.key(1), now: self.now)
        #expect(result7 == nil)
        #expect(cache.discardedFills == 1)
    }

    @Test func anInvalidationRemovesAHeldEntryAndAPrefixRemovesAVersion() throws {
        var cache = self.filling()
        for index in 0..<3 {
            let ticketFill = cache.beginFill(try Self.key(index), backendKey: Self.backendKey(index))
            let ticket = try #require(ticketFill)
            cache.completeFill(ticket, value: ByteBuffer(string: "\(index)"), computeMicroseconds: 1, expires: self.later, now: self.now)
        }
        let other = StorageKey(namespace: "ns", function: FunctionVersion(function: "f()", version: "v2"), key: try CacheKey(hashing: 0))
        let ticketFill = cache.beginFill(other, backendKey: "cg:ns:e:F:v2:0")
        let ticket = try #require(ticketFill)
        cache.completeFill(ticket, value: ByteBuffer(string: "v2"), computeMicroseconds: 1, expires: self.later, now: self.now)
        let result8 = cache.invalidate(backendKeys: [Self.backendKey(0), "cg:ns:e:F:v1:unknown"])
        #expect(result8 == 1)
        let result9 = cache.get(try Self.key(0), now: self.now)
        #expect(result9 == nil)
        let result10 = cache.invalidate(backendKeyPrefix: "cg:ns:e:F:v1:")
        #expect(result10 == 2)
        #expect(cache.count == 1)
        let result11 = cache.get(other, now: self.now)?.value
        #expect(result11 == ByteBuffer(string: "v2"))
        #expect(cache.invalidatedEntries == 3)
    }

    @Test func stoppingFillsDiscardsTheFillsOutAndFlushingRemovesEverything() throws {
        var cache = self.filling()
        let heldFill = cache.beginFill(try Self.key(1), backendKey: Self.backendKey(1))
        let held = try #require(heldFill)
        cache.completeFill(held, value: ByteBuffer(string: "held"), computeMicroseconds: 1, expires: self.later, now: self.now)
        let outFill = cache.beginFill(try Self.key(2), backendKey: Self.backendKey(2))
        let out = try #require(outFill)
        cache.stopFilling()
        #expect(cache.beginFill(try Self.key(3), backendKey: Self.backendKey(3)) == nil, "no fill starts while fills are off")
        let result12 = cache.completeFill(out, value: ByteBuffer(string: "late"), computeMicroseconds: 1, expires: self.later, now: self.now)
        #expect(!result12)
        let result13 = cache.get(try Self.key(1), now: self.now)
        #expect(result13 != nil, "stopping keeps what is held")
        cache.startFilling()
        let againFill = cache.beginFill(try Self.key(2), backendKey: Self.backendKey(2))
        let again = try #require(againFill)
        let result14 = cache.flush(stopFilling: true)
        #expect(result14 == 1)
        let result15 = cache.completeFill(again, value: ByteBuffer(string: "late"), computeMicroseconds: 1, expires: self.later, now: self.now)
        #expect(!result15)
        #expect(cache.count == 0 && cache.pendingCount == 0 && !cache.isFilling)
    }

    @Test func aSecondFillOfAKeyReplacesTheFirst() throws {
        var cache = self.filling()
        let firstFill = cache.beginFill(try Self.key(1), backendKey: Self.backendKey(1))
        let first = try #require(firstFill)
        let secondFill = cache.beginFill(try Self.key(1), backendKey: Self.backendKey(1))
        let second = try #require(secondFill)
        let result16 = cache.completeFill(first, value: ByteBuffer(string: "first"), computeMicroseconds: 1, expires: self.later, now: self.now)
        #expect(!result16)
        let result17 = cache.completeFill(second, value: ByteBuffer(string: "second"), computeMicroseconds: 1, expires: self.later, now: self.now)
        #expect(result17)
        let result18 = cache.get(try Self.key(1), now: self.now)?.value
        #expect(result18 == ByteBuffer(string: "second"))
    }

    @Test func theBoundEvictsTheLeastRecentlyUsedAndForgetsTheirKeys() throws {
        let entryCost = 100 + Self.backendKey(0).utf8.count + NearCache.overheadBytes
        var cache = self.filling(capacity: entryCost * 3)
        for index in 0..<10 {
            let ticketFill = cache.beginFill(try Self.key(index), backendKey: Self.backendKey(index))
            let ticket = try #require(ticketFill)
            cache.completeFill(ticket, value: ByteBuffer(repeating: 1, count: 100), computeMicroseconds: 1, expires: self.later, now: self.now)
            #expect(cache.costBytes <= cache.capacityBytes)
        }
        #expect(cache.count == 3)
        let result19 = cache.get(try Self.key(9), now: self.now)
        #expect(result19 != nil)
        let result20 = cache.get(try Self.key(0), now: self.now)
        #expect(result20 == nil)
        // An evicted key's invalidation finds nothing, and removes nothing else.
        let result21 = cache.invalidate(backendKeys: (0..<7).map(Self.backendKey))
        #expect(result21 == 0)
        #expect(cache.count == 3)
    }

    // MARK: TrackingState

    @Test func trackingIsCompleteOnlyWhenEveryConnectionTracksToTheSubscribedListener() {
        var tracking = TrackingState<Int>()
        #expect(tracking.connectionOpened(1) == [], "no listener yet: nothing to enable")
        #expect(tracking.connectionOpened(2) == [])
        #expect(!tracking.isComplete)
        #expect(tracking.listenerSubscribed(id: 7).sorted { "\($0)" < "\($1)" } == [.enableTracking(1, redirect: 7), .enableTracking(2, redirect: 7)])
        tracking.trackingEnabled(1, redirect: 7)
        #expect(!tracking.isComplete)
        tracking.trackingEnabled(2, redirect: 7)
        #expect(tracking.isComplete)
        // A new connection is untracked until Redis confirms.
        #expect(tracking.connectionOpened(3) == [.enableTracking(3, redirect: 7)])
        #expect(!tracking.isComplete)
        tracking.trackingEnabled(3, redirect: 7)
        #expect(tracking.isComplete)
        tracking.connectionClosed(3)
        #expect(tracking.isComplete)
    }

    @Test func aLostListenerEndsTrackingAndANewOneNeedsEveryConnectionAgain() {
        var tracking = TrackingState<Int>()
        _ = tracking.connectionOpened(1)
        _ = tracking.listenerSubscribed(id: 7)
        tracking.trackingEnabled(1, redirect: 7)
        #expect(tracking.isComplete)
        tracking.listenerLost()
        #expect(!tracking.isComplete)
        // A confirmation for the old listener, arriving late, counts for nothing.
        tracking.trackingEnabled(1, redirect: 7)
        #expect(!tracking.isComplete)
        #expect(tracking.listenerSubscribed(id: 8) == [.enableTracking(1, redirect: 8)])
        tracking.trackingEnabled(1, redirect: 7)
        #expect(!tracking.isComplete)
        tracking.trackingEnabled(1, redirect: 8)
        #expect(tracking.isComplete)
        tracking.trackingFailed(1, redirect: 8)
        #expect(tracking.isComplete, "a failure for a confirmed connection changes nothing")
    }

    @Test func noConnectionsMeansNoTracking() {
        var tracking = TrackingState<Int>()
        _ = tracking.listenerSubscribed(id: 1)
        #expect(!tracking.isComplete)
    }

    // MARK: InvalidationReplies

    static func message(_ payload: RESPValue) -> RESPValue {
        .array([.bulkString(ByteBuffer(string: "message")), .bulkString(ByteBuffer(string: "__redis__:invalidate")), payload])
    }

    @Test func theListenersRepliesReadInOrder() {
        var replies = InvalidationReplies(handshakeReplies: 2)
        #expect(replies.receive(.simpleString("OK")) == .none)
        #expect(replies.receive(.simpleString("PONG")) == .none)
        #expect(replies.receive(.integer(42)) == .none)
        let subscribe = RESPValue.array([.bulkString(ByteBuffer(string: "subscribe")), .bulkString(ByteBuffer(string: "__redis__:invalidate")), .integer(1)])
        #expect(replies.receive(subscribe) == .subscribed(clientID: 42))
        #expect(replies.receive(Self.message(.array([.bulkString(ByteBuffer(string: "a")), .bulkString(ByteBuffer(string: "b"))]))) == .invalidated(["a", "b"]))
        #expect(replies.receive(Self.message(.array(nil))) == .flushed)
        #expect(replies.receive(Self.message(.bulkString(nil))) == .flushed)
        #expect(replies.receive(.array([.bulkString(ByteBuffer(string: "pong")), .bulkString(ByteBuffer(string: ""))])) == .pong)
        if case .failed = replies.receive(.integer(3)) {} else { Issue.record("an integer after subscribing is not a message") }
    }

    @Test func aRefusedHandshakeOrSubscriptionFails() {
        var refused = InvalidationReplies(handshakeReplies: 1)
        if case .failed = refused.receive(.error("WRONGPASS")) {} else { Issue.record("a refused AUTH must fail") }
        var noID = InvalidationReplies(handshakeReplies: 0)
        if case .failed = noID.receive(.error("ERR unknown command")) {} else { Issue.record("CLIENT ID must answer an integer") }
        var badSubscribe = InvalidationReplies(handshakeReplies: 0)
        _ = badSubscribe.receive(.integer(1))
        if case .failed = badSubscribe.receive(.simpleString("OK")) {} else { Issue.record("SUBSCRIBE must answer its confirmation") }
    }
}
