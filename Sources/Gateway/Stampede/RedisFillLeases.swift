import NIOCore

/// Fill leases in Redis, shared by every gateway on the same server or cluster.
///
/// **Keys.** The lease of an entry is a string beside it
/// (`RedisKeyLayout.leaseKey`: `cg:ns:l:…` where the entry is `cg:ns:e:…`,
/// with the entry's hash tag on a cluster, so the lease is in the entry's
/// slot and a script or transaction may name both; outside the `e:` key
/// space, so scans of entries and version prefixes never meet it). Its value is the holding
/// gateway's id, random per process (`gatewayID`), so that a gateway renews
/// or gives back only its own lease; its TTL is the fill's wait bound, so a
/// lease whose gateway died lapses on its own.
///
/// **Claiming** (`claimFill`, after a lookup missed) is one script, so that
/// it is one round trip and nothing falls between its steps:
/// - the entry exists → `.stored` (a store landed between the lookup and
///   the claim: reading it again beats computing it again);
/// - the lease is free or this gateway's → it is set with `PX <bound>`
///   (taken or renewed) → `.taken`;
/// - else → its `PTTL`: `.heldElsewhere(remaining:)`.
/// The script reads both keys, so a connection with `CLIENT TRACKING` on
/// (the near-cache's) is told when either changes: the entry when the other
/// gateway stores it, the lease when it is given back or lapses. Checked
/// against redis-server 7.0.15: a `GET` of a missing key and a script's
/// `KEYS` both leave the keys tracked.
///
/// **Why not on the lookup's own round trip.** A lookup is a plain `GET`:
/// a script there would run on every hit (EVALSHA costs Redis several
/// times a GET), and a pipelined `SET NX` would take a lease on every hit.
/// The claim costs one more round trip on the first miss of a key per
/// gateway only (later misses join the gateway's fill), next to a
/// computation of milliseconds to seconds.
///
/// **Releasing** compares the holder first (a script): a lease that lapsed
/// and was taken by another gateway is not this gateway's to delete. The
/// store of an entry deletes its lease in the same transaction as the
/// write (`RedisStore.Configuration.deletesFillLeases`), whoever holds it:
/// once the entry is there, no gateway needs to wait on the lease, and a
/// miss after a later invalidation finds no stale lease to wait for.
///
/// **Fail-open.** A claim that Redis does not answer within `timeout`, or
/// answers with an error, is `.unavailable`: the gateway's own single-flight
/// decides, as without leases.
final class RedisFillLeases: FillLeases {
    let store: RedisStore
    /// This gateway's id, the value of the leases it holds.
    let gatewayID: String
    /// How long a claim may take before it counts as unavailable.
    let timeout: TimeAmount

    /// Leases in `store`'s Redis, held under `gatewayID` (random by default);
    /// a claim not answered within `timeout` (by default the store's
    /// lookup timeout) fails open.
    init(store: RedisStore, gatewayID: String? = nil, timeout: TimeAmount? = nil) {
        self.store = store
        self.gatewayID = gatewayID ?? Self.randomID()
        self.timeout = timeout ?? store.configuration.lookupTimeout
    }

    static func randomID() -> String {
        (0..<2).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined(separator: "-")
    }

    /// The lease key of `key`'s entry.
    func leaseKey(_ key: StorageKey) -> String {
        self.store.layout.leaseKey(
            namespace: key.namespace, functionID: RedisStore.functionID(key.function.function), version: key.function.version, hex: key.key.digest.hexString
        )
    }

    func backendNames(for key: StorageKey) -> FillBackendNames? {
        FillBackendNames(entry: String(buffer: self.store.entryKey(key)), lease: self.leaseKey(key))
    }

    /// KEYS: entry, lease. ARGV: gateway id, milliseconds.
    /// Returns {0} stored, {1} taken, {2, pttl} held elsewhere.
    static let claimScript = """
        if redis.call('EXISTS', KEYS[1]) == 1 then return {0} end
        local holder = redis.call('GET', KEYS[2])
        if holder == false or holder == ARGV[1] then
          redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
          return {1}
        end
        return {2, redis.call('PTTL', KEYS[2])}
        """

    /// KEYS: lease. ARGV: gateway id. Deletes the lease if this gateway holds it.
    static let releaseScript = """
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
        return 0
        """

    func claimFill(_ key: StorageKey, for duration: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<FillClaimAnswer> {
        let entry = self.store.entryKey(key)
        let lease = ByteBuffer(string: self.leaseKey(key))
        let command = RedisCommand("EVAL", arguments: [
            ByteBuffer(string: Self.claimScript), ByteBuffer(string: "2"), entry, lease,
            ByteBuffer(string: self.gatewayID), ByteBuffer(string: "\(Self.milliseconds(duration))"),
        ])
        return self.store.target.sendFuture(command, routedBy: entry, timeout: self.timeout, preferring: eventLoop)
            .hop(to: eventLoop)
            .map { reply -> FillClaimAnswer in
                guard let elements = reply.array, let kind = elements.first?.integer else { return .unavailable }
                switch kind {
                case 0: return .stored
                case 1: return .taken
                default:
                    // A lease without a TTL (-1) is not ours to judge: treat it as a whole bound.
                    let remaining = elements.count > 1 ? (elements[1].integer ?? -1) : -1
                    return .heldElsewhere(remaining: remaining >= 0 ? .milliseconds(remaining) : duration)
                }
            }
            .recover { _ in .unavailable }
    }

    /// `SET NX PX` and `PTTL` in one pipeline; the entry is not looked at
    /// (an early refresh asks while the entry is there).
    func acquire(_ key: StorageKey, for duration: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<FillLeaseResult> {
        let lease = ByteBuffer(string: self.leaseKey(key))
        let commands = [
            RedisCommand("SET", arguments: [
                lease, ByteBuffer(string: self.gatewayID), ByteBuffer(string: "NX"),
                ByteBuffer(string: "PX"), ByteBuffer(string: "\(Self.milliseconds(duration))"),
            ]),
            RedisCommand("PTTL", arguments: [lease]),
        ]
        return self.store.target.pipelineFuture(commands, routedBy: lease, timeout: self.timeout, preferring: eventLoop)
            .hop(to: eventLoop)
            .map { replies -> FillLeaseResult in
                guard replies.count == 2 else { return .unavailable }
                switch replies[0] {
                case .simpleString: return .taken
                case .bulkString(nil):
                    let remaining = replies[1].integer ?? -1
                    return .heldElsewhere(remaining: remaining >= 0 ? .milliseconds(remaining) : duration)
                default: return .unavailable
                }
            }
            .recover { _ in .unavailable }
    }

    func release(_ key: StorageKey, on eventLoop: any EventLoop) {
        let lease = ByteBuffer(string: self.leaseKey(key))
        let command = RedisCommand("EVAL", arguments: [
            ByteBuffer(string: Self.releaseScript), ByteBuffer(string: "1"), lease, ByteBuffer(string: self.gatewayID),
        ])
        // Best effort: a lease not given back lapses at its bound.
        _ = self.store.target.sendFuture(command, routedBy: lease, timeout: self.store.configuration.writeTimeout, preferring: eventLoop)
    }

    private static func milliseconds(_ duration: TimeAmount) -> Int64 {
        max(1, duration.nanoseconds / 1_000_000)
    }
}
