#if os(Linux)
import CLinux
import GatewayProtocol
import GatewaySystem
import Dispatch
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import Synchronization

/// What an `IOLoop` calls when a registered descriptor is ready.
protocol IOReadinessHandler: AnyObject {
    /// `events` happened on the handler's descriptor.
    func ready(_ events: EpollEvents)
}

/// What an `IOLoop` calls at the end of a turn it was registered for
/// (`IOLoop.atEndOfTurn`): a transport's flush, for example.
protocol IOTurnEndHandler: AnyObject {
    /// The turn's readiness handlers, tasks and timers have run.
    func turnEnded()
}

/// An event loop of the gateway's own: one thread, one epoll instance, its
/// timers and its task queue. It is a SwiftNIO `EventLoop`, so that futures,
/// promises, `NIOLoopBound` and `scheduleTask` work on it as on SwiftNIO's
/// loops, and descriptors are served by `IOReadinessHandler`s registered on
/// it, with plain system calls and no channel pipeline.
///
/// Each turn: wait for readiness (at most until the next timer), call the
/// handlers of what is ready, run the tasks queued meanwhile (from this
/// thread or others), then the timers that came due, then the end-of-turn
/// handlers registered meanwhile (each once).
///
/// **Exclusivity.** A loop's own state, and that of what it serves
/// (`IOWorkerConnection`, `IORedisConnection`, and the `WorkerSession`s and
/// `RedisCommandQueue`s above them), is touched on the loop's thread only,
/// and none of them keeps an access to one of its properties open across a
/// call that could come back into it: a mutating call on a property
/// (`self.input.readAvailable(from:)`, `self.assembler.nextPayload(from:)`)
/// returns before anything else runs. So their stored properties are
/// `@exclusivity(unchecked)`: the runtime's dynamic checks, a thread-local
/// set of open accesses consulted on each such call, are a measurable part
/// of a near hit's time in the gateway, and the rule above leaves them
/// nothing to find.
final class IOLoop: EventLoop, @unchecked Sendable {
    private let epoll: Epoll
    private let waker: EventWaker
    /// Tasks from other threads, and whether the waker was already woken for them.
    private let incoming = NIOLockedValueBox<(tasks: [@Sendable () -> Void], woken: Bool)>(([], false))
    /// Whether `incoming` may hold tasks: read before taking its lock.
    private let hasIncoming = Atomic<Bool>(false)
    /// The loop thread's own state (touched on the loop thread only).
    @exclusivity(unchecked) private var local: [() -> Void] = []
    /// The tasks of this turn while they run (see `runTasks`).
    @exclusivity(unchecked) private var running: [() -> Void] = []
    @exclusivity(unchecked) private var timers = TimerQueue<() -> Void>()
    /// When this turn's wait returned: the loop's clock, read once per turn
    /// (see `now`).
    @exclusivity(unchecked) private var turnStarted = NIODeadline.now()
    /// The registered handlers by slot; a token is a slot and its
    /// generation, so that a readiness reported for a descriptor removed
    /// in the same turn never reaches the handler that reuses its slot.
    @exclusivity(unchecked) private var handlers: [(generation: UInt32, handler: IOReadinessHandler?)] = []
    @exclusivity(unchecked) private var freeSlots: [Int] = []
    @exclusivity(unchecked) private var turnEnd: [IOTurnEndHandler] = []
    @exclusivity(unchecked) private var stopping = false
    @exclusivity(unchecked) private var thread: pthread_t?
    /// The loop's thread: written by that thread before `start` returns the
    /// loop (the start lock orders it), and only read after.
    @exclusivity(unchecked) private var threadID: pthread_t?
    private let stopped = ConditionLock(value: false)

    private static let wakerToken: UInt64 = 0

    private init(epoll: Epoll, waker: EventWaker) {
        self.epoll = epoll
        self.waker = waker
    }

