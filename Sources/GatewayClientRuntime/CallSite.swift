import GatewayProtocol
import Synchronization

/// A call site of a cached function, as the runtime uses it: the function
/// version it names (qualified name and version) and the two fields of its
/// lookup frames, worked out once and then shared by every call from there.
///
/// A call names its function with three strings (`function`, `version`,
/// `fileID`). Qualifying the name with the module (a new string each time)
/// and hashing the two strings to find the connection's registration took
/// about a fifteenth of a hit's in-process time (perf), so `resolve` does
/// that work once per version: an interned `CallSite` is identified by
/// its object identity from then on (a connection remembers which ones it
/// registered by that identity, keeping them alive while it does).
@usableFromInline
package final class CallSite: Sendable {
    /// The qualified name and the version, as the gateway sees them.
    let function: FunctionVersion
    /// `LookupFrames.fields(of: function)`.
    @usableFromInline package let fields: [UInt8]
    /// The three strings the call gave, compared by the front cache.
    private let given: Names

    /// The start of a key's material for the types of the first call that
    /// derived a key here (see `KeyBuilder.key`).
    @usableFromInline
    final class TypeNames: Sendable {
        /// The result type.
        @usableFromInline let result: ObjectIdentifier
        /// The arguments' types, in order.
        @usableFromInline let arguments: [ObjectIdentifier]
        /// The array header, the result type's name, the argument types' array.
        @usableFromInline let bytes: [UInt8]

        @usableFromInline
        init(result: ObjectIdentifier, arguments: [ObjectIdentifier], bytes: [UInt8]) {
            self.result = result
            self.arguments = arguments
            self.bytes = bytes
        }
    }

    /// Set once, by the first call (`remember`); read without a lock.
    ///
    /// An `Unmanaged` reference in an `Atomic`, released in `deinit`, rather
    /// than an `AtomicLazyReference`: reading it through the latter cost about
    /// 45 ns more per call in the client's own work on a hit
    /// (`scripts/bench.sh client`, "client work on a hit": 504–558 ns against
    /// 459–460 ns, 4 alternating runs each, 2026-12-06).
    private let rememberedTypeNames = Atomic<Unmanaged<TypeNames>?>(nil)

    /// The type names remembered for this site, if any.
    @usableFromInline
    var typeNames: TypeNames? {
        self.rememberedTypeNames.load(ordering: .acquiring)?.takeUnretainedValue()
    }

    /// Remembers `names`, unless another call did first.
    @usableFromInline
    func remember(_ names: TypeNames) {
        let retained = Unmanaged.passRetained(names)
        if !self.rememberedTypeNames.compareExchange(expected: nil, desired: retained, ordering: .acquiringAndReleasing).exchanged {
            retained.release()
        }
    }

    deinit {
        self.rememberedTypeNames.load(ordering: .acquiring)?.release()
    }

    private init(given: Names) {
        self.given = given
        self.function = FunctionVersion(function: KeyBuilder.qualified(given.function, fileID: given.fileID), version: given.version)
        self.fields = LookupFrames.fields(of: self.function)
    }

    /// The three strings that name a function version at a call site.
    private struct Names: Hashable, Sendable {
        var function: String
        var version: String
        var fileID: String
    }

    /// The interned functions, by their call sites' strings. Bounded: a
    /// program that makes up function names at run time (`cache(...)` is
    /// public for closures) gets fresh, uninterned objects past the bound,
    /// which are correct, only slower.
    private static let interned = Mutex<[Names: CallSite]>([:])
    private static let internedLimit = 4_096

    /// A direct-mapped cache in front of `interned`, indexed by the strings'
    /// in-memory representation (below).
    private static let recent = Mutex<[CallSite?]>(Array(repeating: nil, count: recentSlots))
    private static let recentSlots = 64

    /// The function version that `function`, `version` and `fileID` name.
    ///
    /// The usual caller passes string literals, and a literal is the same
    /// 16 bytes (a pointer into the binary, its length and flags) on every
    /// call. Those bytes pick a slot of `recent`; the entry there is taken
    /// only if its strings are equal to these, which `String ==` sees at once
    /// when the representations are identical. So the bytes only choose
    /// where to look, never decide equality: equal strings with different
    /// representations (built at run time) simply land in other slots or go
    /// to `interned`, which hashes the characters as usual.
    @usableFromInline
    static func resolve(function: String, version: String, fileID: String) -> CallSite {
        let slot = Self.slot(function, version, fileID)
        if let entry = Self.recent.withLock({ $0[slot] }),
           entry.given.function == function, entry.given.version == version, entry.given.fileID == fileID {
            return entry
        }
        let site = Names(function: function, version: version, fileID: fileID)
        let entry = Self.interned.withLock { interned -> CallSite in
            if let known = interned[site] { return known }
            let made = CallSite(given: site)
            if interned.count < Self.internedLimit { interned[site] = made }
            return made
        }
        Self.recent.withLock { $0[slot] = entry }
        return entry
    }

    /// The slot of `recent` for these strings: a mix of their representations' bytes.
    private static func slot(_ function: String, _ version: String, _ fileID: String) -> Int {
        var mixed: UInt64 = 0
        Self.mix(function, into: &mixed)
        Self.mix(version, into: &mixed)
        Self.mix(fileID, into: &mixed)
        // The top 6 bits: `recentSlots` is 64.
        return Int(truncatingIfNeeded: mixed >> 58)
    }

    private static func mix(_ string: String, into mixed: inout UInt64) {
        withUnsafeBytes(of: string) { raw in
            var offset = 0
            while offset + 8 <= raw.count {
                mixed = (mixed ^ raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) &* 0x9E37_79B9_7F4A_7C15
                offset += 8
            }
        }
    }
}

extension CallSite {
    /// The function version `function`, already qualified (for tests and tools).
    static func named(_ function: FunctionVersion) -> CallSite {
        Self.resolve(function: function.function, version: function.version, fileID: "")
    }
}
