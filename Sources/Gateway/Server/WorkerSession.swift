import GatewayProtocol
import Logging
import NIOCore

/// One worker connection's requests, from the frames its peer sent to the
/// replies it gets: the connection's policy and bookkeeping, with no I/O of
/// its own. Its `WorkerTransport` reads and writes (`ConnectionHandler` on
/// SwiftNIO); everything runs on the transport's event loop.
///
/// Each request is decoded, handed to the store, and answered when the
/// store's future completes: requests run concurrently and replies go out in
/// completion order, each carrying its request's id. Replies produced while a
/// read burst is being processed are flushed once, at `readComplete`, so a
/// pipelined burst costs one write system call. An in-memory hit never leaves
/// this event loop. Its stored properties skip the runtime's exclusivity
/// checks, as `IOLoop` explains (on SwiftNIO's loops the same rule holds).
final class WorkerSession {
    /// The connection under this session.
    private let transport: any WorkerTransport
    private let shared: ServerContext
    /// The namespace of this connection's entries, decided when it was accepted.
    private let namespace: String
    /// The peer's credentials, when they could be read.
    private let peer: PeerCredentials?
    /// Why this connection's peer is refused (see `refuse`); nil when it is served.
    private let refusal: String?
    /// Whether the refused peer has been told (it is told once, then disconnected).
    @exclusivity(unchecked) private var refusalSent = false
    /// The timer that tells a refused peer that sends nothing.
    @exclusivity(unchecked) private var refusalDeadline: Scheduled<Void>?
    private let codec: MessageCodec
    private let connectionID: UInt64
    /// The versions this connection registered (so the registry hears of each once).
    @exclusivity(unchecked) private var registered: Set<FunctionVersion> = []
    /// The counters of the functions this connection looked up (see `counters(for:)`).
    @exclusivity(unchecked) private var functionCounters: [String: FunctionCountersHandle] = [:]
    /// The function this connection's last lookup named, kept so that the
    /// next lookup of it builds no strings (see `LookupFrames.lookupRequest(_:memo:)`).
    @exclusivity(unchecked) private var lookupMemo = LookupFunctionMemo()
    /// The counters of `lookupMemo`'s function, and the memo generation they are for.
    @exclusivity(unchecked) private var memoCounters: (generation: UInt64, handle: FunctionCountersHandle)?
    @exclusivity(unchecked) private var logger: Logger
    @exclusivity(unchecked) private var greeted = false
    /// How long this connection's client waits for a held lookup, from its
    /// hello; 0 when it did not announce support (it is then never held).
    @exclusivity(unchecked) private var holdMilliseconds: UInt64 = 0
    @exclusivity(unchecked) private var inFlight = 0
    @exclusivity(unchecked) private var inReadBurst = false
    @exclusivity(unchecked) private var needsFlush = false
    /// The storage of the last reply, reused by the next (`takeReplyBuffer`).
    @exclusivity(unchecked) private var replyBuffer: ByteBuffer?
    /// Replies larger than this do not keep their storage for the next.
    static let keptReplyCapacity = 16 * 1024
    @exclusivity(unchecked) private var drainCheck: Scheduled<Void>?
    /// Requests read while they could not be served (the peer was not taking
    /// its replies, or the in-flight limit was reached), waiting their turn:
    /// at most what one read delivered, since reading stops meanwhile.
    @exclusivity(unchecked) private var backlog = CircularBuffer<ByteBuffer>()
    /// When the gateway told this connection to drain (see `drainWindowEnd`).
    @exclusivity(unchecked) private var drainRequested: NIODeadline?
    /// While draining: the read count (`ReadingState.reads`) last seen, and
    /// when the read it counts started; nil until a read since `drainRequested`.
    @exclusivity(unchecked) private var drainRead: (count: UInt64, startedAt: NIODeadline?) = (0, nil)
    /// The first read since `drainRequested` that found the socket empty.
    @exclusivity(unchecked) private var drainEmptied: NIODeadline?
    /// Whether this session has stopped reading; shared with the `FrameReader`
    /// in front of it, whose frame deadline does not run meanwhile.
    private let reading: ReadingState