    /// Starts a loop on a thread of its own.
    static func start(name: String) throws -> IOLoop {
        let loop = IOLoop(epoll: try Epoll(), waker: try EventWaker())
        try loop.epoll.register(loop.waker.descriptor, for: .readable, token: Self.wakerToken)
        let started = ConditionLock(value: false)
        let box = Unmanaged.passRetained(ThreadStart(loop: loop, started: started, name: name))
        var thread = pthread_t()
        let status = pthread_create(&thread, nil, { argument in
            let start = Unmanaged<ThreadStart>.fromOpaque(argument!).takeRetainedValue()
            start.loop.threadID = pthread_self()
            // Linux keeps at most 15 bytes of a thread's name.
            cache_gateway_set_thread_name(String(start.name.prefix(15)))
            start.started.lock()
            start.started.unlock(withValue: true)
            start.loop.run()
            return nil
        }, box.toOpaque())
        guard status == 0 else {
            box.release()
            throw GatewayError(.libraryFailure, "pthread_create failed: \(status)")
        }
        loop.thread = thread
        started.lock(whenValue: true)
        started.unlock()
        return loop
    }

    private final class ThreadStart {
        let loop: IOLoop
        let started: ConditionLock<Bool>
        let name: String
        init(loop: IOLoop, started: ConditionLock<Bool>, name: String) {
            self.loop = loop
            self.started = started
            self.name = name
        }
    }

    // MARK: Descriptors (on the loop thread)

    /// Watches `fd` for `events`, and calls `handler` when it is ready.
    func register(_ fd: Int32, for events: EpollEvents, handler: IOReadinessHandler) throws -> UInt64 {
        let slot: Int
        if let free = self.freeSlots.popLast() {
            slot = free
        } else {
            slot = self.handlers.count
            self.handlers.append((0, nil))
        }
        let generation = self.handlers[slot].generation &+ 1
        // Slot 0's first token would be the waker's.
        let token = UInt64(generation) << 32 | UInt64(slot + 1)
        do {
            try self.epoll.register(fd, for: events, token: token)
        } catch {
            self.freeSlots.append(slot)
            throw error
        }
        self.handlers[slot] = (generation, handler)
        return token
    }

    /// Changes what `fd` (registered as `token`) is watched for.
    func modify(_ fd: Int32, token: UInt64, for events: EpollEvents) throws {
        try self.epoll.modify(fd, for: events, token: token)
    }

    /// Stops watching `fd` (registered as `token`).
    func deregister(_ fd: Int32, token: UInt64) {
        try? self.epoll.remove(fd)
        let slot = Int(token & 0xFFFF_FFFF) - 1
        guard slot >= 0, slot < self.handlers.count, self.handlers[slot].generation == UInt32(token >> 32), self.handlers[slot].handler != nil else { return }
        self.handlers[slot].handler = nil
        self.freeSlots.append(slot)
    }

    /// Calls `handler.turnEnded()` once at the end of this turn (on the loop thread).
    func atEndOfTurn(_ handler: IOTurnEndHandler) {
        self.turnEnd.append(handler)
    }

    private func handler(for token: UInt64) -> IOReadinessHandler? {
        let slot = Int(token & 0xFFFF_FFFF) - 1
        guard slot >= 0, slot < self.handlers.count else { return nil }
        let entry = self.handlers[slot]
        return entry.generation == UInt32(token >> 32) ? entry.handler : nil
    }

    // MARK: The loop

    private func run() {
        while !self.stopping || !self.local.isEmpty {
            var timeout: Int32 = -1
            if !self.local.isEmpty {
                timeout = 0
            } else if let deadline = self.timers.nextDeadline() {
                // Counted from the turn's start: a timer may fire up to one
                // turn late, never early.
                let now = self.turnStarted
                let nanoseconds = deadline.uptimeNanoseconds &- now.uptimeNanoseconds
                timeout = deadline <= now ? 0 : Int32(min((nanoseconds + 999_999) / 1_000_000, UInt64(Int32.max)))
            }
            let waited = try? self.epoll.wait(timeoutMilliseconds: timeout, woke: { self.turnStarted = .now() }) { readiness in
                if readiness.token == Self.wakerToken {
                    self.waker.reset()
                } else {
                    self.handler(for: readiness.token)?.ready(readiness.events)
                }
            }
            if waited == nil { self.turnStarted = .now() }
            self.runTasks()
            while let timer = self.timers.popDue(now: self.turnStarted) { timer() }
            // Handlers registered by these run in this turn too.
            var index = 0
            while index < self.turnEnd.count {
                self.turnEnd[index].turnEnded()
                index += 1
            }
            self.turnEnd.removeAll(keepingCapacity: true)
        }
        self.stopped.lock()
        self.stopped.unlock(withValue: true)
    }

