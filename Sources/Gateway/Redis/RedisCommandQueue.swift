import GatewayProtocol
import Logging
import NIOCore

/// What a `RedisCommandQueue` needs from the connection under it: SwiftNIO's
/// channel (`RedisCommandHandler`) or the gateway's own loop
/// (`IORedisConnection`). Every call is made on `eventLoop`.
protocol RedisCommandTransport: AnyObject {
    /// The loop that runs the connection: timers and flushes are scheduled on it.
    var eventLoop: any EventLoop { get }
    /// An empty buffer for encoding commands into.
    func makeBuffer(capacity: Int) -> ByteBuffer
    /// Writes `bytes` to Redis now (what the socket does not take is sent later, in order).
    func send(_ bytes: ByteBuffer)
    /// Calls `RedisCommandQueue.flushPending()` once, at the end of this turn
    /// of the event loop: after what the turn is doing (serving the workers'
    /// reads, say), so that every command it queues shares one write.
    func flushAtEndOfTurn()
    /// Closes the connection; the transport then calls `RedisCommandQueue.shutDown()`.
    func closeTransport()
}

/// Matches replies to commands, enforces timeouts, and fails what is in
/// flight when the connection ends; the logic of a Redis data connection,
/// with no I/O of its own (its transport reads and writes).
///
/// RESP2 answers commands strictly in order, one reply each, so the queue
/// keeps a FIFO of the commands written and pairs each inbound reply with the
/// oldest entry. Any number of commands may be in flight.
///
/// **Ownership.** Once a request reaches `accept` (or `enqueueDirectly`), the
/// queue owns its reply target (`RedisReplyTarget`) and completes it exactly
/// once: with the reply, with `.timeout`, with `.valueTooLarge`, with
/// `.tooManyRequests` or with `.connectionClosed`.
///
/// **Timeouts measure Redis, not the queue.** A command's timeout is the
/// longest Redis may stay silent while the command waits: it fails with
/// `.timeout` once no byte has come from Redis for `timeout`, counted from
/// when it was queued or from the last byte that arrived, whichever is later.
/// So a deep pipeline, whose last command waits while Redis answers the ones
/// before it, does not time out for as long as Redis keeps answering, and a
/// large reply does not time out while its bytes keep coming; a Redis that
/// stops answering fails every waiting command one timeout after its last
/// byte (and a turn of the event loop, which tells Redis's silence from the
/// gateway's own: see `timerFired`). How long a command can wait in all is
/// bounded by `maximumInFlight` instead: past it, a command fails at once
/// with `.tooManyRequests` and is not sent.
///
/// One timer per connection, armed for the earliest deadline, not one per
/// command: when it fires, every expired entry fails with `.timeout`, and the
/// timer is re-armed for the earliest remaining deadline (bytes arriving only
/// move deadlines later, so the timer is not re-armed for them). A timed-out
/// entry keeps its place in the FIFO (its reply will still arrive and must be
/// consumed to keep the pairing right) and its reply is dropped. If the oldest
/// entry stays unanswered for `unresponsiveTimeout` beyond its deadline, the
/// server is considered dead (for example, a network partition that TCP will
/// not notice for minutes) and the connection is closed, so that the pool can
/// reconnect.
///
/// **Flushes.** Commands queued during one turn of the event loop (every
/// lookup of every worker connection served in that turn) are encoded into
/// one buffer and go out with one write at the end of the turn: a burst is
/// pipelined into one write, the way twemproxy pipelines its clients'
/// requests, instead of a buffer and a system call each.
///
/// **Errors.** A decoding error or a reply nobody asked for means the stream
/// is out of step; the connection is closed. When it closes, everything in
/// flight fails with `.connectionClosed`, and so does any later command.
///
/// Everything runs on the transport's event loop; the stored properties
/// skip the runtime's exclusivity checks, as `IOLoop` explains.
final class RedisCommandQueue {
    private struct InFlight {
        /// nil once the entry has timed out: its reply is then dropped.
        var promise: RedisReplyTarget?
        /// When the command was queued.
        let queued: NIODeadline
        let timeout: TimeAmount?
        /// When the command was queued (uptime nanoseconds), for the round-trip
        /// metric; 0 when no metrics are recorded.
        let queuedAt: UInt64
        /// The command's name, for error messages (shares the command's storage).
        let name: ByteBuffer
    }

