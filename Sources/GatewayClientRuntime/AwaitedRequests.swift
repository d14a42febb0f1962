/// The requests a connection awaits replies to, by request id.
///
/// A dictionary, except that the usual case, one request in flight, takes no
/// hashing: that one is kept in `solo`, and `others` (a dictionary) holds the
/// rest. A hit inserts, looks up and removes its request once each; in a
/// profile of the synchronous hit loop (`BENCH_PROFILE=sync`), the
/// dictionary's part of that (hashing the id, the uniqueness checks, the
/// bucket walk, the entries' copies) was 2.5% of the client's samples, an
/// eighth of its request bookkeeping. A request found in `solo` costs a comparison.
///
/// A class, not a struct: a struct held in the connection was copied and
/// destroyed whole around its inlined mutations (the optimizer's choice,
/// 1.3–2.1% of the samples, about what the dictionary cost); a class is
/// changed in place. The table is used under the connection's lock only, and
/// never re-entered (`update` and `forEach` run their closures on copies).
/// No I/O; tested on its own (`AwaitedRequestsTests`).
final class AwaitedRequests<Value> {
    /// The one request in flight when there is one, or the first of several.
    private var solo: (id: UInt64, value: Value)?
    /// The other requests in flight.
    private var others: [UInt64: Value] = [:]

    /// An empty table.
    init() {}

    /// How many requests are awaited.
    var count: Int {
        @inline(__always) get { (self.solo == nil ? 0 : 1) + self.others.count }
    }

    /// Whether no request is awaited.
    var isEmpty: Bool {
        @inline(__always) get { self.solo == nil && self.others.isEmpty }
    }

    /// The value of request `id`, if it is awaited.
    subscript(id: UInt64) -> Value? {
        @inline(__always) get {
            if self.solo?.id == id { return self.solo?.value }
            return self.others.isEmpty ? nil : self.others[id]
        }
    }

    /// Changes the value of request `id`, if it is awaited. `change` works on
    /// a copy of the value: no access to the table's state is in progress
    /// while it runs.
    @inline(__always)
    func update(_ id: UInt64, _ change: (inout Value) -> Void) {
        guard var value = self[id] else { return }
        change(&value)
        self.insert(id, value)
    }

    /// Awaits request `id` (or replaces its value).
    @inline(__always)
    func insert(_ id: UInt64, _ value: Value) {
        if let soloID = self.solo?.id {
            if soloID == id {
                self.solo!.value = value
            } else {
                self.others[id] = value
            }
        } else if !self.others.isEmpty, self.others[id] != nil {
            self.others[id] = value
        } else {
            self.solo = (id, value)
        }
    }

    /// Stops awaiting request `id`; returns its value, if it was awaited.
    @discardableResult @inline(__always)
    func removeValue(forKey id: UInt64) -> Value? {
        if self.solo?.id == id {
            defer { self.solo = nil }
            return self.solo?.value
        }
        return self.others.isEmpty ? nil : self.others.removeValue(forKey: id)
    }

    /// Calls `body` with each awaited request and its value, in no
    /// particular order (on a copy: `body` may change the table).
    func forEach(_ body: (UInt64, Value) throws -> Void) rethrows {
        let solo = self.solo
        let others = self.others
        if let solo { try body(solo.id, solo.value) }
        for (id, value) in others { try body(id, value) }
    }

    /// The ids of the awaited requests whose value satisfies `isIncluded`.
    func ids(where isIncluded: (Value) -> Bool) -> [UInt64] {
        var ids: [UInt64] = []
        self.forEach { id, value in if isIncluded(value) { ids.append(id) } }
        return ids
    }
}
