import NIOCore
import Testing

@testable import Gateway

/// `FillTable` with fill leases shared by gateways: the state transitions
/// alone, with no backend (the answers a backend gives are fed in).
@Suite("Fill table with leases")
struct FillLeaseTableTests {
    typealias Table = FillTable<String, Int>
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let bound = TimeAmount.milliseconds(100)

    func at(_ milliseconds: Int64) -> NIODeadline { self.start + .milliseconds(milliseconds) }

    func waiter(_ connection: UInt64, _ request: UInt64, giveUpAt: Int64 = 1000) -> Table.Waiter {
        Table.Waiter(connection: connection, request: request, giveUpAt: self.at(giveUpAt))
    }

    /// A miss of `k` from `connection` in lease mode.
    func miss(_ table: inout Table, _ connection: UInt64, request: UInt64, held: Bool, mayWait: Bool = true, at milliseconds: Int64 = 0) -> Table.MissDecision {
        table.miss(
            "k", connection: connection, request: request, hold: held ? self.at(1000) : nil, mayWait: mayWait,
            now: self.at(milliseconds), bound: self.bound, leases: true
        )
    }

    @Test func theFirstMissWaitsForTheClaimAndTheOldestWaiterComputesOnceTaken() {
        var table = Table()
        #expect(self.miss(&table, 1, request: 1, held: false) == .wait)
        #expect(table.fills["k"]?.lease == .claiming)
        #expect(table.fills["k"]?.filler == nil)
        #expect(self.miss(&table, 1, request: 2, held: true) == .hold)
        #expect(self.miss(&table, 2, request: 3, held: true) == .hold)
        let outcomes = table.claimed("k", .taken, now: self.at(1), poll: nil)
        #expect(outcomes == [.elected(self.waiter(1, 2), takeover: false)])
        #expect(table.fills["k"]?.filler == 1)
        #expect(table.fills["k"]?.lease == .held)
        // The filler's store answers the rest.
        #expect(table.stored("k", value: 7) == [self.waiter(2, 3)])
    }

    @Test func aClaimTakenBeforeAnyHeldLookupLetsTheNextMissCompute() {
        var table = Table()
        #expect(self.miss(&table, 1, request: 1, held: false) == .wait)
        #expect(table.claimed("k", .taken, now: self.at(1), poll: nil) == [])
        #expect(self.miss(&table, 1, request: 2, held: true, at: 2) == .compute(startsFill: true))
        #expect(self.miss(&table, 2, request: 3, held: true, at: 2) == .hold)
    }

