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
/// changed in place. Its state sits behind a pointer it owns, not in stored
/// properties: the compiler checked every access to those at run time
/// (exclusivity enforcement: a dictionary's mutation spans calls it cannot
/// see through, and then every access to the property is checked, a
/// thread-local lookup each), which made the table one of the connection's
/// main sources of such checks. Accesses through a pointer are not checked;
/// the table is used under the connection's lock only, and never re-entered
/// (`update` and `forEach` run their closures on copies). No I/O; tested
/// on its own (`AwaitedRequestsTests`).
///
/// Measured (`scripts/bench.sh client`, 4 alternating runs, 2026-12-06):
/// with the state in plain stored properties and `CallSite`'s type names in
/// an `AtomicLazyReference`, the `async` `@Cached` hit was 1.63–1.68× a
/// hiredis GET (median 1.64×) against 1.53–1.60× (1.57×) before; with this
/// pointer and `CallSite`'s `Unmanaged` back, 1.52–1.60× (1.585×). Of that,
/// the type names account for about 45 ns of the client's own work (see
/// `CallSite.rememberedTypeNames`); the rest, about 0.04× of a GET (some
/// 250 ns), is taken to be this table's share (runs with only one of the two
/// restored were too noisy to split it directly).
final class AwaitedRequests<Value> {
    private struct State {
        var solo: (id: UInt64, value: Value)?
        var others: [UInt64: Value] = [:]
    }

    private let state: UnsafeMutablePointer<State>

    /// An empty table.
    init() {
        self.state = .allocate(capacity: 1)
        self.state.initialize(to: State())
    }

    deinit {
        self.state.deinitialize(count: 1)
        self.state.deallocate()
    }

    /// How many requests are awaited.
    var count: Int {
        @inline(__always) get { (self.state.pointee.solo == nil ? 0 : 1) + self.state.pointee.others.count }
    }

    /// Whether no request is awaited.
    var isEmpty: Bool {
        @inline(__always) get { self.state.pointee.solo == nil && self.state.pointee.others.isEmpty }
    }

    /// The value of request `id`, if it is awaited.
    subscript(id: UInt64) -> Value? {
        @inline(__always) get {
            if self.state.pointee.solo?.id == id { return self.state.pointee.solo?.value }
            return self.state.pointee.others.isEmpty ? nil : self.state.pointee.others[id]
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
        if let soloID = self.state.pointee.solo?.id {
            if soloID == id {
                self.state.pointee.solo!.value = value
            } else {
                self.state.pointee.others[id] = value
            }
        } else if !self.state.pointee.others.isEmpty, self.state.pointee.others[id] != nil {
            self.state.pointee.others[id] = value
        } else {
            self.state.pointee.solo = (id, value)
        }
    }

    /// Stops awaiting request `id`; returns its value, if it was awaited.
    @discardableResult @inline(__always)
    func removeValue(forKey id: UInt64) -> Value? {
        if self.state.pointee.solo?.id == id {
            defer { self.state.pointee.solo = nil }
            return self.state.pointee.solo?.value
        }
        return self.state.pointee.others.isEmpty ? nil : self.state.pointee.others.removeValue(forKey: id)
    }

    /// Calls `body` with each awaited request and its value, in no
    /// particular order (on a copy: `body` may change the table).
    func forEach(_ body: (UInt64, Value) throws -> Void) rethrows {
        let state = self.state.pointee
        if let solo = state.solo { try body(solo.id, solo.value) }
        for (id, value) in state.others { try body(id, value) }
    }

    /// The ids of the awaited requests whose value satisfies `isIncluded`.
    func ids(where isIncluded: (Value) -> Bool) -> [UInt64] {
        var ids: [UInt64] = []
        self.forEach { id, value in if isIncluded(value) { ids.append(id) } }
        return ids
    }
}
