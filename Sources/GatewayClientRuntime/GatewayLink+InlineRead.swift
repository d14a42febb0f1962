import GatewayProtocol
import NIOCore

/// The reader role in a call's own thread (the leader), and the hand-over of
/// replies to the calls that park or block meanwhile (the followers).
extension GatewayLink {
    /// Reads the socket (holding the reader role) until `id`'s reply arrives
    /// or its deadline passes; returns nil, with the role released and the
    /// request still awaited, when `windowEnd` comes first. `startedAt` is
    /// the caller's reading of the clock, taken as the time of the first look.
    func readUntilReply(_ id: UInt64, deadline: NIODeadline, until windowEnd: NIODeadline, startedAt: NIODeadline) -> Reply? {
        // Until the window ends, or until another request's deadline, to fail it on time.
        var wakeAt = windowEnd
        // Waits inside `recv` (one system call, where `poll` then `recv` would
        // take two, a microsecond or two more per hit). Each wait lasts at most
        // `UnixSocket.receiveSlice`, so `wakeAt` is kept to within that (the
        // granularity of `poll`'s milliseconds).
        var startedAt = Optional(startedAt)
        let reader = self.reader
        while true {
            let now = startedAt.take() ?? NIODeadline.now()
            var readError: GatewayError?
            if now < wakeAt {
                readError = reader.read(from: self.fd, waiting: true).error
            }
            // Fails every awaited request, this one too (it is then `.arrived`).
            if let readError { self.close(readError) }
            var wakeBackground = false
            var completions: [Completion] = []
            let outcome = self.lock.withLock { () -> Reply?? in
                if readError == nil, self.pending.count == 1, reader.messages.count == 1, reader.messages[0].id == id {
                    // The usual case, a caller alone on the connection: its
                    // reply is all that came and nobody else awaits one, so
                    // there is nothing to hand over and no other deadline.
                    self.pending.removeValue(forKey: id)
                    self.isReading = false
                    return .some(.success(reader.messages.removeLast()))
                }
                let after = NIODeadline.now()
                if readError == nil {
                    completions = self.pending.dispatch(reader.messages, now: after)
                    reader.messages.removeAll(keepingCapacity: true)
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
                wakeAt = self.pending.earliestDeadline(before: windowEnd)
                return nil
            }
            if wakeBackground { self.wakePipe.wake() }
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
    func blockUntilReply(_ id: UInt64) -> Reply {
        let thread = BlockedThread()
        if let early = self.installWaiter(id, as: .thread(thread)) { return early }
        // The reader fails the request at its deadline; the semaphore is signalled either way.
        thread.semaphore.wait()
        return thread.reply ?? .failure(GatewayError(.connectionClosed, "a blocked request was woken without a reply"))
    }
}
