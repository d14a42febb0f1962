import GatewayDigest
import NIOCore

/// The names of the Redis store's keys, on one server or on a Redis Cluster.
///
/// For namespace `ns`, function hash `F` (see `RedisStore.functionID`),
/// version `V` and argument key `K` (hex):
///
/// | key | single server | cluster |
/// |---|---|---|
/// | entry | `cg:ns:e:F:V:K` | `cg:ns:e:{F:V:b}:K` |
/// | entry's fill lease (`RedisFillLeases`) | `cg:ns:l:F:V:K` | `cg:ns:l:{F:V:b}:K` |
/// | version index (sorted set of `K`) | `cg:{ns:F}:i:V` | `cg:ns:i:{F:V:b}`, one per bucket `b` |
/// | index taken over by a purge | `cg:{ns:F}:p:V:T` | `cg:ns:p:{F:V:b}:T` |
/// | versions with entries | `cg:{ns:F}:v` | same |
/// | registry record | `cg:{ns:F}:r` | same |
/// | function names | `cg:ns:fns` | same |
///
/// **Cluster buckets.** `b` is the first hex digit of `K`: a version's
/// entries fall into 16 buckets, each its own hash tag `{F:V:b}` and so its
/// own slot, which spreads a popular version over the masters; each
/// bucket's index shares its entries' tag, so storing an entry (its `SET` and
/// its `ZADD`) and each step of a purge (a script that reads a bucket's index
/// and UNLINKs its entries) stay within one slot. The registry record lives
/// in the function's own slot (`{ns:F}`), apart from the entries.
///
/// **Keys derived from an entry key.** An entry key carries its hash tag
/// before the argument key, so a key made by appending a suffix to an entry
/// key has the entry's slot. Keep it so: anything that must go with an
/// entry in one command or script is named with its tag. The fill lease
/// takes the tag but not the `e:` prefix (`leaseKey`), so that scans of
/// entries and a version's prefix never meet it.
///
/// The single-server layout is the cluster's with one bucket and the tags
/// placed for the registry's atomic capture: the registry's compare-and-set
/// script renames a version's index into a purge index in the same step that
/// claims it, which needs the index in the record's slot. A cluster cannot
/// do that across 16 slots, so there a purge captures each bucket when it starts.
enum RedisKeyLayout: Sendable, Hashable {
    /// One server.
    case single
    /// A Redis Cluster.
    case cluster

    /// The number of index buckets of a version on a cluster.
    static let clusterBuckets = 16

    /// The buckets of a version: `[nil]` on one server (one index), 0..<16 on a cluster.
    var buckets: [Int?] {
        switch self {
        case .single: [nil]
        case .cluster: (0..<Self.clusterBuckets).map { $0 }
        }
    }

    /// The bucket of argument key `hex` (its first hex digit), nil on one server.
    func bucket(ofHex hex: String) -> Int? {
        guard self == .cluster else { return nil }
        guard let first = hex.utf8.first else { return 0 }
        switch first {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return Int(first - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return Int(first - UInt8(ascii: "a")) + 10
        default: return Int(first) % Self.clusterBuckets
        }
    }

    private static let hexDigits = Array("0123456789abcdef")

    /// The entry's key.
    func entryKey(namespace: String, functionID: String, version: String, hex: String) -> String {
        // One interpolation each: this runs for every lookup.
        switch self {
        case .single: "cg:\(namespace):e:\(functionID):\(version):\(hex)"
        case .cluster: "cg:\(namespace):e:{\(functionID):\(version):\(Self.hexDigits[self.bucket(ofHex: hex) ?? 0])}:\(hex)"
        }
    }

    /// The entry's key, written straight into a buffer of its own size: the
    /// same bytes as `entryKey(namespace:functionID:version:hex:)`, for the
    /// lookup path, with no string built on the way.
    func entryKey(namespace: String, functionID: String, version: String, digest: SHA256Digest) -> ByteBuffer {
        let cluster = self == .cluster
        // "cg:" ns ":e:" ["{"] fid ":" version [":" bucket "}"] ":" 64 hex digits
        let length = 3 + namespace.utf8.count + 3 + functionID.utf8.count + 1 + version.utf8.count + (cluster ? 4 : 0) + 1 + 64
        var buffer = ByteBufferAllocator().buffer(capacity: length)
        // One write of the whole key: each ByteBuffer write checks capacity
        // and uniqueness, and this runs for every lookup.
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: length) { out in
            var at = Self.put("cg:", into: out, at: 0)
            at = Self.put(namespace, into: out, at: at)
            at = Self.put(cluster ? ":e:{" : ":e:", into: out, at: at)
            at = Self.put(functionID, into: out, at: at)
            at = Self.put(":", into: out, at: at)
            at = Self.put(version, into: out, at: at)
            if cluster {
                // The bucket: the first hex digit of the key, as `bucket(ofHex:)` reads it.
                let first = digest.withUnsafeBytes { $0[0] >> 4 }
                out[at] = UInt8(ascii: ":")
                out[at + 1] = first < 10 ? UInt8(ascii: "0") + first : UInt8(ascii: "a") + first - 10
                out[at + 2] = UInt8(ascii: "}")
                at += 3
            }
            out[at] = UInt8(ascii: ":")
            digest.writeHexDigits(to: UnsafeMutableRawBufferPointer(rebasing: out[(at + 1)...]))
            return at + 1 + 64
        }
        return buffer
    }

