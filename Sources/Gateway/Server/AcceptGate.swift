/// When the listener may accept, as a value type with no I/O (see
/// `AcceptLimiter`, which performs its decisions).
///
/// Out of file descriptors, `accept` fails with EMFILE while the pending
/// connection stays in the backlog, so the listening socket stays readable:
/// NIO would try again at every wake-up of its event loop, and spin. The way
/// out is a spare descriptor held in reserve. When `accept` fails for lack of
/// descriptors, accepting pauses and the reserve is let go, so that the next
/// `accept` succeeds; that connection is served, and nothing more is accepted
/// while paused, so the listener stops being polled. Accepting resumes once
/// the reserve could be taken back (a connection closed, or a retry found a
/// descriptor free); a read asked for meanwhile is held until then.
struct AcceptGate: Sendable, Equatable {
    /// Worker connections accepted and not yet closed.
    private(set) var open = 0
    /// Whether accepting is paused.
    private(set) var isPaused = false
    /// Whether the reserve descriptor is held.
    private(set) var holdsReserve = true
    /// Whether a read was asked for while paused.
    private var readWanted = false

    /// A read (an accept) is asked for: whether to pass it on now.
    mutating func readRequested() -> Bool {
        guard self.isPaused else { return true }
        self.readWanted = true
        return false
    }

    /// A connection was accepted.
    mutating func accepted() {
        self.open += 1
    }

    /// `accept` failed for lack of descriptors: whether to let the reserve
    /// go now (it is let go once per pause).
    mutating func descriptorsExhausted() -> Bool {
        self.isPaused = true
        defer { self.holdsReserve = false }
        return self.holdsReserve
    }

    /// A connection closed: whether to try to take the reserve back now.
    mutating func closed() -> Bool {
        self.open -= 1
        return self.isPaused
    }

    /// Whether a retry (see `AcceptLimiter.retryDelay`) should try to take the reserve back.
    var wantsReserve: Bool { self.isPaused }

    /// The reserve was taken back (`succeeded`) or could not be: whether to
    /// pass on a read that was held. Accepting resumes only with the reserve.
    mutating func reserveTaken(_ succeeded: Bool) -> Bool {
        guard succeeded, self.isPaused else { return false }
        self.holdsReserve = true
        self.isPaused = false
        defer { self.readWanted = false }
        return self.readWanted
    }
}
