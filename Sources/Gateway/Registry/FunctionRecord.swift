/// What the registry knows about one function in one namespace, shared by
/// every gateway on the same backend, and the decisions taken on it.
///
/// This is the registry's state machine, kept a value type without I/O so that
/// leases, reactivation and purge claims are tested on their own
/// (Tests/GatewayTests/FunctionRecordTests.swift). The backends only store it:
/// the Redis backend reads it, applies one of these mutations and writes it back
/// with a compare-and-set, retrying on conflict, so every gateway takes the same
/// decisions from the same state and two of them can never both win a claim.
///
/// **Retirements and epochs.** A version's `epoch` counts its periods of use: it
/// starts at 1, and grows by one when a version whose entries were purged is
/// used again (a rollback, or an old worker still running after an eager
/// purge). A purge claims one epoch (`purgedEpoch = epoch`), so each retirement
/// is purged exactly once, and a later retirement of the same version is a new one.
struct FunctionRecord: Codable, Sendable, Equatable {
    /// The function's name (the Redis key holds only a hash of it).
    var name: String
    /// The known versions.
    var versions: [String: VersionRecord] = [:]

    init(name: String) {
        self.name = name
    }

    /// A version's entries that one gateway has won the right to delete.
    struct PurgeClaim: Sendable, Hashable {
        /// The version whose entries go.
        var version: String
        /// The epoch (period of use) whose entries go.
        var epoch: UInt64
    }

    /// What `acquire` did.
    struct Acquired: Sendable, Equatable {
        /// The version had never been registered before (anywhere).
        var isNewVersion: Bool
        /// Under the eager policy, the other versions this registration retired.
        var claims: [PurgeClaim]
    }

    /// Takes or renews `gateway`'s lease on `version` until `now + duration`.
    ///
    /// A version never seen before is created; under `eager`, its first
    /// registration retires every other version at once (the claims returned).
    /// Only a *new* version does that: a known version registering again (an old
    /// worker reconnecting, a rollback) retires nothing, so gateways running old
    /// and new code side by side never delete each other's entries.
    mutating func acquire(version: String, gateway: String, now: Int64, duration: Int64, eager: Bool) -> Acquired {
        self.dropLapsedLeases(now: now)
        var claims: [PurgeClaim] = []
        let isNew = self.versions[version] == nil
        if isNew {
            self.versions[version] = VersionRecord(firstSeen: now, lastSeen: now)
            if eager {
                for (other, record) in self.versions where other != version && !record.isPurged {
                    self.versions[other]!.purgedEpoch = record.epoch
                    claims.append(PurgeClaim(version: other, epoch: record.epoch))
                }
            }
        } else if self.versions[version]!.isPurged {
            // In use again after its entries went: a new period of use.
            self.versions[version]!.epoch += 1
        }
        self.versions[version]!.lastSeen = max(self.versions[version]!.lastSeen, now)
        self.versions[version]!.leases[gateway] = now + duration
        return Acquired(isNewVersion: isNew, claims: claims.sorted { $0.version < $1.version })
    }

    /// Gives up `gateway`'s lease on `version` (its last worker using it disconnected).
    mutating func release(version: String, gateway: String, now: Int64) {
        guard self.versions[version]?.leases.removeValue(forKey: gateway) != nil else { return }
        self.versions[version]!.lastSeen = max(self.versions[version]!.lastSeen, now)
    }

    /// Claims the versions nobody has used for `grace`: no live lease, and none
    /// since `now - grace`. Each claim marks its epoch purged, so the gateway
    /// whose write of this record succeeds does the work and nobody else does.
    ///
    /// Times come from each gateway's wall clock. A gateway whose clock runs
    /// ahead may see another's lease lapse early, but the holder renews every
    /// third of the lease and each renewal moves `lastSeen`, so a version in
    /// use is claimed only if clocks disagree by more than the grace period
    /// (10 minutes by default).
    mutating func claimIdleVersions(now: Int64, grace: Int64) -> [PurgeClaim] {
        self.dropLapsedLeases(now: now)
        var claims: [PurgeClaim] = []
        for (version, record) in self.versions where record.leases.isEmpty && !record.isPurged && now - record.lastSeen >= grace {
            self.versions[version]!.purgedEpoch = record.epoch
            claims.append(PurgeClaim(version: version, epoch: record.epoch))
        }
        return claims.sorted { $0.version < $1.version }
    }

    /// Forgets versions retired (purged, unleased) and unused for `retention`,
    /// so that the record does not grow with every deploy. A forgotten version
    /// that comes back is new again.
    mutating func forgetRetiredVersions(now: Int64, retention: Int64) {
        self.dropLapsedLeases(now: now)
        self.versions = self.versions.filter { _, record in
            !(record.isPurged && record.leases.isEmpty && now - record.lastSeen >= retention)
        }
    }

    /// Leases whose holder stopped renewing (its gateway died) lapse; the version
    /// was last in use when the lease was last renewed, which is at most the
    /// lease's duration before it lapsed, so `lastSeen` already says so.
    mutating func dropLapsedLeases(now: Int64) {
        for (version, record) in self.versions where record.leases.contains(where: { $0.value <= now }) {
            self.versions[version]!.leases = record.leases.filter { $0.value > now }
        }
    }
}

/// One version in a `FunctionRecord`. Times are Unix milliseconds.
struct VersionRecord: Codable, Sendable, Equatable {
    /// When it was first registered.
    var firstSeen: Int64
    /// When it was last known in use: a lease taken, renewed or released.
    var lastSeen: Int64
    /// Its current period of use (see `FunctionRecord`).
    var epoch: UInt64 = 1
    /// The last period of use whose entries were purged; 0 for none.
    var purgedEpoch: UInt64 = 0
    /// Gateway id → when its lease lapses unless renewed.
    var leases: [String: Int64] = [:]

    /// Whether the current period of use has been purged (the version is retired).
    var isPurged: Bool { self.purgedEpoch == self.epoch }

    /// `active`, `idle` or `retired`, as the functions reply reports it.
    func state(now: Int64) -> String {
        if self.leases.values.contains(where: { $0 > now }) { return "active" }
        return self.isPurged ? "retired" : "idle"
    }
}