    /// A session for the connection `connectionID`, served as `access` decided;
    /// `reading` is shared with the transport's frame reader.
    init(context: ServerContext, connectionID: UInt64, access: ConnectionAccess, reading: ReadingState, codec: MessageCodec, transport: any WorkerTransport) {
        self.shared = context
        self.transport = transport
        self.reading = reading
        self.namespace = access.namespace
        self.peer = access.peer
        self.refusal = access.refusal
        self.codec = codec
        self.connectionID = connectionID
        self.logger = context.logger
        self.logger[metadataKey: "connection"] = "\(connectionID)"
        if let peer = access.peer { self.logger[metadataKey: "peer"] = "\(peer)" }
    }

    /// The connection is up.
    func activate() {
        self.shared.statistics.increment(.connections)
        self.shared.statistics.increment(.connectionsAccepted)
        self.shared.metrics.connectionOpened()
        if let refusal = self.refusal {
            self.shared.statistics.increment(.connectionsDenied)
            let peer = self.peer.map { "\($0)" } ?? "a peer of unknown credentials"
            self.shared.deniedLog.log("access-denied", "refused a connection from \(peer): \(refusal)")
            // A refused peer that sends no request is told at the frame timeout.
            let loopBound = NIOLoopBound(self, eventLoop: self.transport.eventLoop)
            self.refusalDeadline = self.transport.eventLoop.scheduleTask(in: self.shared.configuration.frameTimeout) {
                loopBound.value.refuse(id: 0)
            }
        }
        if self.shared.drain.isDraining { self.startDraining() }
    }

    /// The connection is gone.
    func deactivate() {
        self.shared.statistics.decrement(.connections)
        self.shared.metrics.connectionClosed()
        self.drainCheck?.cancel()
        if !self.registered.isEmpty { self.shared.registry?.connectionClosed(self.connectionID) }
        self.shared.fills?.connectionClosed(self.connectionID)
        self.refusalDeadline?.cancel()
    }

    /// A frame's payload arrived.
    func receive(_ payload: ByteBuffer) {
        if self.refusal != nil {
            self.refuse(id: GatewayMessage.requestID(inPayload: payload) ?? 0)
            return
        }
        self.inReadBurst = true
        if self.drainRequested != nil { self.noteDrainRead() }
        guard self.backlog.isEmpty, self.mayServe() else {
            self.holdBack(payload)
            return
        }
        self.process(payload)
    }

    /// Whether a request read now may be served at once: the peer takes its
    /// replies (the transport is writable) and fewer than the in-flight limit
    /// wait on the store.
    private func mayServe() -> Bool {
        self.transport.isWritable && self.inFlight < self.shared.configuration.maxInFlightPerConnection
    }

    /// Keeps a request that cannot be served yet, and stops reading until the
    /// held requests have been served (see `serveHeldBack`). Nothing is
    /// dropped: a peer that pipelines faster than it reads, or faster than the
    /// store answers, is slowed down instead of refused.
    private func holdBack(_ payload: ByteBuffer) {
        self.backlog.append(payload)
        guard !self.reading.isPaused else { return }
        self.reading.pause()
        self.transport.pauseReading()
    }

    /// Serves held-back requests as one burst with one flush while they may
    /// be served, then reads again once none is left.
    private func serveHeldBack() {
        guard !self.backlog.isEmpty || self.reading.isPaused else { return }
        let wasInBurst = self.inReadBurst
        self.inReadBurst = true
        while self.mayServe(), let payload = self.backlog.popFirst() {
            self.process(payload)
        }
        self.inReadBurst = wasInBurst
        if !wasInBurst, self.needsFlush {
            self.needsFlush = false
            self.transport.flush()
        }
        if self.backlog.isEmpty, self.reading.isPaused, self.mayServe(), self.transport.isActive {
            self.reading.resume(at: self.transport.eventLoop.now)
            self.transport.resumeReading()
            self.closeIfDrained()
        }
    }

    private func process(_ payload: ByteBuffer) {
        self.shared.statistics.increment(.requests)
        // A lookup in the usual shape is read by hand (the hit path); anything
        // else, or anything unusual about a lookup, goes to the codec.
        if let (id, key) = LookupFrames.lookupRequest(payload, memo: &self.lookupMemo), let function = self.lookupMemo.function {
            self.shared.metrics.recordRequest(.lookup)
            guard self.admit(id: id) else { return }
            self.lookup(id: id, function: function, key: key, hold: 0, refresh: false, counters: self.memoCounters(for: function.function))
            return
        }
        let message: GatewayMessage
        do {
            message = try self.codec.decodeRequest(payload: payload)
        } catch let error as GatewayError {
            self.shared.metrics.recordRequest(nil)
            let id = GatewayMessage.requestID(inPayload: payload) ?? 0
            self.fail(id: id, error)
            return
        } catch {
            self.shared.metrics.recordRequest(nil)
            self.fail(id: 0, GatewayError(.malformedMessage, "\(error)"))
            return
        }
        self.handle(message)
    }

