import Foundation
@testable import Gateway
import GatewayProtocol
import GatewayTestSupport
import Logging
import NIOCore
import NIOEmbedded
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The signing store around an in-memory store, whose raw entries the test
/// can read and overwrite as an attacker with access to the backend would.
/// The same against a real Redis and a real gateway is in `GatewayIntegrityTests`.
@Suite struct IntegrityStoreTests {
    static let function = FunctionVersion(function: "Tests.price(of:)", version: "v1")

    struct Harness {
        let inner = MemoryStore(limitBytes: 1 << 20)
        let store: IntegrityStore
        let loop = EmbeddedEventLoop()

        init(key: [UInt8] = [UInt8](repeating: 7, count: 32)) throws {
            var logger = Logger(label: "cache-gateway.tests.integrity")
            logger.logLevel = .critical
            self.store = IntegrityStore(wrapping: self.inner, key: try IntegrityStore.Key(bytes: key), logger: logger)
        }

        func key(_ argument: Int, namespace: String = "ns", function: FunctionVersion = IntegrityStoreTests.function) throws -> StorageKey {
            StorageKey(namespace: namespace, function: function, key: try CacheKey(hashing: argument))
        }

        /// Where the wrapped store keeps the signed entry of `key`.
        func raw(_ key: StorageKey) -> StorageKey {
            var raw = key
            raw.namespace = IntegrityStore.signedNamespace(key.namespace)
            return raw
        }

        func store(_ key: StorageKey, _ value: String, into target: (any CacheStore)? = nil) throws -> Bool {
            try (target ?? self.store).store(key, entry: StoreEntry(value: ByteBuffer(string: value), ttl: .seconds(60), computeMicroseconds: 5), on: self.loop).wait()
        }

        func failures() -> UInt64? {
            guard case .count(let count) = self.store.statistics["integrityFailures"] else { return nil }
            return count
        }
    }

    @Test func aSignedValueIsServedAsItWasStored() throws {
        let harness = try Harness()
        let key = try harness.key(1)
        #expect(try harness.store.lookup(key, on: harness.loop).wait() == .miss)
        #expect(try harness.store(key, "forty-two"))
        #expect(try harness.store.lookup(key, on: harness.loop).wait().withoutExpiry == .hit(ByteBuffer(string: "forty-two"), computeMicroseconds: 5))
        // The wrapped store holds the 32-byte code, then the value, in the signed namespace.
        guard case .hit(let raw, _, _) = try harness.inner.lookup(harness.raw(key), on: harness.loop).wait() else {
            throw TestFailure("the signed entry is not where it should be")
        }
        #expect(raw.readableBytes == IntegrityStore.codeLength + 9)
        #expect(Array(raw.readableBytesView.suffix(9)) == Array("forty-two".utf8))
        #expect(try harness.inner.lookup(key, on: harness.loop).wait() == .miss, "nothing is stored unsigned")
        #expect(harness.failures() == 0)
    }

    @Test func aChangedValueIsAMissIsDeletedAndIsCounted() throws {
        let harness = try Harness()
        let key = try harness.key(1)
        #expect(try harness.store(key, "forty-two"))
        guard case .hit(let raw, _, _) = try harness.inner.lookup(harness.raw(key), on: harness.loop).wait() else {
            throw TestFailure("no signed entry")
        }
        for index in [0, IntegrityStore.codeLength - 1, IntegrityStore.codeLength, raw.readableBytes - 1] {
            var tampered = Array(raw.readableBytesView)
            tampered[index] ^= 0x20
            #expect(try harness.inner.store(harness.raw(key), entry: StoreEntry(value: ByteBuffer(bytes: tampered), ttl: .seconds(60), computeMicroseconds: 5), on: harness.loop).wait())
            #expect(try harness.store.lookup(key, on: harness.loop).wait() == .miss, "byte \(index) changed")
            #expect(try harness.inner.lookup(harness.raw(key), on: harness.loop).wait() == .miss, "the forged entry is deleted")
        }
        #expect(harness.failures() == 4)
        // A value too short to hold a code fails too.
        #expect(try harness.store(harness.raw(key), "short", into: harness.inner))
        #expect(try harness.store.lookup(key, on: harness.loop).wait() == .miss)
        #expect(harness.failures() == 5)
    }