    /// The connection under the queue; nil before `attach` and after `shutDown`.
    @exclusivity(unchecked) private var transport: (any RedisCommandTransport)?
    @exclusivity(unchecked) private var inFlight = CircularBuffer<InFlight>(initialCapacity: 16)
    @exclusivity(unchecked) private var isOpen = true
    /// Whether this side asked the connection to close: an error after that
    /// (a TLS server that answers the close without `close_notify`) is no news.
    @exclusivity(unchecked) private var isClosing = false
    /// Why the connection is being closed, for the error given to pending commands.
    @exclusivity(unchecked) private var closeReason: String?
    @exclusivity(unchecked) private var timer: Scheduled<Void>?
    @exclusivity(unchecked) private var timerDeadline: NIODeadline?
    /// When the last bytes came from Redis.
    @exclusivity(unchecked) private var lastProgress = NIODeadline.uptimeNanoseconds(0)
    /// Whether a flush is due at the end of this turn of the event loop.
    @exclusivity(unchecked) private var flushScheduled = false
    /// The commands queued in this turn of the event loop, encoded, written
    /// together at its end.
    @exclusivity(unchecked) private var pending: ByteBuffer?
    /// The last turn's `pending`, kept to be written into again once the
    /// transport has sent it (see `enqueue`).
    @exclusivity(unchecked) private var spare: ByteBuffer?
    /// A turn's buffer larger than this is not kept for the next.
    static let keptBufferCapacity = 64 * 1024
    /// When the timer found deadlines passed and started confirming them
    /// (see `timerFired`); nil when it is not confirming.
    @exclusivity(unchecked) private var expiryConfirmationStarted: NIODeadline?
    /// How long after a deadline passes it is confirmed: long enough that the
    /// event loop polls its sockets in between, unless it stays busy with
    /// tasks all that time.
    static let expiryConfirmationDelay = TimeAmount.milliseconds(1)

    private let decoder: RESPReplyDecoder
    private let unresponsiveTimeout: TimeAmount?
    private let maximumCommandSize: Int
    private let maximumInFlight: Int
    private let logger: Logger
    private let metrics: GatewayMetrics?

    /// A queue refusing replies larger than `maximumReplySize` bytes and
    /// commands larger than `maximumCommandSize`; throws `.libraryFailure`
    /// if hiredis cannot allocate its reader.
    init(
        unresponsiveTimeout: TimeAmount?,
        maximumReplySize: Int,
        maximumCommandSize: Int,
        maximumInFlight: Int = .max,
        logger: Logger,
        metrics: GatewayMetrics? = nil
    ) throws {
        self.decoder = try RESPReplyDecoder(maximumReplySize: maximumReplySize)
        self.unresponsiveTimeout = unresponsiveTimeout
        self.maximumCommandSize = maximumCommandSize
        self.maximumInFlight = maximumInFlight
        self.logger = logger
        self.metrics = metrics
    }

    /// A queue with a connection's limits and timeouts (see
    /// `RedisConnection.Configuration`); throws `.libraryFailure` if hiredis
    /// cannot allocate its reader.
    convenience init(configuration: RedisConnection.Configuration, logger: Logger, metrics: GatewayMetrics?) throws {
        try self.init(
            unresponsiveTimeout: configuration.unresponsiveTimeout,
            maximumReplySize: configuration.maximumReplySize,
            maximumCommandSize: configuration.maximumCommandSize,
            maximumInFlight: configuration.maximumInFlight ?? .max,
            logger: logger,
            metrics: metrics
        )
    }

    /// Starts using `transport`, on its event loop.
    func attach(_ transport: any RedisCommandTransport) {
        self.transport = transport
    }

    /// The deadline of an entry: its timeout after it was queued or after
    /// Redis last sent something, whichever is later.
    private func deadline(of entry: InFlight) -> NIODeadline {
        guard let timeout = entry.timeout else { return .distantFuture }
        return max(entry.queued, self.lastProgress) + timeout
    }

    // MARK: Commands

    /// Queues `outbound`, to be written at the next `scheduleFlush`; past
    /// `maximumInFlight`, every request in it fails with `.tooManyRequests`.
    func accept(_ outbound: RedisOutbound) {
        guard self.inFlight.count < self.maximumInFlight else {
            let error = self.tooManyError()
            switch outbound {
            case .one(let request): request.reply.fail(error)
            case .many(let requests): for request in requests { request.reply.fail(error) }
            }
            return
        }
        switch outbound {
        case .one(let request):
            self.enqueue(request)
        case .many(let requests):
            for request in requests {
                self.enqueue(request)
            }
        }
    }

