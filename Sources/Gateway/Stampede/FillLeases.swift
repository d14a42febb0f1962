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
}
