import GatewayProtocol
import NIOCore

/// The registry in Redis, shared by every gateway on the server.
///
/// A function's record is one string, `cg:{ns:F}:r`, holding the MessagePack
/// of its `FunctionRecord`. A change reads it, applies a `FunctionRecord`
/// mutation, and writes it back with a compare-and-set script that also
/// renames the indexes of the versions it claims, all in one atomic step. Two
/// gateways changing the same record at once: one script finds the record no
/// longer what its gateway read, returns 0, and that gateway reads and decides
/// again. So the decisions stay in one place (the value type, tested without
/// I/O), the shared connections stay free of per-connection state such as
/// WATCH, and with Redis Cluster every key a script touches shares the
/// function's hash tag.
///
/// On a cluster, a version's index is split into buckets in other slots
/// (`RedisKeyLayout`), so the script cannot rename them: it only writes the
/// record, and the gateway that won a claim captures each bucket as its purge
/// starts (`RedisStore.captureAndDelete`). Entries stored between the claim
/// and that capture are deleted with the rest.
final class RedisRegistryBackend: RegistryBackend {
    private let store: RedisStore

    /// How long a record lives after its last change: far longer than any
    /// grace period, so only a function unused for that long is forgotten.
    static let recordLifetime: TimeAmount = .hours(24 * 90)

    /// Attempts before a change gives up under contention (each waits a little longer).
    static let maximumAttempts = 50

    /// Compare-and-set: KEYS[1] is the record, ARGV[1] what it was read as (""
    /// for none), ARGV[2] the new record, ARGV[3] its lifetime in ms. Then
    /// KEYS[2k] is renamed to KEYS[2k+1] for every claim, if it exists.
    static let compareAndSetScript = """
        local current = redis.call('GET', KEYS[1])
        if current == false then current = '' end
        if current ~= ARGV[1] then return 0 end
        redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
        for i = 2, #KEYS, 2 do
            if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + 1]) end
        end
        return 1
        """

    init(store: RedisStore) {
        self.store = store
    }

    private var timeout: TimeAmount { self.store.configuration.writeTimeout }

    func modify<Result: Sendable>(
        namespace: String,
        function: String,
        _ change: @Sendable (inout FunctionRecord) -> (Result, [FunctionRecord.PurgeClaim])
    ) async throws -> Result {
        let functionID = RedisStore.functionID(function)
        for attempt in 0..<Self.maximumAttempts {
            let current = try await self.store.registryRecord(namespace: namespace, functionID: functionID)
            var record = current?.record ?? FunctionRecord(name: function)
            let (result, claims) = change(&record)
            let encoded = try MessagePackEncoder().encode(record)
            let recordKey = RedisStore.recordKey(namespace: namespace, functionID: functionID)
            var keys = [recordKey]
            if self.store.layout.registryCapturesIndexes {
                for claim in claims {
                    keys.append(self.store.layout.indexKey(namespace: namespace, functionID: functionID, version: claim.version, bucket: nil))
                    keys.append(self.store.layout.purgeIndexKey(namespace: namespace, functionID: functionID, version: claim.version, bucket: nil, tag: "\(claim.epoch)"))
                }
            }
            var arguments = [
                ByteBuffer(string: Self.compareAndSetScript),
                ByteBuffer(string: "\(keys.count)"),
            ]
            arguments += keys
            arguments += [
                current?.bytes ?? ByteBuffer(),
                ByteBuffer(bytes: encoded),
                ByteBuffer(string: "\(Self.recordLifetime.nanoseconds / 1_000_000)"),
            ]
            let reply = try await self.store.target.send(RedisCommand("EVAL", arguments: arguments), routedBy: recordKey, timeout: self.timeout).checked()
            if reply.integer == 1 {
                if current == nil {
                    // A new function: list it. Idempotent, so a repeat is harmless.
                    let functionsKey = RedisStore.functionsKey(namespace: namespace)
                    _ = try await self.store.target.send(
                        RedisCommand("HSET", arguments: [functionsKey, ByteBuffer(string: functionID), ByteBuffer(string: function)]),
                        routedBy: functionsKey,
                        timeout: self.timeout
                    ).checked()
                }
                return result
            }
            // Somebody else changed the record first: back off a little, at random, and decide again.
            try await Task.sleep(for: .microseconds(Int.random(in: 100...(1000 * (attempt + 1)))))
        }
        throw GatewayError(.backendError, "the registry record of \(function) changed \(Self.maximumAttempts) times while this gateway was updating it")
    }

    func record(namespace: String, function: String) async throws -> FunctionRecord? {
        try await self.store.registryRecord(namespace: namespace, functionID: RedisStore.functionID(function))?.record
    }

    func functionNames(namespace: String) async throws -> [String] {
        let functionsKey = RedisStore.functionsKey(namespace: namespace)
        let reply = try await self.store.target.send(RedisCommand("HVALS", arguments: [functionsKey]), routedBy: functionsKey, timeout: self.timeout).checked()
        return (reply.array ?? []).compactMap(\.string)
    }

    func purge(namespace: String, function: String, claim: FunctionRecord.PurgeClaim) async throws -> UInt64 {
        let functionID = RedisStore.functionID(function)
        let layout = self.store.layout
        guard layout.registryCapturesIndexes else {
            return try await self.store.captureAndDelete(namespace: namespace, functionID: functionID, version: claim.version, tag: "\(claim.epoch)", exclusive: true)
        }
        return try await self.store.deleteCaptured(
            namespace: namespace,
            functionID: functionID,
            version: claim.version,
            bucket: nil,
            index: layout.purgeIndexKey(namespace: namespace, functionID: functionID, version: claim.version, bucket: nil, tag: "\(claim.epoch)")
        )
    }

    func entryCount(namespace: String, function: String, version: String) async throws -> UInt64 {
        let functionID = RedisStore.functionID(function)
        let now = ByteBuffer(string: "(\(RedisStore.nowMilliseconds())")
        var count: UInt64 = 0
        // One index on a single server; a cluster's buckets, each on its master.
        let replies = self.store.layout.buckets.map { bucket in
            let index = self.store.layout.indexKey(namespace: namespace, functionID: functionID, version: version, bucket: bucket)
            return self.store.target.sendFuture(RedisCommand("ZCOUNT", arguments: [index, now, ByteBuffer(string: "+inf")]), routedBy: index, timeout: self.timeout)
        }
        for reply in replies {
            count += UInt64(max(0, try await reply.get().checked().integer ?? 0))
        }
        return count
    }
}

extension RedisStore: RegistryBackendProvider {
    func makeRegistryBackend() -> (any RegistryBackend)? {
        RedisRegistryBackend(store: self)
    }

    /// The function's registry record and the exact bytes it was read as (for compare-and-set).
    func registryRecord(namespace: String, functionID: String) async throws -> (record: FunctionRecord, bytes: ByteBuffer)? {
        let recordKey = Self.recordKey(namespace: namespace, functionID: functionID)
        let reply = try await self.target.send(.get(recordKey), routedBy: recordKey, timeout: self.configuration.writeTimeout).checked()
        guard let bytes = reply.bytes else { return nil }
        do {
            return (try MessagePackDecoder().decode(FunctionRecord.self, from: bytes), bytes)
        } catch {
            throw GatewayError(.backendError, "the registry record of function \(functionID) is not readable: \(error)")
        }
    }
}
