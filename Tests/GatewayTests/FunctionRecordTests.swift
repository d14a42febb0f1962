import Testing

@testable import Gateway

/// The registry's decisions, without I/O: leases, retirements, claims.
@Suite struct FunctionRecordTests {
    let lease: Int64 = 30_000
    let grace: Int64 = 600_000

    @Test func aNewVersionIsCreatedWithALeaseAndReportedNew() {
        var record = FunctionRecord(name: "M.f(x:)")
        let acquired = record.acquire(version: "v1", gateway: "a", now: 1_000, duration: self.lease, eager: false)
        #expect(acquired == .init(isNewVersion: true, claims: []))
        #expect(record.versions["v1"] == VersionRecord(firstSeen: 1_000, lastSeen: 1_000, leases: ["a": 31_000]))
        #expect(record.versions["v1"]!.state(now: 2_000) == "active")
        // The same version again (another gateway): not new, another lease.
        let again = record.acquire(version: "v1", gateway: "b", now: 2_000, duration: self.lease, eager: true)
        #expect(again == .init(isNewVersion: false, claims: []))
        #expect(record.versions["v1"]!.leases == ["a": 31_000, "b": 32_000])
        #expect(record.versions["v1"]!.firstSeen == 1_000 && record.versions["v1"]!.lastSeen == 2_000)
    }