    @Test func aValidEntryCopiedUnderAnotherIdentityDoesNotVerify() throws {
        let harness = try Harness()
        let original = try harness.key(1)
        #expect(try harness.store(original, "one's value"))
        guard case .hit(let raw, _, _) = try harness.inner.lookup(harness.raw(original), on: harness.loop).wait() else {
            throw TestFailure("no signed entry")
        }
        let others = [
            try harness.key(2),
            try harness.key(1, namespace: "other"),
            try harness.key(1, function: FunctionVersion(function: Self.function.function, version: "v2")),
            try harness.key(1, function: FunctionVersion(function: "Tests.cost(of:)", version: "v1")),
        ]
        for other in others {
            #expect(try harness.inner.store(harness.raw(other), entry: StoreEntry(value: raw, ttl: .seconds(60), computeMicroseconds: 5), on: harness.loop).wait())
            #expect(try harness.store.lookup(other, on: harness.loop).wait() == .miss, "\(other)")
        }
        #expect(harness.failures() == UInt64(others.count))
        #expect(try harness.store.lookup(original, on: harness.loop).wait().withoutExpiry == .hit(ByteBuffer(string: "one's value"), computeMicroseconds: 5))
    }

    @Test func anotherKeySeesEveryEntryAsForged() throws {
        let harness = try Harness()
        let key = try harness.key(1)
        #expect(try harness.store(key, "signed with key 7"))
        var logger = Logger(label: "cache-gateway.tests.integrity")
        logger.logLevel = .critical
        let otherKey = IntegrityStore(wrapping: harness.inner, key: try IntegrityStore.Key(bytes: [UInt8](repeating: 8, count: 32)), logger: logger)
        #expect(try otherKey.lookup(key, on: harness.loop).wait() == .miss)
        #expect(otherKey.statistics["integrityFailures"] == .count(1))
    }

    @Test func invalidationReachesTheSignedEntries() throws {
        let harness = try Harness()
        for argument in 0..<3 { #expect(try harness.store(try harness.key(argument), "v\(argument)")) }
        let deleted = try harness.store.invalidate(namespace: "ns", function: Self.function.function, version: Self.function.version, key: nil, on: harness.loop).wait()
        #expect(deleted == 3)
        #expect(try harness.store.lookup(try harness.key(0), on: harness.loop).wait() == .miss)
    }

    // MARK: Key files

    func keyFile(_ contents: [UInt8], mode: mode_t = 0o600) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("hmac-\(UUID().uuidString.prefix(8)).key").path
        #expect(FileManager.default.createFile(atPath: path, contents: Data(contents)))
        #expect(chmod(path, mode) == 0)
        return path
    }

    @Test func aKeyFileIsReadLessItsTrailingLineBreak() throws {
        let hex = Array("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".utf8)
        let path = try self.keyFile(hex + Array("\r\n".utf8))
        defer { unlink(path) }
        let key = try IntegrityStore.Key(contentsOfFile: path)
        #expect(key.bytes == hex)
        #expect(key.description == "HMAC key (64 bytes)")
    }

    @Test func unusableKeyFilesAreRefusedWithoutShowingTheKey() throws {
        let secret = Array("short-secret-31-bytes-xxxxxxxxx".utf8)
        #expect(secret.count == 31)
        let short = try self.keyFile(secret + [0x0a])
        let open = try self.keyFile([UInt8](repeating: 0x61, count: 32), mode: 0o644)
        let long = try self.keyFile([UInt8](repeating: 0x61, count: IntegrityStore.Key.maximumLength + 1))
        defer { for path in [short, open, long] { unlink(path) } }
        let cases = [
            (short, "at least 32"),
            (open, "chmod o-rwx"),
            (long, "longer than"),
            ("/nonexistent/hmac.key", "cannot be opened"),
            ("/tmp", "not a regular file"),
        ]
        for (path, reason) in cases {
            let error = #expect(throws: GatewayError.self, "\(path)") { try IntegrityStore.Key(contentsOfFile: path) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains(reason) == true, "\(error?.message ?? "")")
            #expect(error?.message.contains("short-secret") == false)
        }
        #expect(throws: GatewayError.self) { try IntegrityStore.Key(bytes: [UInt8](repeating: 1, count: 31)) }
    }
}
