import NIOCore

/// The Redis Cluster hash slot of a key: CRC16-XMODEM of the key (or of its
/// hash tag) modulo 16384, as the cluster specification defines it.
///
/// **Hash tags.** When a key contains `{`, and a `}` follows it with at least
/// one byte between the two, only the bytes between the first `{` and the
/// first `}` after it are hashed. So `{user1000}.following` and
/// `{user1000}.followers` share a slot; `{}` or a `{` without a closing `}`
/// hashes the whole key; in `{a}{b}` only `a` counts.
public struct ClusterSlot: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// The number of slots in a cluster.
    public static let count = 16_384

    /// The slot number, 0 to 16383.
    public let value: UInt16

    /// A slot from its number, reduced modulo 16384.
    public init(_ value: Int) {
        self.value = UInt16(truncatingIfNeeded: value & (Self.count - 1))
    }

    /// The slot of `key`'s bytes.
    public init(key: some Collection<UInt8>) {
        self.init(Int(Self.crc16(Self.hashedPart(of: key))))
    }

    /// The slot of a key held in a buffer (its readable bytes).
    public init(key: ByteBuffer) {
        self = key.withUnsafeReadableBytes { ClusterSlot(key: $0) }
    }

    /// The slot of a key given as text (its UTF-8 bytes).
    public init(key: String) {
        var key = key
        self = key.withUTF8 { ClusterSlot(key: $0) }
    }

    /// The bytes that are hashed: the hash tag when there is a non-empty one, else the whole key.
    static func hashedPart<Bytes: Collection<UInt8>>(of key: Bytes) -> Bytes.SubSequence {
        guard let open = key.firstIndex(of: UInt8(ascii: "{")) else { return key[...] }
        let afterOpen = key.index(after: open)
        guard let close = key[afterOpen...].firstIndex(of: UInt8(ascii: "}")), close != afterOpen else { return key[...] }
        return key[afterOpen..<close]
    }

    /// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection, no final XOR).
    public static func crc16(_ bytes: some Sequence<UInt8>) -> UInt16 {
        var crc: UInt16 = 0
        for byte in bytes {
            crc = (crc << 8) ^ Self.table[Int(UInt8(truncatingIfNeeded: crc >> 8) ^ byte)]
        }
        return crc
    }

    private static let table: [UInt16] = (0..<256).map { index -> UInt16 in
        var crc = UInt16(index) << 8
        for _ in 0..<8 {
            crc = crc & 0x8000 != 0 ? (crc << 1) ^ 0x1021 : crc << 1
        }
        return crc
    }

    /// The slot number.
    public var description: String { "\(self.value)" }

    /// Orders slots by number.
    public static func < (lhs: ClusterSlot, rhs: ClusterSlot) -> Bool { lhs.value < rhs.value }
}
