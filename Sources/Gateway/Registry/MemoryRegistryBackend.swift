import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The registry of a gateway on the embedded store: records in memory, under
/// one lock, which makes every change atomic by itself.
final class MemoryRegistryBackend: RegistryBackend {
    private struct RecordID: Hashable, Sendable {
        var namespace: String
        var function: String
    }

    private let records = NIOLockedValueBox<[RecordID: FunctionRecord]>([:])
    private let store: MemoryStore
    private let eventLoop: any EventLoop

    init(store: MemoryStore, eventLoop: any EventLoop) {
        self.store = store
        self.eventLoop = eventLoop
    }

    func modify<Result: Sendable>(
        namespace: String,
        function: String,
        _ change: @Sendable (inout FunctionRecord) -> (Result, [FunctionRecord.PurgeClaim])
    ) async throws -> Result {
        self.records.withLockedValue { records in
            let id = RecordID(namespace: namespace, function: function)
            var record = records[id] ?? FunctionRecord(name: function)
            // Memory entries need no capture: a purge deletes the version's
            // entries as they are when it runs, a moment after the claim.
            let (result, _) = change(&record)
            records[id] = record.versions.isEmpty ? nil : record
            return result
        }
    }

    func record(namespace: String, function: String) async throws -> FunctionRecord? {
        self.records.withLockedValue { $0[RecordID(namespace: namespace, function: function)] }
    }

    func functionNames(namespace: String) async throws -> [String] {
        self.records.withLockedValue { records in records.keys.filter { $0.namespace == namespace }.map(\.function) }
    }

    func purge(namespace: String, function: String, claim: FunctionRecord.PurgeClaim) async throws -> UInt64 {
        try await self.store.invalidate(namespace: namespace, function: function, version: claim.version, key: nil, on: self.eventLoop).get()
    }

    func entryCount(namespace: String, function: String, version: String) async throws -> UInt64 {
        UInt64(self.store.entryCount(namespace: namespace, function: function, version: version))
    }
}

extension MemoryStore: RegistryBackendProvider {
    func makeRegistryBackend() -> (any RegistryBackend)? {
        MemoryRegistryBackend(store: self, eventLoop: MultiThreadedEventLoopGroup.singleton.any())
    }
}
