import Dispatch
import Foundation
import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The client's connection to its gateway: one Unix socket with many requests
/// in flight, driven by the threads of the calls that use it.
///
/// A hit must cost little more than the round trip itself, and on a busy host
/// (or in the benchmark, where everything shares one CPU) every thread hop is a
/// context switch. So there is no event loop between a call and the socket:
///
/// - **Writing.** A call encodes its request frame and writes it on the
///   non-blocking socket from its own thread, under `lock`. Bytes the socket
///   does not take at once wait in `outbox`, which later writes and the
///   background thread flush first, so frames are never reordered or interleaved.
/// - **Reading (leader).** Only one thread reads the socket at a time: the
///   holder of the reader role. A call whose request is written takes the role
///   when it is free and waits in `recv` (sleeping in the kernel, so the
///   gateway can run on the same CPU; the socket's receive timeout,
///   `UnixSocket.receiveSlice`, bounds each wait); it hands the other calls' replies to
///   them and returns its own without any hop. An `async` call holds the role
///   for at most `inlineWait` (`CacheClient.Configuration.maximumInlineWait`,
///   1 ms by default): it then occupies a thread of the cooperative pool for
///   that long at most, which is bounded and short beside the hops it saves,
///   while a slow reply (a slow backend) does not keep the thread. After that
///   it parks, as below. A synchronous call (`cacheSync`), which blocks anyway,
///   reads until its deadline.
/// - **Parking (follower).** A call that finds the role taken, or whose window
///   ended, parks: an `async` call as a continuation, a thread on a semaphore.
///   Whoever reads completes it; when nobody does, the connection's background
///   thread takes the role and reads until no reply is awaited.
/// - **Ordering.** Replies are matched by id, so they may come in any order.
///   A function version's `register` frame is written under the same lock as,
///   and before, the first request that names it on this connection, so the
///   gateway always reads it first whatever the threads do.
/// - **Deadlines.** Every awaited request has one; the reader fails the
///   requests whose deadline passed with `.timeout`, and a reply arriving
///   after that is dropped. Replies to requests nobody awaits (stores,
///   registers) are read and dropped the same way.
/// - **Failure.** The end of the stream, a failed write or an unreadable frame
///   closes the connection: every awaited request fails with the error and
///   `onClose` runs once. The descriptor is shut down at once (waking any
///   reader) and closed when the last reference goes. While no reply is
///   awaited nobody reads, so a gateway that died while the process was idle
///   is noticed by the next call (its write or read fails and it runs
///   uncached); the call after it connects again at once.
/// - **Frames.** Lookups and their replies, the hit path, are written and
///   read by `LookupFrames`; everything else goes through `MessageCodec`.
@usableFromInline
package final class GatewayLink: @unchecked Sendable {
    // @unchecked: every mutable field is guarded by `lock`, except those marked
    // as belonging to the reader role, which only the role's holder touches
    // (the role changes hands under `lock`, which orders those accesses).

    typealias Reply = Result<GatewayMessage, GatewayError>

    /// A thread blocked until its reply arrives.
    private final class BlockedThread: @unchecked Sendable {
        // Written once under the connection's lock before `semaphore` is signalled.
        var reply: Reply?
        let semaphore = DispatchSemaphore(value: 0)
    }

    /// Who waits for a reply, and how.
    private enum Waiter {
        /// The caller reads the socket itself or is about to park.
        case caller
        /// The reply (or the failure) came before the caller parked or looked.
        case arrived(Reply)
        /// A suspended task.
        case task(CheckedContinuation<Reply, Never>)
        /// A blocked thread.
        case thread(BlockedThread)
    }

    private struct Pending {
        var waiter: Waiter
        let deadline: NIODeadline
    }

    /// A waiter to complete once `lock` is released.
    private enum Completion {
        case task(CheckedContinuation<Reply, Never>, Reply)
        case thread(BlockedThread)

        func run() {
            switch self {
            case .task(let continuation, let reply): continuation.resume(returning: reply)
            case .thread(let thread): thread.semaphore.signal()
            }
        }
    }

    let fd: Int32
    /// How long an `async` call may read the socket itself before it parks.
    let inlineWait: TimeAmount
    private let wakeReader: Int32
    private let wakeWriter: Int32

    private let lock = NIOLock()
    // Guarded by `lock`:
    private var nextID: UInt64 = 0
    private let pending = AwaitedRequests<Pending>()
    /// The function versions registered on this connection, by identity
    /// (held, so that an identity is not reused while it is here).
    private var registered: [ObjectIdentifier: CallSite] = [:]
    /// Past this many, `registered` starts afresh (registering again is
    /// harmless: the gateway counts a version once per connection).
    private static let registeredLimit = 4_096
    private var outbox = ByteBuffer()
    private var scratch = ByteBuffer()
    private let encoder: MessageCodec
    private var isReading = false
    /// When the background thread, reading, will next look at the deadlines.
    private var backgroundReadsUntil: NIODeadline?
    private var failure: GatewayError?
    private var onClose: (@Sendable (GatewayLink) -> Void)?
    private var limits = HelloReply(protocolVersion: 0, gatewayVersion: "", maxFrameSize: 0, maxValueSize: 0)

    // The reader role's own:
    private var inbox = ByteBuffer()
    private let decoder: MessageCodec
    private var messages: [GatewayMessage] = []
    private let frames = FrameDecoder(maxFrameSize: Int(UInt32.max))

    /// Connects to the gateway at `socketPath`; the caller says hello next.
    init(socketPath: String, inlineWait: TimeAmount) throws(GatewayError) {
        do {
            self.encoder = try MessageCodec()
            self.decoder = try MessageCodec()
        } catch {
            throw (error as? GatewayError) ?? GatewayError(.libraryFailure, "\(error)")
        }
        self.fd = try UnixSocket.connect(path: socketPath)
        do {
            (self.wakeReader, self.wakeWriter) = try UnixSocket.pair()
        } catch {
            UnixSocket.close(self.fd)
            throw error
        }
        self.inlineWait = inlineWait
        // Assigned whole, not reserved in place (see `readAvailable` for why).
        self.inbox = ByteBufferAllocator().buffer(capacity: Self.readSize)
        self.scratch = ByteBufferAllocator().buffer(capacity: 256)
        // The background reader holds the connection until it closes.
        let thread = Thread { self.background() }
        thread.name = "cache-gateway-client"
        thread.start()
    }

    deinit {
        UnixSocket.close(self.fd)
        UnixSocket.close(self.wakeReader)
        UnixSocket.close(self.wakeWriter)
    }

    /// The bytes read from the socket at a time (more when a frame is larger).
    private static let readSize = 16 * 1024

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
    /// lookup frame is written directly (`LookupFrames`). `mayLead` as in `request`.
    func lookup(
        _ site: CallSite,
        key: CacheKey,
        timeout: TimeAmount,
        mayLead: Bool = true,
        isolation: isolated (any Actor)? = #isolation
    ) async -> Reply {
        await self.exchange(.lookup(site, key), timeout: timeout, mayLead: mayLead, isolation: isolation)
    }

    private func exchange(_ outgoing: Outgoing, timeout: TimeAmount, mayLead: Bool, isolation: isolated (any Actor)?) async -> Reply {
        switch self.sendReadingInline(outgoing, timeout: timeout, mayLead: mayLead) {
        case .done(let reply): return reply
        case .parked(let id): return await self.awaitReply(id, isolation: isolation)
        }
    }

    /// A request to write.
    enum Outgoing {
        /// A lookup of `key` for the call site, framed by `LookupFrames`.
        case lookup(CallSite, CacheKey)
        /// Any other message, framed by `MessageCodec`, after registering
        /// the call site's version when given and not yet registered here.
        case message(GatewayMessage.Body, registering: CallSite?)
    }

    /// How `sendReadingInline` left a request.
    enum Attempt {
        /// The reply, or the failure.
        case done(Reply)
        /// Written and awaited: `awaitReply(_:isolation:)` gets the reply.
        case parked(UInt64)
    }

    /// The synchronous part of `request`: writes the request and, when this
    /// thread may read, reads until the reply comes or `inlineWait` ends. It is
    /// not `async`, so that an `async` caller whose reply comes within the
    /// window makes no `async` call on the way (each one costs a frame and an
    /// executor check, measurable on a hit).
    func sendReadingInline(_ outgoing: Outgoing, timeout: TimeAmount, mayLead: Bool) -> Attempt {
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
    func lookupBlocking(_ site: CallSite, key: CacheKey, timeout: TimeAmount) -> Reply {
        self.exchangeBlocking(.lookup(site, key), timeout: timeout)
    }

    private func exchangeBlocking(_ outgoing: Outgoing, timeout: TimeAmount) -> Reply {
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
        self.wake()
        for completion in closing.completions { completion.run() }
        closing.handler?(self)
    }

    /// Whether the connection has closed.
    var isClosed: Bool { self.lock.withLock { self.failure != nil } }

    /// How many written requests await their reply (for tests).
    var awaitedCount: Int { self.lock.withLock { self.pending.count } }

    // MARK: Writing

    private enum Written {
        case failed(GatewayError)
        /// Written; this caller holds the reader role.
        case reading(UInt64)
        /// Written; park until someone reads the reply.
        case awaiting(UInt64)
    }

    /// Writes the request (and the register before it) and records the waiter,
    /// all under the lock: ids, the registered set and the byte stream change together.
    private func writeRequest(_ outgoing: Outgoing, deadline: NIODeadline?, mayLead: Bool) -> Written {
        let function: CallSite?
        switch outgoing {
        case .lookup(let site, _): function = site
        case .message(_, let site): function = site
        }
        var wakeBackground = false
        let written = self.lock.withLock { () -> Written in
            if let failure = self.failure { return .failed(failure) }
            // Worked on as a local and put back (see `readAvailable` for why).
            var scratch = self.scratch
            self.scratch = ByteBuffer()
            defer { self.scratch = scratch }
            scratch.clear()
            let needsRegister = function.map { !self.isRegistered($0) } ?? false
            self.nextID &+= 1
            if self.nextID == 0 { self.nextID = 1 }  // id 0 is reserved
            var id = self.nextID
            do {
                if needsRegister, let function {
                    try self.encoder.encodeFrame(GatewayMessage(id: id, .register(function.function)), into: &scratch)
                    self.nextID &+= 1
                    id = self.nextID
                }
                switch outgoing {
                case .lookup(let site, let key):
                    LookupFrames.appendLookup(id: id, fields: site.fields, key: key, to: &scratch)
                case .message(let body, _):
                    try self.encoder.encodeFrame(GatewayMessage(id: id, body), into: &scratch)
                }
            } catch {
                return .failed((error as? GatewayError) ?? GatewayError(.unencodable, "\(error)"))
            }
            do throws(GatewayError) {
                try self.writeLocked(&scratch, &wakeBackground)
            } catch {
                // Closed below, outside the lock.
                return .failed(error)
            }
            if needsRegister, let function {
                // Changed as a local and put back (see `readAvailable` for why).
                var registered = self.registered
                self.registered = [:]
                if registered.count >= Self.registeredLimit { registered.removeAll() }
                registered[ObjectIdentifier(function)] = function
                self.registered = registered
            }
            // A large store leaves the scratch buffer large: let it go.
            if scratch.capacity > 64 * 1024 { scratch = ByteBuffer() }
            guard let deadline else { return .awaiting(0) }
            self.pending.insert(id, Pending(waiter: .caller, deadline: deadline))
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
        if wakeBackground { self.wake() }
        return written
    }

    /// Whether `function` was registered on this connection. Under the lock.
    private func isRegistered(_ function: CallSite) -> Bool {
        // Loaded, then looked up: the lookup's hashing is a call, and an
        // access spanning it would be checked at run time (see `readAvailable`).
        // The copy ends here, so a later change of the set does not copy it.
        let registered = self.registered
        return registered[ObjectIdentifier(function)] != nil
    }

    /// Writes `frames` after whatever `outbox` holds; what the socket does not
    /// take waits in `outbox` for the background thread (which `wake` is set to call).
    private func writeLocked(_ frames: inout ByteBuffer, _ wake: inout Bool) throws(GatewayError) {
        if self.outbox.readableBytes > 0 {
            self.outbox.writeBuffer(&frames)
            try self.flushLocked()
            wake = wake || self.outbox.readableBytes > 0
            return
        }
        let sent = try frames.withUnsafeReadableBytes { (bytes) throws(GatewayError) in try UnixSocket.send(self.fd, bytes) }
        frames.moveReaderIndex(forwardBy: sent)
        if frames.readableBytes > 0 {
            self.outbox.writeBuffer(&frames)
            wake = true
        }
    }

    /// Writes what `outbox` holds, as far as the socket takes it.
    private func flushLocked() throws(GatewayError) {
        // Worked on as a local and put back (see `readAvailable` for why).
        var outbox = self.outbox
        self.outbox = ByteBuffer()
        let sent = try outbox.withUnsafeReadableBytes { (bytes) throws(GatewayError) in try UnixSocket.send(self.fd, bytes) }
        outbox.moveReaderIndex(forwardBy: sent)
        // Emptied, it lets its storage go.
        if outbox.readableBytes > 0 { self.outbox = outbox }
    }

    // MARK: Reading

    /// Reads the socket (holding the reader role) until `id`'s reply arrives
    /// or its deadline passes; returns nil, with the role released and the
    /// request still awaited, when `windowEnd` comes first. `startedAt` is
    /// the caller's reading of the clock, taken as the time of the first look.
    private func readUntilReply(_ id: UInt64, deadline: NIODeadline, until windowEnd: NIODeadline, startedAt: NIODeadline) -> Reply? {
        // Until the window ends, or until another request's deadline, to fail it on time.
        var wakeAt = windowEnd
        // Waits inside `recv` (one system call, where `poll` then `recv` would
        // take two, a microsecond or two more per hit). Each wait lasts at most
        // `UnixSocket.receiveSlice`, so `wakeAt` is kept to within that (the
        // granularity of `poll`'s milliseconds).
        var startedAt = Optional(startedAt)
        while true {
            let now = startedAt.take() ?? NIODeadline.now()
            var readError: GatewayError?
            if now < wakeAt {
                readError = self.readAvailable(waiting: true).error
            }
            // Fails every awaited request, this one too (it is then `.arrived`).
            if let readError { self.close(readError) }
            var wakeBackground = false
            var completions: [Completion] = []
            let outcome = self.lock.withLock { () -> Reply?? in
                if readError == nil, self.pending.count == 1, self.messages.count == 1, self.messages[0].id == id {
                    // The usual case, a caller alone on the connection: its
                    // reply is all that came and nobody else awaits one, so
                    // there is nothing to hand over and no other deadline.
                    self.pending.removeValue(forKey: id)
                    self.isReading = false
                    return .some(.success(self.messages.removeLast()))
                }
                let after = NIODeadline.now()
                if readError == nil {
                    completions = self.dispatchLocked(now: after)
                }
                guard let entry = self.pending[id] else {
                    // Not possible while this thread reads; kept for safety.
                    self.isReading = false
                    return .some(.failure(self.failure ?? GatewayError(.connectionClosed, "the connection closed")))
                }
                if case .arrived(let reply) = entry.waiter {
                    self.pending.removeValue(forKey: id)
                    self.isReading = false
                    wakeBackground = !self.pending.isEmpty && self.failure == nil
                    return .some(reply)
                }
                if after >= windowEnd {
                    // The request stays awaited; the background thread reads for it.
                    self.isReading = false
                    wakeBackground = true
                    return .some(nil)
                }
                wakeAt = windowEnd
                self.pending.forEach { _, entry in
                    if entry.deadline < wakeAt { wakeAt = entry.deadline }
                }
                return nil
            }
            if wakeBackground { self.wake() }
            for completion in completions { completion.run() }
            if let outcome { return outcome }
        }
    }

    /// Installs `waiter` for `id`'s reply, unless the reply (or the
    /// connection's failure) is already there: then that is returned and
    /// nothing waits.
    private func installWaiter(_ id: UInt64, as waiter: Waiter) -> Reply? {
        self.lock.withLock { () -> Reply? in
            guard let entry = self.pending[id] else {
                return .failure(self.failure ?? GatewayError(.connectionClosed, "the connection closed"))
            }
            if case .arrived(let reply) = entry.waiter {
                self.pending.removeValue(forKey: id)
                return reply
            }
            self.pending.update(id) { $0.waiter = waiter }
            return nil
        }
    }

    /// Suspends until the reply of `id` (from `sendReadingInline`) is handed over, or fails.
    func awaitReply(_ id: UInt64, isolation: isolated (any Actor)? = #isolation) async -> Reply {
        await withCheckedContinuation(isolation: isolation) { (continuation: CheckedContinuation<Reply, Never>) in
            if let early = self.installWaiter(id, as: .task(continuation)) { continuation.resume(returning: early) }
        }
    }

    /// Blocks the thread until `id`'s reply is handed over (or fails).
    private func blockUntilReply(_ id: UInt64) -> Reply {
        let thread = BlockedThread()
        if let early = self.installWaiter(id, as: .thread(thread)) { return early }
        // The reader fails the request at its deadline; the semaphore is signalled either way.
        thread.semaphore.wait()
        return thread.reply ?? .failure(GatewayError(.connectionClosed, "a blocked request was woken without a reply"))
    }

    /// Reads what has arrived (with `waiting`, first waiting up to
    /// `UnixSocket.receiveSlice` for it) and decodes the complete frames into
    /// `messages`; returns whether anything arrived and the error that ends
    /// the connection, if any. Reader role only.
    private func readAvailable(waiting: Bool = false) -> (received: Bool, error: GatewayError?) {
        // The buffer is worked on as a local and put back at the end, so that
        // no access to the stored property spans a call (here, the receive and
        // the frame decoder). One that did would make the compiler check every
        // access to the property at run time (exclusivity enforcement, a
        // thread-local lookup each time); in a profile of the synchronous
        // hit loop, such checks were 8% of the client's own time.
        var inbox = self.inbox
        self.inbox = ByteBuffer()
        defer { self.inbox = inbox }
        var messages = self.messages
        self.messages = []
        defer { self.messages = messages }
        if inbox.readableBytes == 0 {
            // Reuses the storage, unless a reply handed out earlier still
            // refers to it (then it takes a fresh one; nothing is copied).
            inbox.clear()
        }
        var receivedAny = false
        do {
            var more = true
            // Only the first receive may wait; the rest take what is there.
            var wait = waiting
            while more {
                let received = try inbox.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readSize) { (buffer) throws(GatewayError) in
                    try UnixSocket.receive(self.fd, into: buffer, waiting: wait) ?? 0
                }
                wait = false
                receivedAny = receivedAny || received > 0
                // A full buffer may mean that more is waiting.
                more = received > 0 && inbox.writableBytes == 0
                while let payload = try self.frames.readPayload(from: &inbox) {
                    messages.append(try LookupFrames.lookupReply(payload) ?? self.decoder.decode(payload: payload))
                }
            }
            if inbox.readableBytes > 0 && inbox.readerIndex > Self.readSize {
                inbox.discardReadBytes()
            }
            return (receivedAny, nil)
        } catch let error as GatewayError {
            return (receivedAny, error)
        } catch {
            return (receivedAny, GatewayError(.malformedMessage, "the gateway sent an unreadable frame: \(error)"))
        }
    }

    /// Hands the decoded `messages` to their waiters and fails the requests
    /// whose deadline passed. Reader role only, under the lock.
    private func dispatchLocked(now: NIODeadline) -> [Completion] {
        var completions: [Completion] = []
        for message in self.messages {
            if message.id == 0, case .error(let error) = message.body {
                // A connection-level error (frameTooLarge): the gateway closes next.
                completions += self.completeAllLocked(.failure(GatewayError(.remote, error.message, wireCode: error.code)))
                continue
            }
            guard let entry = self.pending[message.id] else { continue }  // not awaited, or given up
            if let completion = self.completeLocked(message.id, entry, .success(message)) {
                completions.append(completion)
            }
        }
        self.messages.removeAll(keepingCapacity: true)
        let expired = self.pending.ids { entry in
            if case .arrived = entry.waiter { return false }
            return entry.deadline <= now
        }
        for id in expired {
            guard let entry = self.pending[id] else { continue }
            if let completion = self.completeLocked(id, entry, .failure(GatewayError(.timeout, "no reply to request \(id) in time"))) {
                completions.append(completion)
            }
        }
        return completions
    }

    /// Completes one awaited request; returns what to run once the lock is released.
    private func completeLocked(_ id: UInt64, _ entry: Pending, _ reply: Reply) -> Completion? {
        switch entry.waiter {
        case .caller:
            self.pending.update(id) { $0.waiter = .arrived(reply) }
            return nil
        case .arrived:
            return nil
        case .task(let continuation):
            self.pending.removeValue(forKey: id)
            return .task(continuation, reply)
        case .thread(let thread):
            self.pending.removeValue(forKey: id)
            thread.reply = reply
            return .thread(thread)
        }
    }

    private func completeAllLocked(_ reply: Reply) -> [Completion] {
        var completions: [Completion] = []
        for id in self.pending.ids(where: { _ in true }) {
            guard let entry = self.pending[id] else { continue }
            if let completion = self.completeLocked(id, entry, reply) { completions.append(completion) }
        }
        return completions
    }

    /// Marks the connection failed and fails every awaited request.
    private func failLocked(_ error: GatewayError) -> [Completion] {
        if self.failure == nil { self.failure = error }
        self.outbox = ByteBuffer()
        return self.completeAllLocked(.failure(error))
    }

    // MARK: Background reader

    /// Wakes the background thread (to read, to flush, or to end).
    private func wake() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? UnixSocket.send(self.wakeWriter, $0) }
    }

    /// The background thread: reads while replies are awaited and nobody else
    /// reads, flushes `outbox`, and ends when the connection closes.
    private func background() {
        var pollers = [
            pollfd(fd: self.fd, events: 0, revents: 0),
            pollfd(fd: self.wakeReader, events: Int16(POLLIN), revents: 0),
        ]
        var drain = [UInt8](repeating: 0, count: 64)
        while true {
            let now = NIODeadline.now()
            let (reading, writing, timeout, closed) = self.lock.withLock { () -> (Bool, Bool, Int32, Bool) in
                if self.failure != nil { return (false, false, 0, true) }
                var earliest: NIODeadline?
                if !self.isReading {
                    // Replies that arrived and wait for their caller need no reading.
                    self.pending.forEach { _, entry in
                        if case .arrived = entry.waiter { return }
                        earliest = min(earliest ?? entry.deadline, entry.deadline)
                    }
                }
                if earliest != nil { self.isReading = true }
                self.backgroundReadsUntil = earliest
                let timeout = earliest.map { $0 > now ? Self.milliseconds($0 - now) : 0 } ?? -1
                return (earliest != nil, self.outbox.readableBytes > 0, timeout, false)
            }
            if closed { return }
            // The socket is watched only for what this thread does with it: a
            // socket left readable while another thread reads would wake it in a loop.
            pollers[0].fd = reading || writing ? self.fd : -1
            pollers[0].events = (reading ? Int16(POLLIN) : 0) | (writing ? Int16(POLLOUT) : 0)
            pollers[0].revents = 0
            pollers[1].revents = 0
            pollers.withUnsafeMutableBufferPointer { UnixSocket.poll($0, milliseconds: timeout) }
            if pollers[1].revents != 0 {
                drain.withUnsafeMutableBytes { while (try? UnixSocket.receive(self.wakeReader, into: $0)) ?? nil != nil {} }
            }
            var failed: GatewayError?
            if writing && pollers[0].revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                failed = self.lock.withLock { () -> GatewayError? in
                    do throws(GatewayError) {
                        try self.flushLocked()
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            if reading && failed == nil && pollers[0].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                failed = self.readAvailable().error
            }
            if let failed { self.close(failed) }
            guard reading else { continue }
            let after = NIODeadline.now()
            let completions = self.lock.withLock { () -> [Completion] in
                self.isReading = false
                self.backgroundReadsUntil = nil
                return failed == nil ? self.dispatchLocked(now: after) : []
            }
            for completion in completions { completion.run() }
        }
    }

    /// `amount` as a poll timeout, rounded up so that a wait never ends early;
    /// zero for a negative amount, `Int32.max` (about 25 days, after which the
    /// background thread looks again) for a longer one.
    static func milliseconds(_ amount: TimeAmount) -> Int32 {
        let nanoseconds = max(0, amount.nanoseconds)
        let (whole, fraction) = nanoseconds.quotientAndRemainder(dividingBy: 1_000_000)
        return Int32(clamping: whole + (fraction > 0 ? 1 : 0))
    }
}

extension Optional {
    /// The value, leaving nil behind.
    fileprivate mutating func take() -> Wrapped? {
        defer { self = nil }
        return self
    }
}