    private func runTasks() {
        if self.hasIncoming.load(ordering: .acquiring) {
            self.runIncoming()
        }
        // Tasks queued by these tasks run in the next turn, after I/O.
        guard !self.local.isEmpty else { return }
        // The two arrays trade places, so that neither is reallocated per turn.
        swap(&self.local, &self.running)
        for task in self.running { task() }
        self.running.removeAll(keepingCapacity: true)
    }

    private func runIncoming() {
        self.hasIncoming.store(false, ordering: .releasing)
        let remote = self.incoming.withLockedValue { state -> [@Sendable () -> Void] in
            let tasks = state.tasks
            state.tasks.removeAll(keepingCapacity: true)
            state.woken = false
            return tasks
        }
        for task in remote { task() }
    }

    // MARK: EventLoop

    /// On the loop's thread, when the current turn's wait returned, as
    /// libuv's loop time is: the clock is read once per turn, not by every
    /// lookup and Redis command of the turn. Elsewhere, the clock.
    var now: NIODeadline {
        self.inEventLoop ? self.turnStarted : .now()
    }

    var inEventLoop: Bool {
        guard let id = self.threadID else { return false }
        return pthread_equal(id, pthread_self()) != 0
    }

    func execute(_ task: @escaping @Sendable () -> Void) {
        if self.inEventLoop {
            self.local.append(task)
            return
        }
        let wake = self.incoming.withLockedValue { state -> Bool in
            state.tasks.append(task)
            defer { state.woken = true }
            return !state.woken
        }
        self.hasIncoming.store(true, ordering: .releasing)
        if wake { self.waker.wake() }
    }

    @discardableResult
    func scheduleTask<T>(deadline: NIODeadline, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        let promise = PromiseBox(promise: self.makePromise(of: T.self))
        let id = NIOLockedValueBox<TimerQueue<() -> Void>.ID?>(nil)
        let cancelled = NIOLockedValueBox(false)
        let schedule: @Sendable () -> Void = {
            guard !cancelled.withLockedValue({ $0 }) else { return }
            let timer = self.timers.schedule({
                do {
                    promise.promise.assumeIsolated().succeed(try task())
                } catch {
                    promise.promise.fail(error)
                }
            }, at: deadline)
            id.withLockedValue { $0 = timer }
        }
        if self.inEventLoop { schedule() } else { self.execute(schedule) }
        return Scheduled(promise: promise.promise) {
            self.execute {
                cancelled.withLockedValue { $0 = true }
                if let timer = id.withLockedValue({ $0 }), self.timers.cancel(timer) != nil {
                    promise.promise.fail(EventLoopError.cancelled)
                }
            }
        }
    }

    /// A promise carried to the loop thread, where alone it is completed
    /// (its value is created there by the task).
    private struct PromiseBox<T>: @unchecked Sendable {
        let promise: EventLoopPromise<T>
    }

    @discardableResult
    func scheduleTask<T>(in delay: TimeAmount, _ task: @escaping @Sendable () throws -> T) -> Scheduled<T> {
        self.scheduleTask(deadline: .now() + delay, task)
    }

    func preconditionInEventLoop(file: StaticString, line: UInt) {
        precondition(self.inEventLoop, file: file, line: line)
    }

    func preconditionNotInEventLoop(file: StaticString, line: UInt) {
        precondition(!self.inEventLoop, file: file, line: line)
    }

    func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        self.execute { self.stopping = true }
        queue.async {
            self.stopped.lock(whenValue: true)
            self.stopped.unlock()
            if let thread = self.thread { pthread_join(thread, nil) }
            callback(nil)
        }
    }
}
#endif