    /// The frames of one read have all been received.
    func readComplete() {
        self.inReadBurst = false
        if self.needsFlush {
            self.needsFlush = false
            self.transport.flush()
        }
    }

    /// The transport failed: `error` is a `GatewayError` when the peer broke
    /// the framing, anything else when the socket failed.
    func transportFailed(_ error: any Error) {
        // Anything but our own framing errors comes from the socket: the peer
        // reset or closed the connection (a worker that exits with replies
        // unread does). That is a disconnect, not a protocol error: counted
        // and logged as one, with nobody left to answer.
        guard let gatewayError = error as? GatewayError else {
            self.logger.debug("peer disconnected: \(error)")
            self.shared.statistics.increment(.disconnects)
            self.transport.close()
            return
        }
        // A framing error (from `FrameReader`): the stream cannot be trusted
        // any more, so say why and close.
        self.logger.notice("closing connection: \(gatewayError.message)", metadata: ["code": "\(gatewayError.wireCode)"])
        self.shared.statistics.increment(.errors)
        self.shared.metrics.recordError(gatewayError.wireCode)
        let reply = GatewayMessage(id: 0, .error(ErrorReply(gatewayError)))
        if let frame = try? reply.encodedFrame() {
            self.transport.writeAndFlush(frame)
        }
        self.transport.close()
    }

    /// Backpressure: a peer that sends requests but does not read the replies
    /// would make NIO queue replies without bound (a 4 MiB hit per 50-byte
    /// lookup). While the outbound buffer is above its high-water mark the
    /// connection stops reading and holds back the requests it has already
    /// read (see `holdBack`); it goes on once the peer has caught up.
    func writabilityChanged() {
        if self.transport.isWritable {
            self.serveHeldBack()
        }
    }


    // MARK: Requests

    private func handle(_ message: GatewayMessage) {
        let id = message.id
        self.shared.metrics.recordRequest(message.body.type)
        guard message.body.type.isRequest else {
            self.fail(id: id, GatewayError(.unknownMessageType, "message type \(message.body.type) is a reply, not a request"))
            return
        }
        if case .hello(let hello) = message.body {
            self.hello(id: id, hello)
            return
        }
        guard self.admit(id: id) else { return }
        let namespace = self.namespace
        let loop = self.transport.eventLoop
        switch message.body {
        case .ping:
            self.reply(GatewayMessage(id: id, .pong))
        case .lookup(let lookup):
            self.lookup(id: id, function: lookup.function, key: lookup.key, hold: lookup.holdMilliseconds, refresh: lookup.refresh, counters: self.counters(for: lookup.function.function))
        case .store(let store):
            guard store.value.readableBytes <= self.shared.configuration.maxValueSize else {
                self.fail(id: id, GatewayError(.valueTooLarge, "the value has \(store.value.readableBytes) bytes; the limit is \(self.shared.configuration.maxValueSize)"))
                return
            }
            // A store registers its version too, so that every version with
            // entries is in the registry, whatever order a client's frames take.
            self.register(store.function, namespace: namespace)
            let key = StorageKey(namespace: namespace, function: store.function, key: store.key)
            let entry = StoreEntry(
                value: store.value,
                ttl: .milliseconds(Int64(store.ttlMilliseconds)),
                computeMicroseconds: store.computeMicroseconds
            )
            let metrics = self.shared.metrics
            let functionMetrics = metrics.function(store.function.function)
            let fills = self.shared.fills
            // Lookups held for this entry get the value now, whatever the backend makes of it.
            fills?.stored(key, value: store.value, computeMicroseconds: store.computeMicroseconds)
            self.track(self.shared.store.store(key, entry: entry, on: loop), id: id) { stored, statistics in
                fills?.storeFinished(key)
                statistics.increment(stored ? .stores : .droppedStores)
                metrics.recordStore(functionMetrics, stored: stored)
                return .storeReply(stored: stored)
            }
        case .register(let function):
            // Acknowledged at once: the lease is taken in the background (the
            // registry's work never delays this connection's requests).
            self.register(function, namespace: namespace)
            self.reply(GatewayMessage(id: id, .registerReply))
        case .functions:
            guard let registry = self.shared.registry else {
                self.reply(GatewayMessage(id: id, .functionsReply([])))
                return
            }
            let promise = loop.makePromise(of: [FunctionInfo].self)
            promise.completeWithTask { try await registry.functions(namespace: namespace) }
            self.track(promise.futureResult, id: id) { functions, _ in .functionsReply(functions) }
        case .invalidate(let invalidate):
            let future = self.shared.store.invalidate(
                namespace: namespace,
                function: invalidate.function,
                version: invalidate.version,
                key: invalidate.key,
                on: loop
            )
            let metrics = self.shared.metrics
            self.track(future, id: id) { deleted, _ in
                metrics.recordPurge(function: invalidate.function, deleted: deleted)
                return .invalidateReply(deleted: deleted)
            }
        case .stats:
            var stats = self.shared.statistics.snapshot(store: self.shared.store)
            stats.values["leasesHeld"] = .count(UInt64(self.shared.registry?.heldVersionCount ?? 0))
            if let fills = self.shared.fills { stats.values.merge(fills.statistics) { ours, _ in ours } }
            self.reply(GatewayMessage(id: id, .statsReply(stats)))
        default:
            self.fail(id: id, GatewayError(.unknownMessageType, "message type \(message.body.type) is not served"))
        }
    }

