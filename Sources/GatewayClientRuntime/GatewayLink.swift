import Foundation
import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore

/// The client's connection to its gateway: one Unix socket with many requests
/// in flight, driven by the threads of the calls that use it.
///
/// A hit must cost little more than the round trip itself, and on a busy host
/// (or in the benchmark, where everything shares one CPU) every thread hop is a
/// context switch. So there is no event loop between a call and the socket:
///
/// - **Writing** (`FrameWriter`). A call encodes its request frame and writes
///   it on the non-blocking socket from its own thread, under `lock`. Bytes
///   the socket does not take at once wait in the writer's outbox, which later
///   writes and the background thread flush first, so frames are never
///   reordered or interleaved.
/// - **Reading (leader)** (GatewayLink+InlineRead.swift, `FrameReader`). Only
///   one thread reads the socket at a time: the holder of the reader role. A
///   call whose request is written takes the role when it is free and waits
///   in `recv` (sleeping in the kernel, so the gateway can run on the same
///   CPU; the socket's receive timeout, `UnixSocket.receiveSlice`, bounds each
///   wait); it hands the other calls' replies to them and returns its own
///   without any hop. An `async` call holds the role for at most `inlineWait`
///   (`CacheClient.Configuration.maximumInlineWait`, 1 ms by default): it then
///   occupies a thread of the cooperative pool for that long at most, which is
///   bounded and short beside the hops it saves, while a slow reply (a slow
///   backend) does not keep the thread. After that it parks, as below. A
///   synchronous call (`cacheSync`), which blocks anyway, reads until its deadline.
/// - **Parking (follower)** (`RequestTable`). A call that finds the role
///   taken, or whose window ended, parks: an `async` call as a continuation, a
///   thread on a semaphore. Whoever reads completes it; when nobody does, the
///   connection's background thread (GatewayLink+BackgroundReader.swift) takes
///   the role and reads until no reply is awaited.
/// - **Ordering.** Replies are matched by id, so they may come in any order.
///   A function version's `register` frame is written under the same lock as,
///   and before, the first request that names it on this connection, so the
///   gateway always reads it first whatever the threads do.
/// - **Deadlines.** Every awaited request has one; the reader fails the
///   requests whose deadline passed with `.timeout`, and a reply arriving
///   after that is dropped. Replies to requests nobody awaits (stores,
///   registers) are read and dropped the same way.
/// - **Failure.** The end of the stream, a failed write or an unreadable frame
///   closes the connection: `onClose` runs once, then every awaited request
///   fails with the error. The descriptor is shut down at once (waking any
///   reader) and closed when the last reference goes. While no reply is
///   awaited nobody reads, so a gateway that died while the process was idle
///   is noticed by the next call (its write or read fails and it runs
///   uncached); the call after it connects again at once.
/// - **Frames.** Lookups and their replies, the hit path, are written and
///   read by `LookupFrames`; everything else goes through `MessageCodec`.
@usableFromInline
package final class GatewayLink: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`, except `reader`,
    // which only the reader role's holder touches (the role changes hands
    // under `lock`, which orders those accesses).

    /// A request's reply, or why there is none.
    typealias Reply = GatewayReply

    /// The socket connected to the gateway.
    let fd: Int32
    /// How long an `async` call may read the socket itself before it parks.
    let inlineWait: TimeAmount
    /// Wakes the background thread.
    let wakePipe: WakePipe

    /// Guards what follows (up to `reader`) and hands the reader role over.
    let lock = NIOLock()
    /// Writes the requests.
    let writer: FrameWriter
    /// The awaited requests.
    let pending = RequestTable()
    /// Whether a thread holds the reader role.
    var isReading = false
    /// When the background thread, reading, will next look at the deadlines.
    var backgroundReadsUntil: NIODeadline?
    /// Why the connection closed, once it has.
    var failure: GatewayError?
    private var onClose: (@Sendable (GatewayLink) -> Void)?
    private var limits = HelloReply(protocolVersion: 0, gatewayVersion: "", maxFrameSize: 0, maxValueSize: 0)

    /// Reads and decodes the replies: the reader role's own, not guarded by `lock`.
    let reader: FrameReader

    /// Connects to the gateway at `socketPath`; the caller says hello next.
    init(socketPath: String, inlineWait: TimeAmount) throws(GatewayError) {
        self.writer = try FrameWriter()
        self.reader = try FrameReader()
        self.fd = try UnixSocket.connect(path: socketPath)
        do {
            self.wakePipe = try WakePipe()
        } catch {
            UnixSocket.close(self.fd)
            throw error
        }
        self.inlineWait = inlineWait
        // The background reader holds the connection until it closes.
        let thread = Thread { self.runBackgroundReader() }
        thread.name = "cache-gateway-client"
        thread.start()
    }

    deinit {
        UnixSocket.close(self.fd)
        self.wakePipe.close()
    }

    /// What the gateway said in its hello reply (set by `CacheClient` after the handshake).
    var hello: HelloReply {
        get { self.lock.withLock { self.limits } }
        set { self.lock.withLock { self.limits = newValue } }
    }

    /// Runs `handler` once when the connection closes (at once if it has).
    func whenClosed(_ handler: @escaping @Sendable (GatewayLink) -> Void) {
        let closed = self.lock.withLock { () -> Bool in
            guard self.failure == nil else { return true }
            self.onClose = handler
            return false
        }
        if closed { handler(self) }
    }

    // MARK: Requests

    /// Sends `body`, after registering `function` if this connection has not,
    /// and waits for the reply until `timeout`.
    ///
    /// `mayLead` false makes the call park at once (it must not block its
    /// thread: an event loop, or `inlineWait` is zero).
    func request(
        _ body: GatewayMessage.Body,
        registering function: CallSite? = nil,
        timeout: TimeAmount,
        mayLead: Bool = true,
        isolation: isolated (any Actor)? = #isolation
    ) async -> Reply {
        await self.exchange(.message(body, registering: function), timeout: timeout, mayLead: mayLead, isolation: isolation)
    }

    /// Looks `key` up for `site` (registering its version first if this
    /// connection has not) and waits for the reply until `timeout`; the
    /// lookup frame is written directly (`LookupFrames`). `refresh`
    /// announces that the caller can refresh the entry (status 4). `mayLead`
    /// as in `request`.
    func lookup(
        _ site: CallSite,
        key: CacheKey,
        refresh: Bool = false,
        timeout: TimeAmount,
        mayLead: Bool = true,
        isolation: isolated (any Actor)? = #isolation
    ) async -> Reply {
        await self.exchange(.lookup(site, key, refresh: refresh), timeout: timeout, mayLead: mayLead, isolation: isolation)
    }

    private func exchange(_ outgoing: FrameWriter.Outgoing, timeout: TimeAmount, mayLead: Bool, isolation: isolated (any Actor)?) async -> Reply {
        switch self.sendReadingInline(outgoing, timeout: timeout, mayLead: mayLead) {
        case .done(let reply): return reply
        case .parked(let id): return await self.awaitReply(id, isolation: isolation)
        }
    }

    /// How `sendReadingInline` left a request.
    enum Attempt {
        /// The reply, or the failure.
        case done(Reply)
        /// Written and awaited: `awaitReply(_:isolation:)` gets the reply.
        case parked(UInt64)
    }

    /// The synchronous part of `request` and `lookup`: writes the request
    /// and, when this thread may read, reads until the reply comes or
    /// `inlineWait` ends. It is not `async`, so that an `async` caller whose
    /// reply comes within the window makes no `async` call on the way (each
    /// one costs a frame and an executor check, measurable on a hit).
    func sendReadingInline(_ outgoing: FrameWriter.Outgoing, timeout: TimeAmount, mayLead: Bool) -> Attempt {
        // One reading of the clock for the deadline, the window and the first
        // look at them: the write in between usually takes microseconds, and
        // each reading costs tens of nanoseconds on a hit (more when its code
        // is cold, as after the gateway ran on the same CPU). Should the write
        // wait long for the lock, the stale first look delays noticing the
        // window's end by one receive slice at most.
        let now = NIODeadline.now()
        let deadline = now + timeout
        switch self.writeRequest(outgoing, deadline: deadline, mayLead: mayLead && self.inlineWait > .zero) {
        case .failed(let error):
            return .done(.failure(error))
        case .reading(let id):
            if let reply = self.readUntilReply(id, deadline: deadline, until: min(deadline, now + self.inlineWait), startedAt: now) {
                return .done(reply)
            }
            return .parked(id)
        case .awaiting(let id):
            return .parked(id)
        }
    }

    /// `request`, blocking the calling thread until the reply or the deadline.
    func requestBlocking(_ body: GatewayMessage.Body, registering function: CallSite? = nil, timeout: TimeAmount) -> Reply {
        self.exchangeBlocking(.message(body, registering: function), timeout: timeout)
    }

    /// `lookup`, blocking the calling thread until the reply or the deadline.
    func lookupBlocking(_ site: CallSite, key: CacheKey, refresh: Bool = false, timeout: TimeAmount) -> Reply {
        self.exchangeBlocking(.lookup(site, key, refresh: refresh), timeout: timeout)
    }

    private func exchangeBlocking(_ outgoing: FrameWriter.Outgoing, timeout: TimeAmount) -> Reply {
        let now = NIODeadline.now()  // once, as in `sendReadingInline`
        let deadline = now + timeout
        switch self.writeRequest(outgoing, deadline: deadline, mayLead: true) {
        case .failed(let error):
            return .failure(error)
        case .reading(let id):
            // Until the deadline, so `readUntilReply` returns a reply.
            return self.readUntilReply(id, deadline: deadline, until: deadline, startedAt: now) ?? .failure(GatewayError(.timeout, "no reply within \(timeout)"))
        case .awaiting(let id):
            return self.blockUntilReply(id)
        }
    }

    /// Sends `body` without awaiting its reply (the reader drops it).
    func send(_ body: GatewayMessage.Body, registering function: CallSite? = nil) {
        _ = self.writeRequest(.message(body, registering: function), deadline: nil, mayLead: false)
    }

    /// Closes the connection; awaited requests fail with `error`. Only the
    /// first call does anything.
    func close(_ error: GatewayError = GatewayError(.connectionClosed, "the client closed the connection")) {
        let closing = self.lock.withLock { () -> (completions: [Completion], handler: (@Sendable (GatewayLink) -> Void)?)? in
            guard self.failure == nil else { return nil }
            return (self.failLocked(error), self.onClose.take())
        }
        guard let closing else { return }
        UnixSocket.shutdown(self.fd)
        self.wakePipe.wake()
        // The handler first: by the time a caller learns that its request
        // failed, the client has let go of this connection, so its next call
        // connects anew instead of finding this one.
        closing.handler?(self)
        for completion in closing.completions { completion.run() }
    }

    /// Whether the connection has closed.
    var isClosed: Bool { self.lock.withLock { self.failure != nil } }

    /// How many written requests await their reply (for tests).
    var awaitedCount: Int { self.lock.withLock { self.pending.count } }

    /// Marks the connection failed and fails every awaited request. Under the lock.
    private func failLocked(_ error: GatewayError) -> [Completion] {
        if self.failure == nil { self.failure = error }
        self.writer.discardPendingBytes()
        return self.pending.completeAll(.failure(error))
    }

    // MARK: Writing

    /// Where `writeRequest` left a request.
    private enum Written {
        /// Not written (or not completely): the encoder's or the socket's error.
        case failed(GatewayError)
        /// Written; this caller holds the reader role.
        case reading(UInt64)
        /// Written; park until someone reads the reply.
        case awaiting(UInt64)
    }

    /// Writes the request (`FrameWriter`) and records its waiter (with a
    /// `deadline`; none for a request whose reply nobody awaits), all under
    /// the lock; with `mayLead`, takes the reader role when it is free.
    private func writeRequest(_ outgoing: FrameWriter.Outgoing, deadline: NIODeadline?, mayLead: Bool) -> Written {
        var wakeBackground = false
        let written = self.lock.withLock { () -> Written in
            if let failure = self.failure { return .failed(failure) }
            let id: UInt64
            do throws(GatewayError) {
                let result = try self.writer.write(outgoing, to: self.fd)
                id = result.id
                // The background thread flushes what the socket did not take.
                wakeBackground = result.leftBytes
            } catch {
                // A failed write is closed below, outside the lock.
                return .failed(error)
            }
            guard let deadline else { return .awaiting(0) }
            self.pending.insert(id, PendingRequest(waiter: .caller, deadline: deadline))
            if mayLead && !self.isReading {
                self.isReading = true
                return .reading(id)
            }
            // Someone must read for it: the background thread, unless a reader
            // is at work and will look at the deadlines before this one.
            let backgroundReadsUntil = self.backgroundReadsUntil  // read before `map` runs its closure
            wakeBackground = wakeBackground || !self.isReading || backgroundReadsUntil.map { deadline < $0 } ?? false
            return .awaiting(id)
        }
        if case .failed(let error) = written, error.code == .connectionClosed {
            self.close(error)
        }
        if wakeBackground { self.wakePipe.wake() }
        return written
    }
}

extension Optional {
    /// The value, leaving nil behind.
    mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
