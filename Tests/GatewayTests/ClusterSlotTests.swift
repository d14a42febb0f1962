import GatewayDigest
import NIOCore
import Testing

@testable import Gateway

/// Slots and hash tags, against the Redis Cluster specification.
@Suite struct ClusterSlotTests {
    @Test func crc16MatchesTheSpecificationsVector() {
        // The cluster specification: CRC16-XMODEM("123456789") = 0x31C3.
        #expect(ClusterSlot.crc16(Array("123456789".utf8)) == 0x31C3)
        #expect(ClusterSlot.crc16([]) == 0)
        #expect(ClusterSlot(key: "123456789").value == 0x31C3 % 16384)
    }

    @Test func slotsMatchWhatRedisAnswersForClusterKeyslot() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        #expect(ClusterSlot(key: "foo").value == 12182)
        #expect(ClusterSlot(key: "bar").value == 5061)
        #expect(ClusterSlot(key: "hello").value == 866)
        #expect(ClusterSlot(key: "").value == 0)
    }

    @Test func onlyTheFirstNonEmptyHashTagCounts() {
        let user = ClusterSlot(key: "user1000")
        #expect(ClusterSlot(key: "{user1000}.following") == user)
        #expect(ClusterSlot(key: "{user1000}.followers") == user)
        #expect(ClusterSlot(key: "x{user1000}y{other}") == user, "only the first {...} counts")
        // An empty tag, or a '{' without '}', hashes the whole key.
        #expect(ClusterSlot(key: "foo{}{bar}") == ClusterSlot(key: Array("foo{}{bar}".utf8)))
        #expect(ClusterSlot(key: "foo{}{bar}") != ClusterSlot(key: "bar"))
        #expect(ClusterSlot(key: "foo{bar") == ClusterSlot(key: Array("foo{bar".utf8)))
        #expect(ClusterSlot(key: "foo{bar") != ClusterSlot(key: "bar"))
        // The first '}' after the first '{' closes the tag: "{{bar}}" hashes "{bar".
        #expect(ClusterSlot(key: "foo{{bar}}zap") == ClusterSlot(key: "{bar"))
        #expect(ClusterSlot(key: "foo{bar}{zap}") == ClusterSlot(key: "bar"))
        #expect(ClusterSlot(key: ByteBuffer(string: "{user1000}.x")) == user)
    }

    @Test func slotNumbersWrapAt16384() {
        #expect(ClusterSlot(16384).value == 0)
        #expect(ClusterSlot(16383).value == 16383)
    }

    @Test func theClusterLayoutKeepsAnEntrysIndexAndDerivedKeysInItsSlot() {
        let layout = RedisKeyLayout.cluster
        let hex = "a3" + String(repeating: "0", count: 62)
        let entry = layout.entryKey(namespace: "ns", functionID: "F", version: "V", hex: hex)
        #expect(entry == "cg:ns:e:{F:V:a}:\(hex)")
        let slot = ClusterSlot(key: entry)
        let bucket = layout.bucket(ofHex: hex)
        #expect(bucket == 10)
        #expect(ClusterSlot(key: layout.indexKey(namespace: "ns", functionID: "F", version: "V", bucket: bucket)) == slot)
        #expect(ClusterSlot(key: layout.purgeIndexKey(namespace: "ns", functionID: "F", version: "V", bucket: bucket, tag: "7")) == slot)
        #expect(ClusterSlot(key: entry + ":l") == slot, "a key derived by a suffix stays in the entry's slot")
        #expect(entry.hasPrefix(layout.entryKeyPrefix(namespace: "ns", functionID: "F", version: "V")))
        // A version's 16 buckets spread over many slots.
        let slots = Set((0..<16).map { ClusterSlot(key: layout.indexKey(namespace: "ns", functionID: "F", version: "V", bucket: $0)) })
        #expect(slots.count == 16)
        // One server keeps its layout.
        #expect(RedisKeyLayout.single.entryKey(namespace: "ns", functionID: "F", version: "V", hex: hex) == "cg:ns:e:F:V:\(hex)")
        #expect(RedisKeyLayout.single.buckets == [nil])
    }

    @Test("the lookup path's entry key is the same bytes as the layout's string, on both layouts and in every bucket")
    func entryKeyBuffersMatchTheStrings() throws {
        // Multi-byte UTF-8 and an empty version too: lengths are counted in bytes.
        let names = [(namespace: "ns", functionID: "F1", version: "v-2"), ("名前-ns", "f\u{301}", ""), ("", "F", "v" + String(repeating: "é", count: 40))]
        for layout in [RedisKeyLayout.single, .cluster] {
            for (namespace, functionID, version) in names {
                for first in 0..<16 {
                    let bytes = [UInt8(first << 4 | 0x0b)] + (1..<32).map { UInt8(truncatingIfNeeded: $0 &* 37) }
                    let digest = try #require(SHA256Digest(bytes: bytes))
                    let string = layout.entryKey(namespace: namespace, functionID: functionID, version: version, hex: digest.hexString)
                    let buffer = layout.entryKey(namespace: namespace, functionID: functionID, version: version, digest: digest)
                    #expect(String(buffer: buffer) == string)
                    #expect(buffer.readableBytes == string.utf8.count)
                }
            }
        }
    }
}
