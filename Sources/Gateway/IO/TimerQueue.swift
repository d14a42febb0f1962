import NIOCore

/// The timers of one event loop: a min-heap of deadlines, with cancellation
/// by id. A value with no clock and no I/O: the loop asks it when the next
/// deadline is, and takes what has come due at the time it read.
///
/// Cancellation is lazy: a cancelled timer stays in the heap, marked, until
/// it reaches the top, so that cancelling costs a dictionary removal and not
/// a search. `count` counts only live timers.
struct TimerQueue<Work> {
    /// Names one scheduled timer, for `cancel`.
    struct ID: Hashable {
        fileprivate let value: UInt64
    }

    private struct Entry {
        let deadline: NIODeadline
        let id: UInt64
    }

    private var heap: [Entry] = []
    private var work: [UInt64: Work] = [:]
    private var nextID: UInt64 = 0

    /// How many timers are scheduled and not cancelled.
    var count: Int { self.work.count }

    /// Schedules `work` for `deadline`. Timers with the same deadline come due
    /// in the order they were scheduled.
    mutating func schedule(_ work: Work, at deadline: NIODeadline) -> ID {
        let id = self.nextID
        self.nextID &+= 1
        self.work[id] = work
        self.heap.append(Entry(deadline: deadline, id: id))
        self.siftUp(self.heap.count - 1)
        return ID(value: id)
    }

    /// Cancels a timer; returns its work, or nil when it already came due or
    /// was cancelled.
    @discardableResult
    mutating func cancel(_ id: ID) -> Work? {
        self.work.removeValue(forKey: id.value)
    }

    /// The earliest deadline of a live timer.
    mutating func nextDeadline() -> NIODeadline? {
        self.dropCancelledTop()
        return self.heap.first?.deadline
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    mutating func popDue(now: NIODeadline) -> Work? {
        self.dropCancelledTop()
        guard let top = self.heap.first, top.deadline <= now else { return nil }
        self.removeTop()
        return self.work.removeValue(forKey: top.id)
    }

    private mutating func dropCancelledTop() {
        while let top = self.heap.first, self.work[top.id] == nil {
            self.removeTop()
        }
    }

    private mutating func removeTop() {
        let last = self.heap.removeLast()
        guard !self.heap.isEmpty else { return }
        self.heap[0] = last
        self.siftDown(0)
    }

    /// Orders by deadline, then by scheduling order.
    private func isBefore(_ a: Entry, _ b: Entry) -> Bool {
        a.deadline < b.deadline || (a.deadline == b.deadline && a.id < b.id)
    }

    private mutating func siftUp(_ index: Int) {
        var child = index
        while child > 0 {
            let parent = (child - 1) / 2
            guard self.isBefore(self.heap[child], self.heap[parent]) else { return }
            self.heap.swapAt(child, parent)
            child = parent
        }
    }

    private mutating func siftDown(_ index: Int) {
        var parent = index
        while true {
            let left = 2 * parent + 1
            guard left < self.heap.count else { return }
            var smallest = left
            if left + 1 < self.heap.count, self.isBefore(self.heap[left + 1], self.heap[left]) { smallest = left + 1 }
            guard self.isBefore(self.heap[smallest], self.heap[parent]) else { return }
            self.heap.swapAt(smallest, parent)
            parent = smallest
        }
    }
}