    @Test func aClientThatDidNotAnnounceComputesAtOnceAndStillClaims() {
        var table = Table()
        #expect(self.miss(&table, 1, request: 1, held: false, mayWait: false) == .compute(startsFill: true))
        #expect(table.fills["k"]?.lease == .claiming)
        #expect(self.miss(&table, 2, request: 2, held: true) == .hold)
        // Held elsewhere: the old client computes anyway, and its store answers the waiter.
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(80)), now: self.at(1), poll: nil) == [])
        #expect(table.fills["k"]?.filler == 1)
        #expect(table.fills["k"]?.lease == FillTable<String, Int>.Lease.none)
        #expect(table.stored("k", value: 7) == [self.waiter(2, 2)])
    }

    @Test func heldElsewhereWaitsForTheOtherValueAndItsArrivalAnswersEveryWaiter() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = self.miss(&table, 2, request: 2, held: true)
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(80)), now: self.at(1), poll: nil) == [])
        #expect(table.fills["k"]?.lease == .elsewhere)
        #expect(table.fills["k"]?.filler == nil)
        // Later lookups wait too, none computes.
        #expect(self.miss(&table, 3, request: 3, held: false, at: 5) == .wait)
        #expect(self.miss(&table, 4, request: 4, held: false, mayWait: false, at: 5) == .compute(startsFill: false))
        // Notified: read the entry; its value answers every waiter.
        #expect(table.entryChanged("k"))
        #expect(table.valueArrived("k") == [self.waiter(1, 1), self.waiter(2, 2)])
        #expect(table.fills["k"] == nil)
        #expect(table.nextDeadline == nil)
    }

    @Test func withoutNotificationsTheEntryIsPolledUntilTheOtherLeaseLapses() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = table.claimed("k", .heldElsewhere(remaining: .milliseconds(50)), now: self.at(0), poll: .milliseconds(20))
        #expect(table.nextDeadline == self.at(20))
        #expect(table.expire(now: self.at(20)) == [.reread("k")])
        #expect(table.nextDeadline == self.at(40))
        #expect(table.expire(now: self.at(40)) == [.reread("k")])
        // The other lease lapses at 50 without a value: ask again.
        #expect(table.expire(now: self.at(50)) == [.claim("k")])
        #expect(table.fills["k"]?.lease == .claiming)
        #expect(table.fills["k"]?.claimCause == .remoteLapsed)
        // Taken: one waiter takes over.
        #expect(table.claimed("k", .taken, now: self.at(51), poll: nil) == [.elected(self.waiter(1, 1), takeover: true)])
    }

    @Test func theOtherLeaseGivenBackIsAskedForAtOnce() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = self.miss(&table, 2, request: 2, held: true)
        _ = table.claimed("k", .heldElsewhere(remaining: .milliseconds(90)), now: self.at(0), poll: nil)
        #expect(table.leaseChanged("k", now: self.at(5)) == [.claim("k")])
        // Still held elsewhere (another gateway was quicker): wait again, nobody computes.
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(90)), now: self.at(6), poll: nil) == [])
        #expect(table.fills["k"]?.waiters.count == 2)
        // A lease change of a fill that is not waiting on another gateway asks nothing.
        var own = Table()
        _ = self.miss(&own, 1, request: 1, held: true)
        _ = own.claimed("k", .taken, now: self.at(0), poll: nil)
        #expect(own.leaseChanged("k", now: self.at(1)) == [])
    }

    @Test func anEntryStoredBeforeTheClaimIsReadInsteadOfComputed() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        #expect(table.claimed("k", .stored, now: self.at(1), poll: nil) == [.reread("k")])
        #expect(table.valueArrived("k") == [self.waiter(1, 1)])
        // Gone again by the read: ask again shortly.
        var gone = Table()
        _ = self.miss(&gone, 1, request: 1, held: true)
        _ = gone.claimed("k", .stored, now: self.at(1), poll: nil)
        #expect(gone.expire(now: self.at(1) + FillTable<String, Int>.minimumRecheck) == [.claim("k")])
    }

    @Test func theBackendUnavailableFailsOpenToThisGatewaysOwnSingleFlight() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = self.miss(&table, 2, request: 2, held: true)
        #expect(table.claimed("k", .unavailable, now: self.at(1), poll: nil) == [.elected(self.waiter(1, 1), takeover: false)])
        #expect(table.fills["k"]?.lease == FillTable<String, Int>.Lease.none)
        // From here on, exactly as without leases.
        #expect(table.expire(now: self.at(101)) == [.promoted(self.waiter(2, 2), takeover: false)])
    }

    @Test func theFillersConnectionClosingHandsOverAndRenewsTheLease() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = self.miss(&table, 2, request: 2, held: true)
        _ = table.claimed("k", .taken, now: self.at(0), poll: nil)
        #expect(table.connectionClosed(1, now: self.at(10)) == [.promoted(self.waiter(2, 2), takeover: true), .claim("k")])
        #expect(table.fills["k"]?.claimCause == .renewal)
        #expect(table.claimed("k", .taken, now: self.at(11), poll: nil) == [])
        #expect(table.fills["k"]?.filler == 2)
        #expect(table.fills["k"]?.lease == .held)
        // The last filler goes with nobody left: the lease is given back.
        #expect(table.connectionClosed(2, now: self.at(20)) == [.release("k")])
        #expect(table.fills["k"] == nil)
    }

    @Test func aFillPastItsDeadlineLostItsLeaseAndAsksAgainBeforeAWaiterComputes() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = self.miss(&table, 2, request: 2, held: true)
        _ = table.claimed("k", .taken, now: self.at(0), poll: nil)
        #expect(table.expire(now: self.at(100)) == [.leaseLost("k"), .claim("k")])
        #expect(table.fills["k"]?.filler == nil)
        // Another gateway took it meanwhile: this one waits for its value.
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(100)), now: self.at(101), poll: nil) == [])
        #expect(table.fills["k"]?.lease == .elsewhere)
        // Or this gateway got it again: the waiter computes, counted as a wait timeout.
        var again = Table()
        _ = self.miss(&again, 1, request: 1, held: true)
        _ = self.miss(&again, 2, request: 2, held: true)
        _ = again.claimed("k", .taken, now: self.at(0), poll: nil)
        _ = again.expire(now: self.at(100))
        #expect(again.claimed("k", .taken, now: self.at(101), poll: nil) == [.promoted(self.waiter(2, 2), takeover: false)])
    }

    @Test func aClaimAnsweredAfterTheFillEndedGivesBackWhatItTook() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        #expect(table.valueArrived("k") == [self.waiter(1, 1)])
        #expect(table.claimed("k", .taken, now: self.at(1), poll: nil) == [.release("k")])
        #expect(table.claimed("k", .heldElsewhere(remaining: .milliseconds(5)), now: self.at(1), poll: nil) == [])
    }

    @Test func pollingStartsWhenNotificationsStop() {
        var table = Table()
        _ = self.miss(&table, 1, request: 1, held: true)
        _ = table.claimed("k", .heldElsewhere(remaining: .milliseconds(90)), now: self.at(0), poll: nil)
        #expect(table.nextDeadline == self.at(90))
        table.startPolling(every: .milliseconds(10), now: self.at(5))
        #expect(table.nextDeadline == self.at(15))
        #expect(table.expire(now: self.at(15)) == [.reread("k")])
    }

    @Test func withoutLeasesNothingChanges() {
        var table = Table()
        #expect(table.miss("k", connection: 1, request: 1, hold: nil, mayWait: true, now: self.start, bound: self.bound) == .compute(startsFill: true))
        #expect(table.fills["k"]?.lease == FillTable<String, Int>.Lease.none)
        #expect(table.connectionClosed(1, now: self.at(1)) == [])
    }
}
