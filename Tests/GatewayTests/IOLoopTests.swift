#if os(Linux)
import Glibc
import NIOConcurrencyHelpers
import NIOCore
import Testing

@testable import Gateway

/// The gateway's own event loop as a SwiftNIO `EventLoop`: tasks, timers,
/// promises and shutdown, on a real loop thread.
@Suite struct IOLoopTests {
    @Test func tasksFromOtherThreadsRunOnTheLoopInOrder() async throws {
        let group = try IOLoopGroup.start(count: 1)
        let loop = group.next()
        #expect(!loop.inEventLoop)
        let seen = NIOLockedValueBox<[Int]>([])
        let futures = (0..<1000).map { index in
            loop.submit {
                #expect(loop.inEventLoop)
                seen.withLockedValue { $0.append(index) }
            }
        }
        for future in futures { try await future.get() }
        #expect(seen.withLockedValue { $0 } == Array(0..<1000))
        try await group.shutdownGracefully()
    }

    @Test func aTaskQueuedByATaskRunsInALaterTurn() async throws {
        let group = try IOLoopGroup.start(count: 1)
        let loop = group.next()
        let order = try await loop.flatSubmit {
            let order = NIOLoopBoundBox([String](), eventLoop: loop)
            let promise = loop.makePromise(of: [String].self)
            loop.execute {
                order.value.append("inner")
                promise.succeed(order.value)
            }
            order.value.append("outer")
            return promise.futureResult
        }.get()
        #expect(order == ["outer", "inner"])
        try await group.shutdownGracefully()
    }

    @Test func timersFireAfterTheirDeadlineAndCancelledOnesNever() async throws {
        let group = try IOLoopGroup.start(count: 1)
        let loop = group.next()
        let start = NIODeadline.now()
        let fired = loop.scheduleTask(in: .milliseconds(20)) { NIODeadline.now() }
        let cancelled = loop.scheduleTask(in: .milliseconds(10)) { Issue.record("a cancelled timer ran") }
        cancelled.cancel()
        #expect(try await fired.futureResult.get() - start >= .milliseconds(20))
        await #expect(throws: EventLoopError.cancelled) { try await cancelled.futureResult.get() }
        // A timer scheduled on the loop itself, with a task that throws.
        struct Failure: Error, Equatable {}
        let failing = try await loop.submit { loop.scheduleTask(in: .milliseconds(1)) { throw Failure() } }.get()
        await #expect(throws: Failure()) { try await failing.futureResult.get() }
        try await group.shutdownGracefully()
    }

    /// On the loop, `now` is the turn's time: it stands still within a turn,
    /// is never ahead of the clock, and moves on with the next turn. Timers
    /// scheduled against it still fire no earlier than their deadlines.
    @Test func theLoopsClockIsReadOncePerTurnAndTimersNeverFireEarly() async throws {
        let group = try IOLoopGroup.start(count: 1)
        let loop = group.next()
        let turn = try await loop.submit { () -> (first: NIODeadline, clock: NIODeadline, second: NIODeadline) in
            let first = loop.now
            usleep(2000)
            return (first, NIODeadline.now(), loop.now)
        }.get()
        #expect(turn.first == turn.second)
        #expect(turn.clock - turn.first >= .milliseconds(2))
        let next = try await loop.submit { loop.now }.get()
        #expect(next > turn.first)
        let deadlines = (0..<50).map { NIODeadline.now() + .milliseconds(Int64($0 % 7)) }
        let timers = try await loop.submit {
            deadlines.map { deadline in loop.scheduleTask(deadline: deadline) { NIODeadline.now() >= deadline } }
        }.get()
        for timer in timers { #expect(try await timer.futureResult.get(), "a timer fired before its deadline") }
        try await group.shutdownGracefully()
    }

    @Test func theGroupHandsOutEveryLoopInTurnAndPrefersTheCallersOwn() async throws {
        let group = try IOLoopGroup.start(count: 3)
        let loops = (0..<6).map { _ in ObjectIdentifier(group.next()) }
        #expect(Set(loops).count == 3)
        #expect(Array(loops[0..<3]) == Array(loops[3..<6]))
        let second = group.next()
        #expect(try await second.submit { ObjectIdentifier(group.any()) }.get() == ObjectIdentifier(second))
        try await group.shutdownGracefully()
    }
}
#endif