    /// Whether a request (other than hello) may be served now; if not, it
    /// has been answered with the reason.
    private func admit(id: UInt64) -> Bool {
        if self.drainRequested != nil, (self.drainRead.startedAt ?? .now()) >= self.drainWindowEnd() {
            self.fail(id: id, GatewayError(.shuttingDown, "the gateway is shutting down"))
            return false
        }
        guard self.greeted else {
            self.reply(GatewayMessage(id: id, .error(ErrorReply(code: .helloRequired, message: "send hello first"))))
            self.shared.statistics.increment(.errors)
            self.shared.metrics.recordError(.helloRequired)
            return false
        }
        return true
    }

    /// Looks `key` up in the store and answers; `counters` are `function`'s.
    /// `hold` is the lookup's `holdMilliseconds` (0 for a plain lookup);
    /// `refresh` whether its caller can refresh the entry (status 4).
    private func lookup(id: UInt64, function: FunctionVersion, key: CacheKey, hold: UInt64, refresh: Bool, counters: FunctionCountersHandle) {
        let key = StorageKey(namespace: self.namespace, function: function, key: key)
        // One time for the lookup: its metrics, its single-flight start and
        // the store's expiry checks. On the gateway's loops, the turn's
        // (`IOLoop.now`): no later than the read that brought the lookup.
        let now = self.transport.eventLoop.now
        let started = self.shared.metrics.startTime(at: now)
        // Read before the store is asked: single-flight compares it with stores' completions.
        let lookupStarted: NIODeadline = self.shared.fills == nil ? .uptimeNanoseconds(0) : now
        // The hit path: a store that can answer at once (memory) is answered
        // here, inside this read, with no future and no callback.
        if let result = self.shared.store.lookupImmediately(key, now: now) {
            self.answerLookup(id: id, key: key, result: result, hold: hold, refresh: refresh, counters: counters, startedAt: started, lookupStarted: lookupStarted)
            return
        }
        self.inFlight += 1
        let loopBound = NIOLoopBound(self, eventLoop: self.transport.eventLoop)
        // Answered on this loop, from within the turn that read the backend's reply.
        self.shared.store.lookup(key, on: self.transport.eventLoop) { result in
            let session = loopBound.value
            session.inFlight -= 1
            defer { session.serveHeldBack() }
            switch result {
            case .success(let found):
                session.answerLookup(id: id, key: key, result: found, hold: hold, refresh: refresh, counters: counters, startedAt: started, lookupStarted: lookupStarted)
            case .failure(let error):
                session.fail(id: id, (error as? GatewayError) ?? GatewayError(.unavailable, "\(error)"))
            }
            session.closeIfDrained()
        }
    }