    /// Queues `request` and flushes it at the end of this turn of the event
    /// loop: the lookup path's way in.
    func enqueueDirectly(_ request: RedisRequest) {
        guard self.inFlight.count < self.maximumInFlight else {
            request.reply.fail(self.tooManyError())
            return
        }
        self.enqueue(request)
        self.scheduleFlush()
    }

    private func tooManyError() -> GatewayError {
        GatewayError(.tooManyRequests, "\(self.inFlight.count) Redis commands are waiting on this connection; the limit is \(self.maximumInFlight)")
    }

    private func enqueue(_ request: RedisRequest) {
        guard self.isOpen, let transport = self.transport else {
            request.reply.fail(self.closedError(inFlight: 0))
            return
        }
        // Refused here rather than in the encoder: an encoder error would
        // close the connection, failing every other command in flight.
        let size = HiredisLimits.encodedSizeBound(request.command.argv)
        guard size <= self.maximumCommandSize else {
            request.reply.fail(
                GatewayError(
                    .valueTooLarge,
                    "the Redis command \(request.command.name) is about \(size) bytes; the limit is \(self.maximumCommandSize)"
                )
            )
            return
        }
        let now = transport.eventLoop.now
        let queuedAt = self.metrics?.startTime() ?? 0
        self.inFlight.append(
            InFlight(promise: request.reply, queued: now, timeout: request.timeout, queuedAt: queuedAt, name: request.command.argv[0])
        )
        if let timeout = request.timeout {
            self.armTimer(for: now + timeout)
        }
        if self.pending == nil {
            // The last turn's buffer, when the transport has let go of it
            // (else `clear` gives it new storage).
            if var spare = self.spare.take(), spare.capacity <= Self.keptBufferCapacity {
                spare.clear()
                self.pending = spare
            } else {
                self.pending = transport.makeBuffer(capacity: 256)
            }
        }
        RESPCommandEncoder.append(request.command.argv, to: &self.pending!)
    }

    /// Writes what is queued at the end of this turn of the event loop.
    func scheduleFlush() {
        guard !self.flushScheduled, let transport = self.transport else { return }
        self.flushScheduled = true
        transport.flushAtEndOfTurn()
    }

    /// Writes what is queued now: the transport's call, at the end of the
    /// turn that `scheduleFlush` asked for.
    func flushPending() {
        self.flushScheduled = false
        // Closed meanwhile: nothing left to send.
        guard self.isOpen, let pending = self.pending.take() else { return }
        self.transport?.send(pending)
        self.spare = pending
    }

    // MARK: Replies

    /// Decodes the replies in `bytes` (all of them are consumed) and pairs
    /// each with its command.
    func received(_ bytes: inout ByteBuffer) {
        guard self.isOpen else { return }
        do {
            try self.decoder.decode(&bytes, allocator: ByteBufferAllocator()) { reply in
                self.received(reply)
                // A reply (or its callback) may have closed the connection: the rest is not read.
                return self.isOpen && self.closeReason == nil
            }
        } catch {
            // A decoding error: the stream is out of step.
            self.fail(reason: "\(error)")
        }
    }

    /// Pairs `reply` with the oldest command in flight.
    private func received(_ reply: RESPValue) {
        guard let entry = self.inFlight.popFirst() else {
            self.fail(reason: "Redis sent a reply that no command was waiting for (\(reply))")
            return
        }
        // Late replies too: the round trip is what Redis took, answered or not.
        if entry.queuedAt != 0 {
            self.metrics?.recordRedisCommand(nanoseconds: Int64(clamping: NIODeadline.now().uptimeNanoseconds &- entry.queuedAt))
        }
        // nil when the command timed out: the reply is consumed and dropped.
        entry.promise?.succeed(reply)
    }

    /// The transport has handed over every byte of one read.
    func readComplete() {
        // Bytes came from Redis (a reply, or part of a large one): it is
        // answering, so no waiting command's silence starts before now.
        if let transport = self.transport { self.lastProgress = transport.eventLoop.now }
    }

    // MARK: Closing

    /// This side is closing the connection.
    func closing() {
        self.isClosing = true
    }

    /// The transport failed with `error`; the connection is closed. A
    /// connection refused while being established (`.unavailable`, such as a
    /// TLS server that rejects this client) is reported by the pool,
    /// rate-limited, so it is logged here at debug level only.
    func transportFailed(_ error: any Error) {
        let establishing = (error as? GatewayError)?.code == .unavailable
        self.fail(reason: "\(error)", level: establishing || self.isClosing ? .debug : .warning)
    }

