import NIOCore
import Testing

@testable import Gateway

@Suite("Single-flight fill table: early refreshes")
struct FillTableRefreshTests {
    typealias Table = FillTable<String, Int>
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let bound = TimeAmount.milliseconds(100)

    func at(_ milliseconds: Int64) -> NIODeadline { self.start + .milliseconds(milliseconds) }

    @Test func oneRefreshAtATimeAndTheStoreEndsIt() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        #expect(table.isRefreshing("k"))
        #expect(table.refreshGranted("k") == self.start)
        // Every other hit of the entry, on any connection, is a plain hit.
        #expect(table.refresh("k", connection: 2, now: self.at(1), bound: self.bound) == false)
        #expect(table.refresh("k", connection: 1, now: self.at(1), bound: self.bound) == false)
        // Another key is independent.
        #expect(table.refresh("j", connection: 2, now: self.at(1), bound: self.bound) == true)
        #expect(table.stored("k", value: 42).isEmpty)
        #expect(!table.isRefreshing("k"))
        // While the store is on its way, and for a read that started before
        // the backend had it (it may have read the entry it replaced): no refresh.
        #expect(table.refresh("k", connection: 2, now: self.at(5), bound: self.bound) == false)
        table.storeFinished("k", now: self.at(10))
        #expect(table.refresh("k", connection: 2, now: self.at(20), bound: self.bound, lookupStarted: self.at(5)) == false)
        #expect(table.refresh("k", connection: 2, now: self.at(20), bound: self.bound, lookupStarted: self.at(15)) == true)
    }

    @Test func noRefreshWhileAFillRuns() {
        var table = Table()
        #expect(table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .compute(startsFill: true))
        #expect(table.refreshGranted("k") == nil)
        #expect(table.refresh("k", connection: 2, now: self.at(1), bound: self.bound) == false)
    }

    @Test func aMissWhileARefreshRunsWaitsForIt() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        // The entry expired before the refresh stored: misses wait for it like for any fill.
        #expect(table.miss("k", connection: 2, request: 1, hold: nil, mayWait: true, now: self.at(10), bound: self.bound) == .wait)
        #expect(table.miss("k", connection: 2, request: 2, hold: self.at(1000), mayWait: true, now: self.at(10), bound: self.bound) == .hold)
        // A connection that did not announce support computes, as always.
        #expect(table.miss("k", connection: 3, request: 3, hold: nil, mayWait: false, now: self.at(10), bound: self.bound) == .compute(startsFill: false))
        #expect(table.stored("k", value: 7).map(\.request) == [2])
    }

    @Test func aRefreshWhoseConnectionClosesEnds() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        #expect(table.connectionClosed(1, now: self.at(10)).isEmpty)
        #expect(table.fills.isEmpty)
        // The next due hit is asked.
        #expect(table.refresh("k", connection: 2, now: self.at(11), bound: self.bound) == true)
    }

    @Test func aRefreshPastItsDeadlineEndsOrPassesToAWaiter() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        #expect(table.nextDeadline == self.at(100))
        #expect(table.expire(now: self.at(100)).isEmpty)
        #expect(table.fills.isEmpty)
        // With a waiter (the entry expired meanwhile), the waiter computes, as a plain fill.
        #expect(table.refresh("k", connection: 1, now: self.at(200), bound: self.bound) == true)
        _ = table.miss("k", connection: 2, request: 9, hold: self.at(1000), mayWait: true, now: self.at(250), bound: self.bound)
        let outcomes = table.expire(now: self.at(300))
        #expect(outcomes.map(\.waiter) == [9])
        #expect(!table.isRefreshing("k"))
    }

    @Test func aRefreshNotGrantedAfterAllEnds() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        // Only the refresh's own connection cancels it.
        #expect(table.cancelRefresh("k", connection: 2, now: self.at(1)).isEmpty)
        #expect(table.isRefreshing("k"))
        #expect(table.cancelRefresh("k", connection: 1, now: self.at(1)).isEmpty)
        #expect(table.fills.isEmpty)
        // A lookup held meanwhile becomes the filler.
        #expect(table.refresh("k", connection: 1, now: self.at(2), bound: self.bound) == true)
        _ = table.miss("k", connection: 3, request: 5, hold: self.at(1000), mayWait: true, now: self.at(3), bound: self.bound)
        #expect(table.cancelRefresh("k", connection: 1, now: self.at(4)).map(\.waiter) == [5])
        #expect(table.fills["k"]?.filler == 3)
        // A plain fill is never cancelled as a refresh.
        #expect(table.cancelRefresh("k", connection: 3, now: self.at(5)).isEmpty)
        #expect(table.fills["k"] != nil)
    }

    @Test func aRefreshThatTookTheLeaseGivesItBackWhenItsRefresherLeavesAlone() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        table.refreshLeaseTaken("k", connection: 1)
        #expect(table.fills["k"]?.lease == .held)
        #expect(table.connectionClosed(1, now: self.at(10)) == [.release("k")])
        #expect(table.fills.isEmpty)
    }

    @Test func aRefreshDeclinedBecauseAnotherGatewayHoldsTheLeaseClaimsItForItsWaiters() {
        var table = Table()
        #expect(table.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        // The entry expired meanwhile: a lookup is held for the refresh.
        _ = table.miss("k", connection: 3, request: 5, hold: self.at(1000), mayWait: true, now: self.at(3), bound: self.bound, leases: true)
        // Another gateway holds the lease: nobody here computes before the claim is answered.
        #expect(table.cancelRefresh("k", connection: 1, now: self.at(4), heldElsewhere: true) == [.claim("k")])
        #expect(table.fills["k"]?.filler == nil)
        #expect(table.fills["k"]?.lease == .claiming)
        #expect(table.fills["k"]?.waiters.map(\.request) == [5])
        // Still held elsewhere: the waiter waits for that gateway's value.
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(50)), now: self.at(5), poll: nil).isEmpty)
        #expect(table.fills["k"]?.lease == .elsewhere)
        // Without a waiter the refresh just ends.
        var alone = Table()
        #expect(alone.refresh("k", connection: 1, now: self.start, bound: self.bound) == true)
        #expect(alone.cancelRefresh("k", connection: 1, now: self.at(4), heldElsewhere: true).isEmpty)
        #expect(alone.fills.isEmpty)
    }
}

extension FillTable.Outcome {
    /// The request of the waiter this outcome answers; nil for backend work.
    fileprivate var waiter: UInt64? {
        switch self {
        case .promoted(let waiter, _), .gaveUp(let waiter), .elected(let waiter, _): waiter.request
        case .claim, .reread, .release, .leaseLost: nil
        }
    }
}