    /// Answers a lookup with what the store found; a miss goes through
    /// single-flight first (see `FillCoordinator`), which may hold it.
    private func answerLookup(
        id: UInt64,
        key: StorageKey,
        result: StoreLookup,
        hold: UInt64,
        refresh: Bool,
        counters: FunctionCountersHandle,
        startedAt: UInt64,
        lookupStarted: NIODeadline
    ) {
        // A held lookup that misses is the second look of a call whose
        // first lookup (answered status 3) was counted as its miss.
        let reply: LookupReply = hold > 0 && self.holdMilliseconds > 0 && result == .miss
            ? .miss
            : counters.count(result, in: self.shared.statistics)
        if refresh, case .hit(let value, let computeMicroseconds, let expiresAt?) = result, let fills = self.shared.fills {
            let now = RedisStore.nowMilliseconds()
            let delta = fills.refreshDelta(key.function, computeMicroseconds: computeMicroseconds)
            switch fills.earlyRefresh.decide(key.key, nowMilliseconds: now, expiresAtMilliseconds: expiresAt, computeMicroseconds: delta) {
            case .notYet:
                break
            case .soon:
                if let until = fills.extendAhead(key, expiresAt: expiresAt, nowMilliseconds: now) {
                    self.shared.store.extendLife(key, untilUnixMilliseconds: until, on: self.transport.eventLoop)
                }
            case .due:
                self.answerDueHit(id: id, key: key, value: value, expiresAt: expiresAt, fills: fills, startedAt: startedAt, lookupStarted: lookupStarted)
                return
            }
        }
        guard case .miss = reply, let fills = self.shared.fills else {
            self.answer(id: id, .lookupReply(reply))
            self.shared.metrics.recordLookup(since: startedAt)
            return
        }
        let mayWait = self.holdMilliseconds > 0
        // The gateway answers a held lookup by 90% of what its client waits,
        // so that the answer arrives before the client gives up.
        let holdFor = min(hold, self.holdMilliseconds)
        let giveUpAt: NIODeadline? = holdFor > 0 ? .now() + .milliseconds(Int64(holdFor - holdFor / 10)) : nil
        let loop = self.transport.eventLoop
        let loopBound = NIOLoopBound(self, eventLoop: loop)
        let decision = fills.miss(key, connection: self.connectionID, hold: giveUpAt, mayWait: mayWait, lookupStarted: lookupStarted, on: loop) { answer in
            loop.execute {
                let session = loopBound.value
                session.inFlight -= 1
                switch answer {
                case .value(let value): session.answer(id: id, .lookupReply(.hit(value)))
                case .compute: session.answer(id: id, .lookupReply(.miss))
                }
                session.shared.metrics.recordLookup(since: startedAt)
                session.serveHeldBack()
                session.closeIfDrained()
            }
        }
        switch decision {
        case .compute:
            self.answer(id: id, .lookupReply(.miss))
        case .wait:
            self.answer(id: id, .lookupReply(.wait))
        case .value(let value):
            self.answer(id: id, .lookupReply(.hit(value)))
        case .retry:
            // Read again, after the store that this read may have passed.
            self.lookup(id: id, function: key.function, key: key.key, hold: hold, refresh: refresh, counters: counters)
            return
        case .hold:
            // Answered by the responder; in flight until then.
            self.inFlight += 1
            return
        }
        self.shared.metrics.recordLookup(since: startedAt)
    }

    /// Answers a hit that is due for an early refresh: status 4 when this
    /// connection is granted the refresh (`FillCoordinator.refresh`), else a
    /// plain hit. A granted refresh keeps the entry until its bound has
    /// passed (`CacheStore.extendLife`), so that callers go on hitting it
    /// until the new value is stored; only while the entry's own expiry has
    /// not passed, so a value is served at most one bound past its TTL.
    /// (A hit shortly before the entry was due has usually extended it
    /// already: see `EarlyRefresh`.)
    private func answerDueHit(
        id: UInt64,
        key: StorageKey,
        value: ByteBuffer,
        expiresAt: Int64,
        fills: FillCoordinator,
        startedAt: UInt64,
        lookupStarted: NIODeadline
    ) {
        let store = self.shared.store
        let loop = self.transport.eventLoop
        let extend: @Sendable (TimeAmount) -> Void = { bound in
            let now = RedisStore.nowMilliseconds()
            if expiresAt > now { store.extendLife(key, untilUnixMilliseconds: now + bound.nanoseconds / 1_000_000, on: loop) }
        }
        switch fills.refresh(key, connection: self.connectionID, lookupStarted: lookupStarted, on: loop) {
        case .declined:
            self.answer(id: id, .lookupReply(.hit(value)))
        case .granted(let bound):
            extend(bound)
            self.answer(id: id, .lookupReply(.refresh(value)))
        case .pending(let decided):
            self.inFlight += 1
            let loopBound = NIOLoopBound(self, eventLoop: loop)
            decided.hop(to: loop).whenComplete { result in
                let session = loopBound.value
                session.inFlight -= 1
                if case .success(let bound?) = result {
                    extend(bound)
                    session.answer(id: id, .lookupReply(.refresh(value)))
                } else {
                    session.answer(id: id, .lookupReply(.hit(value)))
                }
                session.shared.metrics.recordLookup(since: startedAt)
                session.serveHeldBack()
                session.closeIfDrained()
            }
            return
        }
        self.shared.metrics.recordLookup(since: startedAt)
    }

