#if os(Linux)
import CLinux
import GatewayProtocol
#if canImport(Glibc)
import Glibc
#endif

/// What a descriptor is watched for, and what `Epoll.wait` reports.
public struct EpollEvents: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    /// Creates a set from epoll's bits.
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// Bytes can be read, or a connection accepted.
    public static let readable = EpollEvents(rawValue: cache_gateway_epollin)
    /// Bytes can be written.
    public static let writable = EpollEvents(rawValue: cache_gateway_epollout)
    /// The peer closed its side (reported; watched for with `readable`).
    public static let peerClosed = EpollEvents(rawValue: cache_gateway_epollrdhup)
    /// An error on the descriptor (always reported).
    public static let error = EpollEvents(rawValue: cache_gateway_epollerr)
    /// Both sides closed (always reported).
    public static let hangUp = EpollEvents(rawValue: cache_gateway_epollhup)
}

/// One readiness report: the token the descriptor was registered with, and
/// what it is ready for.
public struct EpollReadiness: Sendable, Hashable {
    /// The token given to `register`.
    public let token: UInt64
    /// What the descriptor is ready for.
    public let events: EpollEvents

    /// A readiness report.
    public init(token: UInt64, events: EpollEvents) {
        self.token = token
        self.events = events
    }
}

/// An epoll instance, level-triggered, and the buffers its waits fill.
///
/// The class owns the epoll descriptor and closes it when it goes away. Every
/// call goes through `systemCall`, so EINTR is retried and failures are
/// `GatewayError`s. Not thread-safe: one event loop owns one instance, and
/// never waits again from within a wait's `body`; so the buffers are never
/// accessed twice at once, and are `@exclusivity(unchecked)`.
public final class Epoll {
    private let descriptor: Int32
    /// Most events one `wait` reports.
    public let capacity: Int
    private let scratch: UnsafeMutableRawPointer
    @exclusivity(unchecked) private var tokens: [UInt64]
    @exclusivity(unchecked) private var events: [UInt32]

    /// Creates an epoll instance whose `wait` reports at most `capacity` events.
    public init(capacity: Int = 256) throws(GatewayError) {
        self.descriptor = try systemCall("epoll_create1") { cache_gateway_epoll_create() }
        self.capacity = max(1, capacity)
        self.scratch = UnsafeMutableRawPointer.allocate(
            byteCount: self.capacity * Int(cache_gateway_epoll_event_size()),
            alignment: 8
        )
        self.tokens = [UInt64](repeating: 0, count: self.capacity)
        self.events = [UInt32](repeating: 0, count: self.capacity)
    }

    deinit {
        self.scratch.deallocate()
        close(self.descriptor)
    }

    /// Starts watching `fd` for `events`; `token` comes back with its readiness.
    public func register(_ fd: Int32, for events: EpollEvents, token: UInt64) throws(GatewayError) {
        try systemCall("epoll_ctl(ADD)") { cache_gateway_epoll_ctl(self.descriptor, cache_gateway_epoll_ctl_add, fd, events.rawValue, token) }
    }

    /// Changes what `fd` is watched for.
    public func modify(_ fd: Int32, for events: EpollEvents, token: UInt64) throws(GatewayError) {
        try systemCall("epoll_ctl(MOD)") { cache_gateway_epoll_ctl(self.descriptor, cache_gateway_epoll_ctl_mod, fd, events.rawValue, token) }
    }

    /// Stops watching `fd` (closing it does too).
    public func remove(_ fd: Int32) throws(GatewayError) {
        try systemCall("epoll_ctl(DEL)") { cache_gateway_epoll_ctl(self.descriptor, cache_gateway_epoll_ctl_del, fd, 0, 0) }
    }

    /// Waits up to `timeoutMilliseconds` (-1: without end, 0: not at all),
    /// calls `woke` once the wait has returned, and then `body` with each
    /// readiness, in the order epoll reported them. Returns how many there were.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32, woke: () -> Void = {}, _ body: (EpollReadiness) throws -> Void) throws -> Int {
        let count = try self.tokens.withUnsafeMutableBufferPointer { tokens throws(GatewayError) in
            try self.events.withUnsafeMutableBufferPointer { events throws(GatewayError) in
                try systemCall("epoll_wait") {
                    cache_gateway_epoll_wait(
                        self.descriptor,
                        self.scratch.assumingMemoryBound(to: epoll_event.self),
                        Int32(self.capacity),
                        timeoutMilliseconds,
                        tokens.baseAddress,
                        events.baseAddress
                    )
                }
            }
        }
        woke()
        for index in 0..<Int(count) {
            try body(EpollReadiness(token: self.tokens[index], events: EpollEvents(rawValue: self.events[index])))
        }
        return Int(count)
    }
}

@available(*, unavailable)
extension Epoll: Sendable {}

/// An eventfd that wakes an `Epoll` wait from another thread.
///
/// Owns the descriptor. `wake` may be called from any thread; `reset`, by
/// the loop that watches it, after it reported readable.
public final class EventWaker: Sendable {
    /// The descriptor to register (readable while woken).
    public let descriptor: Int32

    /// Creates a non-blocking eventfd.
    public init() throws(GatewayError) {
        self.descriptor = try systemCall("eventfd") { cache_gateway_eventfd() }
    }

    deinit { close(self.descriptor) }

    /// Makes the descriptor readable (wakes whoever waits on it).
    public func wake() {
        var one: UInt64 = 1
        // EAGAIN: the counter is full, so the descriptor is readable already.
        _ = try? systemCall("write(eventfd)", unless: EAGAIN) { write(self.descriptor, &one, 8) }
    }

    /// Makes the descriptor not readable again.
    public func reset() {
        var value: UInt64 = 0
        // EAGAIN: nobody woke it since the last reset.
        _ = try? systemCall("read(eventfd)", unless: EAGAIN) { read(self.descriptor, &value, 8) }
    }
}
#endif

#if os(Linux)
/// What a non-blocking `accept` found.
public enum AcceptOutcome: Sendable, Equatable {
    /// A connection, non-blocking and close-on-exec.
    case accepted(Int32)
    /// None is waiting.
    case noneWaiting
    /// One is waiting, but the process (EMFILE) or the system (ENFILE) has
    /// no descriptor left for it.
    case outOfDescriptors
}

/// Accepts a connection on the listening socket `fd`, through
/// `systemCallOutcome` (EINTR retried); the outcomes a listener acts on are
/// returned, any other failure is thrown.
public func acceptNonBlocking(_ fd: Int32) throws(GatewayError) -> AcceptOutcome {
    var outOfDescriptors = false
    let accepted = try systemCallOutcome("accept4", on: "", code: .libraryFailure, nilOn: EAGAIN, EWOULDBLOCK, fileID: #fileID, line: #line) { () -> Int32 in
        let result = cache_gateway_accept_nonblocking(fd)
        // EMFILE and ENFILE are outcomes too: reported as -2, which the helper returns as is.
        if result == -1, errno == EMFILE || errno == ENFILE {
            outOfDescriptors = true
            return -2
        }
        return result
    }
    if outOfDescriptors { return .outOfDescriptors }
    guard let accepted else { return .noneWaiting }
    return .accepted(accepted)
}
#endif
