import NIOCore
import Testing

@testable import Gateway

@Suite("Single-flight fill table")
struct FillTableTests {
    typealias Table = FillTable<String, Int>
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let bound = TimeAmount.milliseconds(100)

    func at(_ milliseconds: Int64) -> NIODeadline { self.start + .milliseconds(milliseconds) }

    @Test func theFirstMissComputesAndLaterOnesWaitOrAreHeld() {
        var table = Table()
        #expect(table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .compute(startsFill: true))
        #expect(table.miss("k", connection: 2, request: 2, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .wait)
        #expect(table.miss("k", connection: 2, request: 3, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound) == .hold)
        // Another key is independent.
        #expect(table.miss("j", connection: 2, request: 4, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .compute(startsFill: true))
        #expect(table.heldCount == 1)
    }

    @Test func aConnectionThatDidNotAnnounceIsNeverHeldAndComputesAsBefore() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound)
        #expect(table.miss("k", connection: 2, request: 2, hold: nil, mayWait: false, now: self.start, bound: self.bound) == .compute(startsFill: false))
        #expect(table.miss("k", connection: 2, request: 3, hold: self.at(1000), mayWait: false, now: self.start, bound: self.bound) == .compute(startsFill: false))
        #expect(table.heldCount == 0)
        // But with no fill running, its miss starts one: its store releases the waiters.
        var fresh = Table()
        #expect(fresh.miss("k", connection: 2, request: 1, hold: nil, mayWait: false, now: self.start, bound: self.bound) == .compute(startsFill: true))
    }

    @Test func aStoreAnswersEveryHeldLookupAndEndsTheFill() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 2, request: 2, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 3, request: 3, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        let answered = table.stored("k", value: 42)
        #expect(answered.map(\.request) == [2, 3])
        #expect(table.fills.isEmpty)
        // While the store is on its way to the backend, a miss gets its value.
        #expect(table.miss("k", connection: 4, request: 4, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .value(42))
        table.storeFinished("k", now: self.at(10))
        // A lookup that started before the backend had the store, and missed
        // it, starts no second fill: it reads again, whoever sent it.
        #expect(table.miss("k", connection: 4, request: 5, hold: nil, mayWait: true, now: self.at(20), bound: self.bound, lookupStarted: self.at(5)) == .retry)
        #expect(table.miss("k", connection: 5, request: 6, hold: self.at(100), mayWait: false, now: self.at(20), bound: self.bound, lookupStarted: self.at(5)) == .retry)
        #expect(table.fills.isEmpty)
        // One that started after it really misses (the entry expired or was invalidated).
        #expect(table.miss("k", connection: 4, request: 7, hold: nil, mayWait: true, now: self.at(20), bound: self.bound, lookupStarted: self.at(15)) == .compute(startsFill: true))
    }

    @Test func theFillerClosingHandsTheFillToTheOldestWaiterOnly() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 2, request: 2, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 3, request: 3, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        let outcomes = table.connectionClosed(1, now: self.at(50))
        #expect(outcomes == [.promoted(Table.Waiter(connection: 2, request: 2, giveUpAt: self.at(1000)), takeover: true)])
        #expect(table.fills["k"]?.filler == 2)
        #expect(table.fills["k"]?.deadline == self.at(150))
        #expect(table.heldCount == 1)
        // The new filler's store answers the rest.
        #expect(table.stored("k", value: 1).map(\.request) == [3])
    }

    @Test func aWaiterThatClosesIsDroppedAndAFillWithoutWaitersEnds() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 2, request: 2, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        #expect(table.connectionClosed(2, now: self.start).isEmpty)
        #expect(table.heldCount == 0)
        #expect(table.connectionClosed(1, now: self.start).isEmpty)
        #expect(table.fills.isEmpty)
    }

    @Test func theWaitBoundPromotesOneWaiterAtATime() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 2, request: 2, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        _ = table.miss("k", connection: 3, request: 3, hold: self.at(1000), mayWait: true, now: self.start, bound: self.bound)
        #expect(table.nextDeadline == self.at(100))
        #expect(table.expire(now: self.at(99)).isEmpty)
        #expect(table.expire(now: self.at(100)) == [.promoted(Table.Waiter(connection: 2, request: 2, giveUpAt: self.at(1000)), takeover: false)])
        #expect(table.nextDeadline == self.at(200))
        #expect(table.expire(now: self.at(200)) == [.promoted(Table.Waiter(connection: 3, request: 3, giveUpAt: self.at(1000)), takeover: false)])
        // No waiter left: the fill ends at its next deadline.
        #expect(table.expire(now: self.at(300)).isEmpty)
        #expect(table.fills.isEmpty)
        #expect(table.nextDeadline == nil)
    }

    @Test func aHeldLookupPastItsClientsLimitGivesUpWithoutTakingTheFill() {
        var table = Table()
        _ = table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: .seconds(10))
        _ = table.miss("k", connection: 2, request: 2, hold: self.at(30), mayWait: true, now: self.start, bound: .seconds(10))
        #expect(table.nextDeadline == self.at(30))
        #expect(table.expire(now: self.at(30)) == [.gaveUp(Table.Waiter(connection: 2, request: 2, giveUpAt: self.at(30)))])
        #expect(table.fills["k"]?.filler == 1)
    }

    @Test func theWaitBoundFollowsTheRecordedComputeTimeWithinItsCap() {
        let bound = FillWaitBound(cap: .seconds(2))
        #expect(bound.bound(computeMicroseconds: nil) == .seconds(2))
        #expect(bound.bound(computeMicroseconds: 300_000) == .milliseconds(1100))
        #expect(bound.bound(computeMicroseconds: 0) == .milliseconds(500))
        #expect(FillWaitBound(cap: .seconds(2), slack: .zero).bound(computeMicroseconds: 10_000) == .milliseconds(100))
        #expect(bound.bound(computeMicroseconds: 5_000_000) == .seconds(2))
        #expect(bound.bound(computeMicroseconds: .max) == .seconds(2))
    }
}