    /// The counters of `lookupMemo`'s function (named `function`): found
    /// once each time the memo's function changes, not on every lookup.
    private func memoCounters(for function: String) -> FunctionCountersHandle {
        if let memo = self.memoCounters, memo.generation == self.lookupMemo.generation { return memo.handle }
        let handle = self.counters(for: function)
        self.memoCounters = (self.lookupMemo.generation, handle)
        return handle
    }

    /// The counters of `function`, resolved once per connection: a lookup then
    /// counts itself without a lock or a dictionary keyed by names shared with
    /// other connections. At most `maximumCachedFunctions` are kept per
    /// connection; a peer that sends more names resolves the rest each time.
    private func counters(for function: String) -> FunctionCountersHandle {
        if let handle = self.functionCounters[function] { return handle }
        let handle = FunctionCountersHandle(
            cell: self.shared.statistics.cell(namespace: self.namespace, function: function),
            metrics: self.shared.metrics.function(function)
        )
        if self.functionCounters.count < Self.maximumCachedFunctions { self.functionCounters[function] = handle }
        return handle
    }

    static let maximumCachedFunctions = 256

    private func register(_ function: FunctionVersion, namespace: String) {
        guard let registry = self.shared.registry, self.registered.insert(function).inserted else { return }
        registry.register(namespace: namespace, function: function, connection: self.connectionID)
    }

    private func hello(id: UInt64, _ hello: Hello) {
        guard hello.protocolVersion == GatewayMessage.protocolVersion else {
            self.fail(id: id, GatewayError(.unsupportedVersion, "this gateway speaks protocol version \(GatewayMessage.protocolVersion), not \(hello.protocolVersion)"))
            // Fatal: flush the error first, then close (a close drops unflushed writes).
            self.needsFlush = false
            self.transport.writeThenClose(ByteBuffer())
            return
        }
        if !self.greeted {
            self.greeted = true
            if self.shared.fills != nil { self.holdMilliseconds = hello.holdMilliseconds }
            self.logger[metadataKey: "client"] = "\(hello.clientName)[\(hello.pid)]"
            self.logger.debug("hello")
        }
        let reply = HelloReply(
            protocolVersion: GatewayMessage.protocolVersion,
            gatewayVersion: GatewayVersion.current,
            maxFrameSize: UInt64(self.shared.configuration.maxFrameSize),
            maxValueSize: UInt64(self.shared.configuration.maxValueSize),
            holdMilliseconds: self.holdMilliseconds > 0 ? UInt64(self.shared.configuration.fillWaitCap.nanoseconds / 1_000_000) : 0
        )
        self.reply(GatewayMessage(id: id, .helloReply(reply)))
    }

    /// Answers when `future` completes. Store futures complete on this
    /// connection's event loop, so the callback runs here without a hop.
    /// With `startedAt` (from `GatewayMetrics.startTime()`), the time until the
    /// reply is written is recorded as a lookup's.
    private func track<Value: Sendable>(
        _ future: EventLoopFuture<Value>,
        id: UInt64,
        startedAt: UInt64 = 0,
        _ makeReply: @escaping @Sendable (Value, GatewayStatistics) -> GatewayMessage.Body
    ) {
        self.inFlight += 1
        let statistics = self.shared.statistics
        let loopBound = NIOLoopBound(self, eventLoop: self.transport.eventLoop)
        future.hop(to: self.transport.eventLoop).whenComplete { result in
            let session = loopBound.value
            session.inFlight -= 1
            defer { session.serveHeldBack() }
            switch result {
            case .success(let value):
                session.answer(id: id, makeReply(value, statistics))
                session.shared.metrics.recordLookup(since: startedAt)
            case .failure(let error):
                let gatewayError = (error as? GatewayError) ?? GatewayError(.unavailable, "\(error)")
                session.fail(id: id, gatewayError)
            }
            session.closeIfDrained()
        }
    }

