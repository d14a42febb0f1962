#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import GatewayDigest
import GatewayProtocol
import GatewaySystem
import Logging
import NIOCore
import Synchronization

/// A store that signs every value it stores and serves only values whose
/// signature verifies, around any other store (`--hmac-key-file`).
///
/// So whoever can write to Redis, but does not hold the key, cannot feed
/// workers forged results: a value that was changed, or written by someone
/// else, or copied from another entry, fails verification, and is then
/// treated as a miss, deleted, counted (`integrityFailures` in the stats) and
/// logged (at most once per `logInterval`).
///
/// **Format.** The wrapped store keeps, for each entry, the 32-byte
/// HMAC-SHA-256 followed by the value. The code is computed over
///
/// ```
/// "cache-gateway entry v1" 0x00
/// u32 length, namespace   u32 length, function   u32 length, version
/// key (32 bytes)          u64 length, value
/// ```
///
/// (lengths big-endian, strings as UTF-8), with the namespace the wrapped
/// store sees, so that a valid entry cannot be passed off under another
/// namespace, function, version or key. The TTL and the compute time are not
/// covered: neither reaches a worker.
///
/// **Namespace.** Signed entries live in the namespace `<namespace>+hmac`
/// ('+' cannot occur in a configured namespace). A gateway without the key
/// that shares the backend therefore never serves a signed value (its
/// 32-byte code would reach the worker as part of the value), and a gateway
/// with the key never even reads unsigned ones: turning signing on or off
/// starts from an empty cache instead of serving or deleting the other
/// kind's entries. Gateways sharing a namespace must share the key; one with
/// another key sees every entry as forged, and deletes it.
public final class IntegrityStore: CacheStore {
    /// The secret key of the HMAC.
    public struct Key: Sendable, CustomStringConvertible {
        let bytes: [UInt8]

        /// The shortest key accepted: 32 bytes, the size of the code (RFC 2104
        /// advises keys no shorter than the hash's output).
        public static let minimumLength = 32
        /// The longest key file read, so that a wrong path (a log, a device)
        /// is refused instead of read to its end.
        public static let maximumLength = 4096

        /// A key of `bytes`; throws `.invalidConfiguration` below `minimumLength`.
        public init(bytes: some Collection<UInt8>) throws {
            guard bytes.count >= Self.minimumLength else {
                throw GatewayError(.invalidConfiguration, "the HMAC key has \(bytes.count) bytes; it must have at least \(Self.minimumLength)")
            }
            guard bytes.count <= Self.maximumLength else {
                throw GatewayError(.invalidConfiguration, "the HMAC key has more than \(Self.maximumLength) bytes")
            }
            self.bytes = Array(bytes)
        }