    /// Copies `string`'s UTF-8 bytes into `out` at `offset`; returns the offset after them.
    private static func put(_ string: String, into out: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        let copied = string.utf8.withContiguousStorageIfAvailable { bytes in
            UnsafeMutableRawBufferPointer(rebasing: out[offset...]).copyMemory(from: UnsafeRawBufferPointer(bytes))
            return bytes.count
        }
        if let copied { return offset + copied }
        var at = offset
        for byte in string.utf8 {
            out[at] = byte
            at += 1
        }
        return at
    }

    /// The fill lease of an entry: beside the entry, with the entry's hash
    /// tag on a cluster (so in its slot: the store's transaction and the
    /// claim script name both), and outside the entries' `e:` key space,
    /// which scans and version prefixes walk.
    func leaseKey(namespace: String, functionID: String, version: String, hex: String) -> String {
        switch self {
        case .single: "cg:\(namespace):l:\(functionID):\(version):\(hex)"
        case .cluster: "cg:\(namespace):l:{\(functionID):\(version):\(Self.hexDigits[self.bucket(ofHex: hex) ?? 0])}:\(hex)"
        }
    }

    /// What every entry key of one version starts with (the near-cache drops a version by it).
    func entryKeyPrefix(namespace: String, functionID: String, version: String) -> String {
        switch self {
        case .single: "cg:\(namespace):e:\(functionID):\(version):"
        case .cluster: "cg:\(namespace):e:{\(functionID):\(version):"
        }
    }

    /// What the entry keys of one bucket start with: an index member appended gives the entry key.
    func bucketEntryPrefix(namespace: String, functionID: String, version: String, bucket: Int?) -> String {
        switch (self, bucket) {
        case (.cluster, let bucket?): "cg:\(namespace):e:{\(functionID):\(version):\(Self.hexDigits[bucket])}:"
        default: "cg:\(namespace):e:\(functionID):\(version):"
        }
    }

    /// The version's index (of one bucket on a cluster).
    func indexKey(namespace: String, functionID: String, version: String, bucket: Int?) -> ByteBuffer {
        switch (self, bucket) {
        case (.cluster, let bucket?): ByteBuffer(string: "cg:\(namespace):i:{\(functionID):\(version):\(Self.hexDigits[bucket])}")
        default: ByteBuffer(string: "cg:{\(namespace):\(functionID)}:i:\(version)")
        }
    }

    /// An index taken over by a purge; `tag` tells which purge.
    func purgeIndexKey(namespace: String, functionID: String, version: String, bucket: Int?, tag: String) -> ByteBuffer {
        switch (self, bucket) {
        case (.cluster, let bucket?): ByteBuffer(string: "cg:\(namespace):p:{\(functionID):\(version):\(Self.hexDigits[bucket])}:\(tag)")
        default: ByteBuffer(string: "cg:{\(namespace):\(functionID)}:p:\(version):\(tag)")
        }
    }

    /// Whether the registry's compare-and-set renames a claimed version's
    /// index itself (one server), or the purge captures each bucket (cluster).
    var registryCapturesIndexes: Bool { self == .single }
}
