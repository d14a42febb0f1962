import GatewayProtocol

/// Where the registry's records live, and how a retired version's entries go.
///
/// Each store that can hold a registry provides one (`RegistryBackendProvider`):
/// Redis shares it between every gateway on the server; the embedded store
/// keeps it in the gateway's memory. Decisions are not taken here but in
/// `FunctionRecord`; a backend only makes applying them atomic.
protocol RegistryBackend: Sendable {
    /// Applies `change` to the function's record atomically and returns its
    /// result. The claims `change` returns are captured in the same atomic
    /// step: the entries they cover are set aside for `purge`, and entries
    /// stored afterwards are not among them. `change` may run more than once
    /// (on a conflicting write), so it must depend on its argument only.
    func modify<Result: Sendable>(
        namespace: String,
        function: String,
        _ change: @Sendable (inout FunctionRecord) -> (Result, [FunctionRecord.PurgeClaim])
    ) async throws -> Result

    /// The function's record, if the registry has one.
    func record(namespace: String, function: String) async throws -> FunctionRecord?

    /// The names of the functions registered in `namespace`.
    func functionNames(namespace: String) async throws -> [String]

    /// Deletes the entries a claim captured; returns how many there were.
    func purge(namespace: String, function: String, claim: FunctionRecord.PurgeClaim) async throws -> UInt64

    /// How many live entries a version has.
    func entryCount(namespace: String, function: String, version: String) async throws -> UInt64
}

/// A store that can hold the registry. Stores that wrap another store forward it.
protocol RegistryBackendProvider {
    /// The registry backend that lives beside this store's entries; nil when
    /// it has none (a wrapper around a store without one).
    func makeRegistryBackend() -> (any RegistryBackend)?
}

/// A registry backend whose namespaces are another's, renamed: for a store that
/// keeps a namespace's entries under another name (`IntegrityStore`).
struct NamespaceMappingRegistryBackend: RegistryBackend {
    let inner: any RegistryBackend
    let map: @Sendable (String) -> String

    func modify<Result: Sendable>(
        namespace: String,
        function: String,
        _ change: @Sendable (inout FunctionRecord) -> (Result, [FunctionRecord.PurgeClaim])
    ) async throws -> Result {
        try await self.inner.modify(namespace: self.map(namespace), function: function, change)
    }

    func record(namespace: String, function: String) async throws -> FunctionRecord? {
        try await self.inner.record(namespace: self.map(namespace), function: function)
    }

    func functionNames(namespace: String) async throws -> [String] {
        try await self.inner.functionNames(namespace: self.map(namespace))
    }

    func purge(namespace: String, function: String, claim: FunctionRecord.PurgeClaim) async throws -> UInt64 {
        try await self.inner.purge(namespace: self.map(namespace), function: function, claim: claim)
    }

    func entryCount(namespace: String, function: String, version: String) async throws -> UInt64 {
        try await self.inner.entryCount(namespace: self.map(namespace), function: function, version: version)
    }
}