    private func fail(reason: String, level: Logger.Level = .warning) {
        guard self.isOpen else { return }
        if self.closeReason == nil { self.closeReason = reason }
        self.logger.log(
            level: level,
            "closing the Redis connection",
            metadata: ["redis.reason": "\(reason)", "redis.in_flight": "\(self.inFlight.count)"]
        )
        self.isClosing = true
        self.transport?.closeTransport()
    }

    /// The connection has closed: fails everything in flight, refuses later
    /// commands and lets go of the transport. The queue is detached before
    /// any promise is completed, because a promise's callbacks may send again.
    func shutDown() {
        self.isOpen = false
        self.transport = nil
        self.pending = nil
        self.spare = nil
        self.timer?.cancel()
        self.timer = nil
        self.timerDeadline = nil
        guard !self.inFlight.isEmpty else { return }
        let pending = self.inFlight
        self.inFlight.removeAll()
        let error = self.closedError(inFlight: pending.count)
        for entry in pending {
            entry.promise?.fail(error)
        }
    }

    private func closedError(inFlight: Int) -> GatewayError {
        let reason = self.closeReason.map { ": \($0)" } ?? ""
        let pending = inFlight > 0 ? " with \(inFlight) commands in flight" : ""
        return GatewayError(.connectionClosed, "the Redis connection closed\(pending)\(reason)")
    }

    // MARK: Timeouts

    private func armTimer(for deadline: NIODeadline) {
        if let current = self.timerDeadline, current <= deadline { return }
        guard let transport = self.transport else { return }
        self.timer?.cancel()
        self.timerDeadline = deadline
        self.timer = transport.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timerFired()
        }
    }

    private func timerFired() {
        self.timer = nil
        self.timerDeadline = nil
        guard self.isOpen, let transport = self.transport else { return }
        let now = transport.eventLoop.now
        // A deadline that has passed is confirmed a turn of the event loop
        // later: the loop may have been busy (serving a worker's burst) while
        // Redis's replies waited unread in the socket, and that silence is the
        // gateway's own, not Redis's. The confirmation runs after the loop has
        // polled its sockets again; if Redis's bytes came meanwhile, Redis is
        // answering and nothing expires (deadlines count from those bytes).
        if let started = self.expiryConfirmationStarted {
            self.expiryConfirmationStarted = nil
            if self.lastProgress >= started {
                let earliest = self.inFlight.lazy.filter { $0.promise != nil }.map { self.deadline(of: $0) }.min()
                if let earliest, earliest != .distantFuture {
                    self.armTimer(for: max(earliest, now + Self.expiryConfirmationDelay))
                }
                return
            }
        } else if self.inFlight.contains(where: { $0.promise != nil && self.deadline(of: $0) <= now }) {
            self.expiryConfirmationStarted = now
            self.armTimer(for: now + Self.expiryConfirmationDelay)
            return
        }
        var expired: [InFlight] = []
        var next: NIODeadline? = nil
        for index in self.inFlight.indices where self.inFlight[index].promise != nil {
            let deadline = self.deadline(of: self.inFlight[index])
            if deadline <= now {
                expired.append(self.inFlight[index])
                self.inFlight[index].promise = nil
            } else if deadline != .distantFuture {
                next = min(next ?? deadline, deadline)
            }
        }
        var unresponsive = false
        if let unresponsiveTimeout = self.unresponsiveTimeout, let oldest = self.inFlight.first, oldest.promise == nil {
            let giveUp = self.deadline(of: oldest) + unresponsiveTimeout
            if giveUp <= now {
                unresponsive = true
            } else {
                next = min(next ?? giveUp, giveUp)
            }
        }
        if let next, !unresponsive {
            self.armTimer(for: next)
        }
        // Completed last: callbacks may send on this connection and change the queue.
        for entry in expired {
            let timeout = entry.timeout.map { " within \($0.redisLogDescription)" } ?? ""
            entry.promise?.fail(GatewayError(.timeout, "Redis did not answer \(String(buffer: entry.name))\(timeout)"))
        }
        if unresponsive, let unresponsiveTimeout = self.unresponsiveTimeout {
            self.fail(reason: "Redis has not answered for \(unresponsiveTimeout.redisLogDescription) past a command's timeout")
        }
    }
}

@available(*, unavailable)
extension RedisCommandQueue: Sendable {}
