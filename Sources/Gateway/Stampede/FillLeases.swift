import NIOCore

/// What asking for a fill lease came to.
enum FillLeaseResult: Sendable, Equatable {
    /// This gateway holds the lease now, for the duration it asked.
    case taken
    /// Another gateway holds it, for at most `remaining` more.
    case heldElsewhere(remaining: TimeAmount)
    /// The backend could not answer in time: everything fails open, so the
    /// caller computes as it would without leases.
    case unavailable
}

/// Fill leases shared by every gateway on one backend: at most one gateway
/// at a time computes (or refreshes) an entry, whichever host its workers are on.
///
/// A lease is taken for a bounded time and lapses on its own, so a holder
/// that dies stops no one for longer than that. The embedded store has no
/// such leases (one host: `FillTable` alone decides); a Redis-backed
/// gateway keeps them in Redis next to the entry.
protocol FillLeases: Sendable {
    /// Asks for the lease on `key` for `duration`; answers on `eventLoop`.
    func acquire(_ key: StorageKey, for duration: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<FillLeaseResult>

    /// Gives up the lease on `key` if this gateway holds it (after its fill
    /// stored, or failed with nobody on this gateway to take over).
    func release(_ key: StorageKey, on eventLoop: any EventLoop)

    /// See the extension's default.
    func claimFill(_ key: StorageKey, for duration: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<FillClaimAnswer>

    /// The names under which the backend's change notifications report the
    /// entry and the lease of `key`, nil when it reports none.
    func backendNames(for key: StorageKey) -> FillBackendNames?
}

/// What claiming the lease of a missing entry came to (`FillLeases.claimFill`).
enum FillClaimAnswer: Sendable, Equatable {
    /// This gateway holds the lease now (it was free, or already this gateway's).
    case taken
    /// Another gateway holds it, for at most `remaining` more.
    case heldElsewhere(remaining: TimeAmount)
    /// The entry is there: read it instead of computing it.
    case stored
    /// The backend could not answer in time: fail open.
    case unavailable
}

/// The backend's names of an entry and of its lease, as its change
/// notifications name them (see `FillCoordinator.backendChanged`).
struct FillBackendNames: Sendable, Hashable {
    /// The entry's key.
    var entry: String
    /// The lease's key.
    var lease: String
}

extension FillLeases {
    /// Asks for the lease of `key` for a fill of its entry, which a lookup
    /// found missing. By default `acquire`'s answer; a backend that can
    /// check the entry in the same step answers `.stored` when it is there
    /// (a store that landed between the lookup and the claim) and renews a
    /// lease this gateway holds already.
    func claimFill(_ key: StorageKey, for duration: TimeAmount, on eventLoop: any EventLoop) -> EventLoopFuture<FillClaimAnswer> {
        self.acquire(key, for: duration, on: eventLoop).map { result in
            switch result {
            case .taken: .taken
            case .heldElsewhere(let remaining): .heldElsewhere(remaining: remaining)
            case .unavailable: .unavailable
            }
        }
    }

    /// No names: the backend tells of no changes, and waiting gateways poll.
    func backendNames(for key: StorageKey) -> FillBackendNames? { nil }
}