    @Test func aVersionInUseIsNeverClaimedWhateverTheOtherVersionsDo() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "old-host", now: 0, duration: self.lease, eager: false)
        _ = record.acquire(version: "v2", gateway: "new-host", now: 10, duration: self.lease, eager: false)
        // The old host renews for a long time: v1 stays, however old.
        var now: Int64 = 10
        while now < 5 * self.grace {
            now += self.lease / 3
            _ = record.acquire(version: "v1", gateway: "old-host", now: now, duration: self.lease, eager: false)
            _ = record.acquire(version: "v2", gateway: "new-host", now: now, duration: self.lease, eager: false)
            #expect(record.claimIdleVersions(now: now, grace: self.grace).isEmpty)
        }
    }

    @Test func aReleasedVersionIsClaimedOnceAfterTheGracePeriod() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "a", now: 0, duration: self.lease, eager: false)
        // v2 stays in use throughout (a lease long enough to stand for its renewals).
        _ = record.acquire(version: "v2", gateway: "a", now: 5, duration: 10 * self.grace, eager: false)
        record.release(version: "v1", gateway: "a", now: 100)
        #expect(record.versions["v1"]!.state(now: 101) == "idle")
        #expect(record.claimIdleVersions(now: 100 + self.grace - 1, grace: self.grace).isEmpty)
        let claims = record.claimIdleVersions(now: 100 + self.grace, grace: self.grace)
        #expect(claims == [.init(version: "v1", epoch: 1)])
        #expect(record.versions["v1"]!.state(now: 100 + self.grace) == "retired")
        // Exactly once: the next sweep, by this gateway or another one reading
        // the record it wrote, finds nothing to do.
        #expect(record.claimIdleVersions(now: 200 + self.grace, grace: self.grace).isEmpty)
        // The version still in use is untouched.
        #expect(record.versions["v2"]!.purgedEpoch == 0)
    }

    @Test func aDeadGatewaysLeaseLapsesAndItsVersionsAreClaimedAfterTheGrace() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "dead", now: 0, duration: self.lease, eager: false)
        // No renewal, no release: the gateway was SIGKILLed at time 0.
        #expect(record.claimIdleVersions(now: self.lease - 1, grace: 0).isEmpty, "the lease is still live")
        #expect(record.claimIdleVersions(now: self.lease, grace: self.grace).isEmpty, "lapsed, but the grace has not passed")
        #expect(record.versions["v1"]!.leases.isEmpty)
        #expect(record.claimIdleVersions(now: self.grace, grace: self.grace) == [.init(version: "v1", epoch: 1)])
    }

    @Test func eagerRetiresTheOtherVersionsAtANewVersionsFirstRegistrationOnly() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "a", now: 0, duration: self.lease, eager: true)
        let new = record.acquire(version: "v2", gateway: "b", now: 10, duration: self.lease, eager: true)
        #expect(new == .init(isNewVersion: true, claims: [.init(version: "v1", epoch: 1)]))
        // An old worker still running registers v1 again (elsewhere): that
        // retires nothing, and v1 starts a new period of use.
        let old = record.acquire(version: "v1", gateway: "c", now: 20, duration: self.lease, eager: true)
        #expect(old == .init(isNewVersion: false, claims: []))
        #expect(record.versions["v1"]!.epoch == 2 && !record.versions["v1"]!.isPurged)
        #expect(record.versions["v2"]!.purgedEpoch == 0)
        // A third, new version retires both earlier ones, each at its own epoch.
        let third = record.acquire(version: "v3", gateway: "b", now: 30, duration: self.lease, eager: true)
        #expect(third.claims == [.init(version: "v1", epoch: 2), .init(version: "v2", epoch: 1)])
    }

    @Test func aRenewalAfterAnEagerPurgeStartsANewPeriodWhoseEntriesGoWhenItEnds() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "old", now: 0, duration: self.lease, eager: true)
        _ = record.acquire(version: "v2", gateway: "new", now: 1, duration: 10 * self.grace, eager: true)
        #expect(record.versions["v1"]!.isPurged)
        // The old gateway renews (eager: false, as renewals are).
        _ = record.acquire(version: "v1", gateway: "old", now: 10_000, duration: self.lease, eager: false)
        #expect(record.versions["v1"]!.epoch == 2)
        record.release(version: "v1", gateway: "old", now: 20_000)
        #expect(record.claimIdleVersions(now: 20_000 + self.grace, grace: self.grace) == [.init(version: "v1", epoch: 2)])
    }

    @Test func aRollbackToARetiredVersionIsANewPeriodOfUse() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "a", now: 0, duration: self.lease, eager: false)
        record.release(version: "v1", gateway: "a", now: 1)
        #expect(record.claimIdleVersions(now: 1 + self.grace, grace: self.grace).count == 1)
        let rollback = record.acquire(version: "v1", gateway: "a", now: 2 + self.grace, duration: self.lease, eager: true)
        #expect(rollback == .init(isNewVersion: false, claims: []), "a known version is not new: eager retires nothing")
        #expect(record.versions["v1"]!.epoch == 2)
        record.release(version: "v1", gateway: "a", now: 3 + self.grace)
        #expect(record.claimIdleVersions(now: 3 + 2 * self.grace, grace: self.grace) == [.init(version: "v1", epoch: 2)])
    }

    @Test func retiredVersionsAreForgottenAfterTheRetentionOnly() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "a", now: 0, duration: self.lease, eager: false)
        _ = record.acquire(version: "v2", gateway: "a", now: 0, duration: self.lease, eager: false)
        record.release(version: "v1", gateway: "a", now: 0)
        record.release(version: "v2", gateway: "a", now: 0)
        _ = record.claimIdleVersions(now: self.grace, grace: self.grace)
        _ = record.acquire(version: "v2", gateway: "a", now: self.grace, duration: self.lease, eager: false)
        record.forgetRetiredVersions(now: 10 * self.grace, retention: 5 * self.grace)
        #expect(record.versions.keys.sorted() == ["v2"], "v1 retired long ago goes; v2 (in use again, then lapsed) is not retired")
    }

    @Test func releasingALeaseThatIsNotHeldChangesNothing() {
        var record = FunctionRecord(name: "f")
        _ = record.acquire(version: "v1", gateway: "a", now: 0, duration: self.lease, eager: false)
        let before = record
        record.release(version: "v1", gateway: "b", now: 500)
        record.release(version: "v9", gateway: "a", now: 500)
        #expect(record == before)
    }
}
