import Dispatch
import GatewayProtocol
import NIOCore

/// A request's reply, or why there is none.
typealias GatewayReply = Result<GatewayMessage, GatewayError>

/// A thread blocked until its reply arrives.
final class BlockedThread: @unchecked Sendable {
    // @unchecked: `reply` is written once, under the link's lock, before
    // `semaphore` is signalled, and read after the wait.
    /// The reply, set before `semaphore` is signalled.
    var reply: GatewayReply?
    /// Signalled once the reply (or the failure) is in `reply`.
    let semaphore = DispatchSemaphore(value: 0)
}

/// Who waits for a reply, and how.
enum Waiter {
    /// The caller reads the socket itself or is about to park.
    case caller
    /// The reply (or the failure) came before the caller parked or looked.
    case arrived(GatewayReply)
    /// A suspended task.
    case task(CheckedContinuation<GatewayReply, Never>)
    /// A blocked thread.
    case thread(BlockedThread)
}

/// An awaited request: who waits, and until when.
struct PendingRequest {
    /// Who waits for the reply.
    var waiter: Waiter
    /// When the request fails with `.timeout` if no reply came.
    let deadline: NIODeadline
}

/// A waiter to complete once the link's lock is released.
enum Completion {
    /// Resume a suspended task with the reply.
    case task(CheckedContinuation<GatewayReply, Never>, GatewayReply)
    /// Wake a blocked thread (its reply is set).
    case thread(BlockedThread)

    /// Resumes the task or wakes the thread.
    func run() {
        switch self {
        case .task(let continuation, let reply): continuation.resume(returning: reply)
        case .thread(let thread): thread.semaphore.signal()
        }
    }
}

/// A link's request table: the awaited requests by id, and how replies,
/// deadlines and failures reach their waiters. Used under the link's lock;
/// the completions it returns are run once the lock is released. No I/O;
/// tested on its own (`RequestTableTests`).
typealias RequestTable = AwaitedRequests<PendingRequest>

extension AwaitedRequests where Value == PendingRequest {
    /// Hands `messages` to their waiters and fails the requests whose
    /// deadline passed by `now`. Replies nobody awaits are dropped.
    func dispatch(_ messages: [GatewayMessage], now: NIODeadline) -> [Completion] {
        var completions: [Completion] = []
        for message in messages {
            if message.id == 0, case .error(let error) = message.body {
                // A connection-level error (frameTooLarge): the gateway closes next.
                completions += self.completeAll(.failure(GatewayError(.remote, error.message, wireCode: error.code)))
                continue
            }
            guard let entry = self[message.id] else { continue }  // not awaited, or given up
            if let completion = self.complete(message.id, entry, .success(message)) {
                completions.append(completion)
            }
        }
        let expired = self.ids { entry in
            if case .arrived = entry.waiter { return false }
            return entry.deadline <= now
        }
        for id in expired {
            guard let entry = self[id] else { continue }
            if let completion = self.complete(id, entry, .failure(GatewayError(.timeout, "no reply to request \(id) in time"))) {
                completions.append(completion)
            }
        }
        return completions
    }

    /// Completes one awaited request; returns what to run once the lock is
    /// released. A caller's request keeps its entry, marked `.arrived`.
    func complete(_ id: UInt64, _ entry: PendingRequest, _ reply: GatewayReply) -> Completion? {
        switch entry.waiter {
        case .caller:
            self.update(id) { $0.waiter = .arrived(reply) }
            return nil
        case .arrived:
            return nil
        case .task(let continuation):
            self.removeValue(forKey: id)
            return .task(continuation, reply)
        case .thread(let thread):
            self.removeValue(forKey: id)
            thread.reply = reply
            return .thread(thread)
        }
    }

    /// Completes every awaited request with `reply`.
    func completeAll(_ reply: GatewayReply) -> [Completion] {
        var completions: [Completion] = []
        for id in self.ids(where: { _ in true }) {
            guard let entry = self[id] else { continue }
            if let completion = self.complete(id, entry, reply) { completions.append(completion) }
        }
        return completions
    }

    /// The earliest deadline of the requests whose reply has not arrived, if any.
    func earliestUnansweredDeadline() -> NIODeadline? {
        var earliest: NIODeadline?
        self.forEach { _, entry in
            if case .arrived = entry.waiter { return }
            earliest = min(earliest ?? entry.deadline, entry.deadline)
        }
        return earliest
    }

    /// The earliest of `limit` and the awaited requests' deadlines.
    func earliestDeadline(before limit: NIODeadline) -> NIODeadline {
        var earliest = limit
        self.forEach { _, entry in
            if entry.deadline < earliest { earliest = entry.deadline }
        }
        return earliest
    }
}