        /// Reads a key file: its bytes, less trailing line breaks (so that
        /// `openssl rand -hex 32 > FILE` makes a 64-byte key). Throws
        /// `.invalidConfiguration` when the file cannot be read, is shorter than
        /// `minimumLength` or longer than `maximumLength`, or is readable or
        /// writable by others than its owner and group (`chmod o-rwx` it).
        /// Messages never contain the key.
        public init(contentsOfFile path: String) throws {
            func fail(_ reason: String) -> GatewayError {
                GatewayError(.invalidConfiguration, "the HMAC key file \(path) \(reason)")
            }
            @discardableResult
            func call<Result: FixedWidthInteger>(_ name: StaticString, _ reason: String, _ body: () -> Result) throws(GatewayError) -> Result {
                do throws(GatewayError) {
                    return try systemCall(name, code: .invalidConfiguration, body)
                } catch {
                    throw fail("\(reason): \(error.message)")
                }
            }
            let fd = try call("open", "cannot be opened") { open(path, O_RDONLY | O_CLOEXEC) }
            defer { close(fd) }
            var info = stat()
            try call("fstat", "cannot be examined") { fstat(fd, &info) }
            guard (info.st_mode & S_IFMT) == S_IFREG else { throw fail("is not a regular file") }
            guard info.st_mode & 0o007 == 0 else {
                throw fail("is accessible to every user (mode \(String(info.st_mode & 0o777, radix: 8))); run chmod o-rwx on it")
            }
            var bytes = [UInt8](repeating: 0, count: Self.maximumLength + 1)
            var count = 0
            while count < bytes.count {
                let received = try call("read", "cannot be read") { bytes[count...].withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) } }
                if received == 0 { break }
                count += received
            }
            guard count <= Self.maximumLength else { throw fail("is longer than \(Self.maximumLength) bytes") }
            while count > 0, bytes[count - 1] == UInt8(ascii: "\n") || bytes[count - 1] == UInt8(ascii: "\r") { count -= 1 }
            guard count >= Self.minimumLength else {
                throw fail("holds \(count) bytes; a key needs at least \(Self.minimumLength) (make one with: openssl rand -hex 32 > FILE)")
            }
            self.bytes = Array(bytes[..<count])
            // The buffer held the key; do not leave it to whoever gets the memory next.
            bytes.withUnsafeMutableBytes { raw in if let base = raw.baseAddress { _ = memset(base, 0, raw.count) } }
        }

        /// The key's length only; never its bytes.
        public var description: String { "HMAC key (\(self.bytes.count) bytes)" }
    }

    /// The length of the code stored before each value.
    public static let codeLength = 32

    private let inner: any CacheStore
    private let key: Key
    private let failures = Atomic<UInt64>(0)
    private let faults: RateLimitedLog

    /// Signs the entries of `store` with `key`.
    ///
    /// - Parameters:
    ///   - store: where the signed entries live.
    ///   - key: the HMAC key; every gateway sharing a namespace needs the same.
    ///   - logger: where failed verifications are reported.
    ///   - logInterval: the least time between two such reports.
    public init(wrapping store: any CacheStore, key: Key, logger: Logger, logInterval: TimeAmount = .seconds(10)) {
        self.inner = store
        self.key = key
        self.faults = RateLimitedLog(logger: logger, interval: logInterval)
    }

    /// The wrapped store's kind: signing does not change where entries live.
    public var kind: String { self.inner.kind }

    /// The wrapped store's health.
    public var isHealthy: Bool { self.inner.isHealthy }

    /// The wrapped store's counters, and `integrityFailures`: entries that failed verification.
    public var statistics: [String: Stats.Value] {
        var statistics = self.inner.statistics
        statistics["integrityFailures"] = .count(self.failures.load(ordering: .relaxed))
        return statistics
    }

    /// The namespace in which the wrapped store keeps the signed entries of `namespace`.
    public static func signedNamespace(_ namespace: String) -> String {
        "\(namespace)+hmac"
    }

    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        let signedKey = Self.signed(key)
        return self.inner.lookup(signedKey, on: eventLoop).flatMap { result -> EventLoopFuture<StoreLookup> in
            if let checked = self.checked(result, signedKey: signedKey) { return eventLoop.makeSucceededFuture(checked) }
            return self.deleteTampered(key, signedKey: signedKey, on: eventLoop)
        }
    }

    /// The lookup with no future (see `CacheStore.lookup(_:on:then:)`): only
    /// a tampered entry's deletion goes through one.
    public func lookup(_ key: StorageKey, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<StoreLookup, any Error>) -> Void) {
        let signedKey = Self.signed(key)
        self.inner.lookup(signedKey, on: eventLoop) { result in
            guard case .success(let found) = result else { return answer(result) }
            if let checked = self.checked(found, signedKey: signedKey) { return answer(.success(checked)) }
            self.deleteTampered(key, signedKey: signedKey, on: eventLoop).hop(to: eventLoop).whenComplete(answer)
        }
    }

    /// What the inner store found, its HMAC checked and removed; nil when a
    /// hit failed its check (then `deleteTampered` answers).
    private func checked(_ result: StoreLookup, signedKey: StorageKey) -> StoreLookup? {
        guard case .hit(var stored, let computeMicroseconds, let expiresAt) = result else { return result }
        let verified: Bool
        do {
            verified = try self.verify(&stored, key: signedKey)
        } catch {
            self.faults.log("hmac", "an entry could not be verified: \(error)")
            return .missDoNotStore
        }
        guard verified else { return nil }
        return .hit(stored, computeMicroseconds: computeMicroseconds, expiresAtUnixMilliseconds: expiresAt)
    }

    /// Counts and deletes an entry that failed its HMAC check; succeeds with a miss.
    private func deleteTampered(_ key: StorageKey, signedKey: StorageKey, on eventLoop: any EventLoop) -> EventLoopFuture<StoreLookup> {
        self.failures.wrappingAdd(1, ordering: .relaxed)
        self.faults.log(
            "integrity",
            "an entry of \(key.function.function) version \(key.function.version) failed its HMAC check; deleted, answered as a miss"
        )
        // Deleted before the miss is answered, so that the deletion cannot
        // remove the entry the worker stores next; a failed deletion still
        // answers miss (the worker's store replaces the entry).
        return self.inner.invalidate(
            namespace: signedKey.namespace,
            function: signedKey.function.function,
            version: signedKey.function.version,
            key: signedKey.key,
            on: eventLoop
        ).map { _ in StoreLookup.miss }.recover { _ in .miss }
    }

    public func store(_ key: StorageKey, entry: StoreEntry, on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        let signedKey = Self.signed(key)
        let code: SHA256Digest
        do {
            code = try self.authenticationCode(key: signedKey, value: entry.value)
        } catch {
            self.faults.log("hmac", "an entry could not be signed, so it is not stored: \(error)")
            return eventLoop.makeSucceededFuture(false)
        }
        var signed = entry
        signed.value = ByteBufferAllocator().buffer(capacity: Self.codeLength + entry.value.readableBytes)
        code.withUnsafeBytes { _ = signed.value.writeBytes($0) }
        signed.value.writeImmutableBuffer(entry.value)
        return self.inner.store(signedKey, entry: signed, on: eventLoop)
    }

    /// Extends the signed entry.
    public func extendLife(_ key: StorageKey, untilUnixMilliseconds unixMilliseconds: Int64, on eventLoop: any EventLoop) {
        self.inner.extendLife(Self.signed(key), untilUnixMilliseconds: unixMilliseconds, on: eventLoop)
    }

    /// The wrapped store's name for the signed entry.
    public func backendKey(for key: StorageKey) -> String? {
        self.inner.backendKey(for: Self.signed(key))
    }

    public func invalidate(namespace: String, function: String, version: String?, key: CacheKey?, on eventLoop: any EventLoop) -> EventLoopFuture<UInt64> {
        self.inner.invalidate(namespace: Self.signedNamespace(namespace), function: function, version: version, key: key, on: eventLoop)
    }

    public func shutdown() async {
        await self.inner.shutdown()
    }

    // MARK: Signing

    private static func signed(_ key: StorageKey) -> StorageKey {
        var signed = key
        signed.namespace = Self.signedNamespace(key.namespace)
        return signed
    }

    /// Checks the code in front of `stored` and, when it verifies, leaves
    /// `stored` at the value. A value too short to hold a code fails.
    private func verify(_ stored: inout ByteBuffer, key: StorageKey) throws -> Bool {
        guard let code = stored.readSlice(length: Self.codeLength) else { return false }
        let expected = try self.authenticationCode(key: key, value: stored)
        return code.withUnsafeReadableBytes { expected.isEqualInConstantTime(to: $0) }
    }

    /// The HMAC-SHA-256 of an entry's identity and value (see the type's documentation).
    func authenticationCode(key: StorageKey, value: ByteBuffer) throws -> SHA256Digest {
        var header: [UInt8] = Array("cache-gateway entry v1".utf8) + [0]
        for field in [key.namespace, key.function.function, key.function.version] {
            Self.append(UInt32(truncatingIfNeeded: field.utf8.count), to: &header)
            header += field.utf8
        }
        header += key.key.digest.bytes
        Self.append(UInt64(value.readableBytes), to: &header)
        var mac = try HMACSHA256(key: self.key.bytes)
        try mac.update(header)
        try value.withUnsafeReadableBytes { try mac.update($0) }
        return try mac.finalize()
    }

    private static func append<Integer: FixedWidthInteger>(_ value: Integer, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.bigEndian) { bytes += $0 }
    }
}

extension IntegrityStore: RegistryBackendProvider {
    /// The wrapped store's registry, in the namespaces where the signed entries
    /// live, so that purges find them.
    func makeRegistryBackend() -> (any RegistryBackend)? {
        guard let inner = (self.inner as? any RegistryBackendProvider)?.makeRegistryBackend() else { return nil }
        return NamespaceMappingRegistryBackend(inner: inner, map: Self.signedNamespace)
    }
}