    private func fail(id: UInt64, _ error: GatewayError) {
        self.shared.statistics.increment(.errors)
        self.shared.metrics.recordError(error.wireCode)
        self.logger.debug("request failed: \(error.message)", metadata: ["id": "\(id)", "code": "\(error.wireCode)"])
        self.reply(GatewayMessage(id: id, .error(ErrorReply(error))))
    }

    /// Answers request `id` with `body`: a hit (from either store, at once or
    /// after a future) is framed by hand, anything else by the codec.
    private func answer(id: UInt64, _ body: GatewayMessage.Body) {
        if case .lookupReply(.hit(let value)) = body {
            self.replyHit(id: id, value: value)
        } else if case .lookupReply(.refresh(let value)) = body {
            self.replyHit(id: id, value: value, refresh: true)
        } else {
            self.reply(GatewayMessage(id: id, body))
        }
    }

    /// Answers a lookup with a hit (status 0, or 4 with `refresh`), the hot
    /// path's reply, written by hand.
    private func replyHit(id: UInt64, value: ByteBuffer, refresh: Bool = false) {
        guard self.transport.isActive else { return }
        var buffer = self.takeReplyBuffer(capacity: 16 + value.readableBytes)
        guard LookupFrames.appendHit(id: id, value: value, refresh: refresh, to: &buffer) else {
            // Above 4 GiB: too large for one frame; the codec says so.
            self.reply(GatewayMessage(id: id, .lookupReply(refresh ? .refresh(value) : .hit(value))))
            return
        }
        self.send(buffer)
    }

    private func reply(_ message: GatewayMessage) {
        guard self.transport.isActive else { return }
        var buffer = self.takeReplyBuffer(capacity: 64)
        do {
            try self.codec.encodeFrame(message, into: &buffer)
        } catch {
            // Only a reply larger than 4 GiB could fail to encode; say so instead.
            let fallback = GatewayMessage(id: message.id, .error(ErrorReply(code: .internal, message: "the reply could not be encoded")))
            buffer.clear()
            try? fallback.encodeFrame(into: &buffer)
        }
        self.send(buffer)
    }

