@testable import Gateway
import NIOCore
import Testing

/// An event loop's timers, driven with explicit times (no clock, no I/O).
@Suite struct TimerQueueTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func timersComeDueInDeadlineOrderAndNotBefore() {
        var timers = TimerQueue<String>()
        _ = timers.schedule("c", at: self.start + .milliseconds(30))
        _ = timers.schedule("a", at: self.start + .milliseconds(10))
        _ = timers.schedule("b", at: self.start + .milliseconds(20))
        #expect(timers.nextDeadline() == self.start + .milliseconds(10))
        #expect(timers.popDue(now: self.start + .milliseconds(9)) == nil)
        #expect(timers.popDue(now: self.start + .milliseconds(25)) == "a")
        #expect(timers.popDue(now: self.start + .milliseconds(25)) == "b")
        #expect(timers.popDue(now: self.start + .milliseconds(25)) == nil)
        #expect(timers.count == 1)
        #expect(timers.popDue(now: .distantFuture) == "c")
        #expect(timers.nextDeadline() == nil)
    }

    @Test func timersWithTheSameDeadlineComeDueInSchedulingOrder() {
        var timers = TimerQueue<Int>()
        for value in 0..<50 { _ = timers.schedule(value, at: self.start) }
        var order: [Int] = []
        while let value = timers.popDue(now: self.start) { order.append(value) }
        #expect(order == Array(0..<50))
    }

    @Test func aCancelledTimerNeverComesDueAndNoLongerSetsTheNextDeadline() {
        var timers = TimerQueue<String>()
        let first = timers.schedule("first", at: self.start + .milliseconds(1))
        _ = timers.schedule("second", at: self.start + .milliseconds(2))
        #expect(timers.cancel(first) == "first")
        #expect(timers.cancel(first) == nil)
        #expect(timers.count == 1)
        #expect(timers.nextDeadline() == self.start + .milliseconds(2))
        #expect(timers.popDue(now: .distantFuture) == "second")
        #expect(timers.popDue(now: .distantFuture) == nil)
    }

    @Test func cancellingATimerThatCameDueDoesNothing() {
        var timers = TimerQueue<String>()
        let id = timers.schedule("due", at: self.start)
        #expect(timers.popDue(now: self.start) == "due")
        #expect(timers.cancel(id) == nil)
        #expect(timers.count == 0)
    }

    /// Against a sorted list, with random deadlines and cancellations.
    @Test func agreesWithASortedListUnderRandomSchedulingAndCancelling() {
        var generator = SystemRandomNumberGenerator()
        var timers = TimerQueue<Int>()
        var expected: [(deadline: Int64, value: Int)] = []
        var ids: [(TimerQueue<Int>.ID, Int)] = []
        for value in 0..<2_000 {
            let offset = Int64.random(in: 0..<500, using: &generator)
            ids.append((timers.schedule(value, at: self.start + .milliseconds(offset)), value))
            expected.append((offset, value))
            if Int.random(in: 0..<4, using: &generator) == 0, let index = ids.indices.randomElement(using: &generator) {
                let (id, cancelled) = ids.remove(at: index)
                if timers.cancel(id) != nil { expected.removeAll { $0.value == cancelled } }
            }
        }
        expected.sort { ($0.deadline, $0.value) < ($1.deadline, $1.value) }
        var got: [Int] = []
        var now = self.start
        while let deadline = timers.nextDeadline() {
            now = deadline
            while let value = timers.popDue(now: now) { got.append(value) }
        }
        #expect(got == expected.map(\.value))
        #expect(timers.count == 0)
    }
}
