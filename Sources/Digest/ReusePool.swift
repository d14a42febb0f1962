import Synchronization

/// A few idle objects that are expensive to make and cheap to reuse (a
/// msgpack-c zone), lent out one at a time.
///
/// A cached call decodes its result on every hit; making and freeing such an
/// object each time costs more than the work done with
/// it. `borrow` takes an idle one (or makes one), lends it to its closure and
/// puts it back, keeping at most `limit`. An object is used by the one thread
/// that borrowed it, so `Object` must only be safe to hand between threads
/// (`Sendable`), not to share.
///
/// Public, with inlinable methods, so that the other modules' calls are
/// specialized for `Object` (`package` inlinable code was not, in this
/// build): unspecialized, every call looked up the generic metadata of
/// `[Object]` at run time, a twentieth of a cached call's in-process time.
public final class ReusePool<Object: AnyObject & Sendable>: Sendable {
    @usableFromInline let idle = Mutex<[Object]>([])
    @usableFromInline let limit: Int
    @usableFromInline let make: @Sendable () throws -> Object

    /// A pool that keeps at most `limit` idle objects and makes new ones with `make`.
    public init(limit: Int = 16, make: @escaping @Sendable () throws -> Object) {
        self.limit = limit
        self.make = make
    }

    /// Runs `body` with an object from the pool (a new one when it is empty)
    /// and puts it back afterwards. The object keeps whatever state its last
    /// borrower left: `body` starts by resetting it, or its owner's type
    /// leaves it reset.
    @inlinable
    public func borrow<Result>(_ body: (Object) throws -> Result) throws -> Result {
        let object = try self.take()
        defer { self.giveBack(object) }
        return try body(object)
    }

    /// An idle object, or a new one. Not generic over anything but `Object`
    /// (unlike `borrow`), so that a generic caller still gets it specialized.
    @inlinable
    public func take() throws -> Object {
        try self.idle.withLock { $0.popLast() } ?? self.make()
    }

    /// Puts `object` back, unless `limit` objects are idle already.
    @inlinable
    public func giveBack(_ object: Object) {
        self.idle.withLock { idle in
            if idle.count < self.limit { idle.append(object) }
        }
    }
}