    /// An empty buffer for a reply of about `capacity` bytes: `replyBuffer`'s
    /// storage when nothing else holds it any more (the transport lets go of a
    /// reply once it is written, which is at once while the socket takes
    /// everything), else a new one. One allocation and one free fewer per reply.
    private func takeReplyBuffer(capacity: Int) -> ByteBuffer {
        // A ByteBuffer holds at most 4 GiB; a larger reply fails to encode later.
        let capacity = min(capacity, Int(UInt32.max))
        guard var buffer = self.replyBuffer.take() else { return self.transport.makeBuffer(capacity: capacity) }
        // Storage that the transport still holds is not written to: `clear`
        // gives this buffer new storage instead (copy on write).
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Writes a reply frame, and flushes it unless more requests of this read
    /// are being served (then `readComplete` flushes them together).
    private func send(_ buffer: ByteBuffer) {
        // Kept for the next reply if it is small enough to keep.
        if buffer.capacity <= Self.keptReplyCapacity { self.replyBuffer = buffer }
        if self.inReadBurst {
            self.transport.write(buffer)
            self.needsFlush = true
        } else {
            self.transport.writeAndFlush(buffer)
        }
    }

    // MARK: Refusing

    /// Answers a refused peer's first request (or, at the frame timeout, its
    /// silence) with `notAllowed`, then closes once the error is written. The
    /// request itself is not decoded.
    private func refuse(id: UInt64) {
        guard let refusal = self.refusal, !self.refusalSent else { return }
        self.refusalSent = true
        self.refusalDeadline?.cancel()
        self.refusalDeadline = nil
        self.shared.statistics.increment(.errors)
        // Nothing more is read: the connection is about to close.
        self.transport.pauseReading()
        let reply = GatewayMessage(id: id, .error(ErrorReply(code: .notAllowed, message: refusal)))
        guard let frame = try? reply.encodedFrame() else {
            self.transport.close()
            return
        }
        self.transport.writeThenClose(frame)
    }

    // MARK: Draining

    /// How long a draining connection keeps serving requests as usual after
    /// it has read everything that was waiting for it: long enough for
    /// requests still on their way (in the peer's buffers) to arrive and be
    /// answered. After it, requests get `shuttingDown`, and the connection
    /// closes as soon as nothing is in flight.
    static let drainGrace = TimeAmount.milliseconds(200)

    /// How long a draining connection may keep reading a backlog that never
    /// empties (a peer that never stops sending).
    static let maximumDrain = TimeAmount.seconds(2)

    /// Until when requests read by a draining connection are served.
    ///
    /// What was in the kernel's buffer when draining started was on its way,
    /// and is served however long reading it takes: the window closes
    /// `drainGrace` after the first read since then that found the socket
    /// empty, so a gateway that gets little CPU after SIGTERM (a loaded
    /// machine) still answers it. A peer that never stops sending never
    /// empties the socket: its window closes `maximumDrain` after the drain
    /// began. A connection that read nothing since closes `drainGrace` after.
    /// A request counts as read when the first frame of the socket read that
    /// brought it was seen (`noteDrainRead`).
    private func drainWindowEnd() -> NIODeadline {
        guard let requested = self.drainRequested else { return .distantFuture }
        if let emptied = self.drainEmptied {
            return emptied + Self.drainGrace
        }
        if self.drainRead.startedAt != nil {
            return requested + Self.maximumDrain
        }
        return requested + Self.drainGrace
    }

    /// While draining, at each frame: a new read of the socket starts now,
    /// and the first one since the drain that emptied the socket is kept
    /// (the first only: a peer that keeps sending a little at a time empties
    /// the socket with every read, and must not keep the window open).
    private func noteDrainRead() {
        guard self.reading.reads != self.drainRead.count else { return }
        let now = NIODeadline.now()
        self.drainRead = (self.reading.reads, now)
        if self.drainEmptied == nil, self.reading.lastReadEmptied { self.drainEmptied = now }
    }

    /// The gateway is draining: serve what is on its way, then close.
    func startDraining() {
        guard self.drainRequested == nil else { return }
        self.drainRequested = .now()
        // Reads counted from here on are the drain's.
        self.drainRead = (self.reading.reads, nil)
        self.scheduleDrainCheck(in: Self.drainGrace)
    }

    private func closeIfDrained() {
        guard self.drainRequested != nil, self.drainCheck == nil, self.inFlight == 0, self.backlog.isEmpty else { return }
        let remaining = self.drainWindowEnd() - NIODeadline.now()
        if remaining <= .zero {
            self.transport.close()
        } else {
            self.scheduleDrainCheck(in: remaining)
        }
    }

    private func scheduleDrainCheck(in delay: TimeAmount) {
        let loopBound = NIOLoopBound(self, eventLoop: self.transport.eventLoop)
        self.drainCheck = self.transport.eventLoop.scheduleTask(in: delay) {
            let session = loopBound.value
            session.drainCheck = nil
            session.closeIfDrained()
        }
    }
}

/// Where one function's lookups are counted: the gateway's statistics (nil
/// past the per-function limit) and its metrics.
struct FunctionCountersHandle: Sendable {
    let cell: GatewayStatistics.FunctionCell?
    let metrics: GatewayMetrics.FunctionMetrics

    /// Counts `result` and turns it into the reply.
    func count(_ result: StoreLookup, in statistics: GatewayStatistics) -> LookupReply {
        switch result {
        case .hit(let value, let computeMicroseconds, _):
            statistics.recordLookup(self.cell, hit: true, computeMicroseconds: computeMicroseconds)
            self.metrics.recordHit(computeMicroseconds: computeMicroseconds)
            return .hit(value)
        case .miss:
            statistics.recordLookup(self.cell, hit: false, computeMicroseconds: 0)
            self.metrics.recordMiss()
            return .miss
        case .missDoNotStore:
            statistics.recordLookup(self.cell, hit: false, computeMicroseconds: 0)
            self.metrics.recordMiss()
            return .missDoNotStore
        }
    }
}
