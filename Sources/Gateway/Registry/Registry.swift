#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import ServiceLifecycle

/// The source-hash registry: which versions of which functions are in use,
/// by which gateways, and the deletion of the entries of versions that no
/// longer are.
///
/// **Leases.** A worker connection registers each (function, version) it uses.
/// While at least one of this gateway's connections has registered a version,
/// the gateway holds a lease on it in the shared record (`FunctionRecord`),
/// renewed every third of `leaseDuration`. When the last such connection
/// closes, the lease is released; when the gateway dies, it lapses unrenewed.
///
/// **Purging.** Every gateway sweeps the records of its namespaces every
/// `sweepInterval`. A version with no live lease and no use for `grace` is
/// claimed by whichever gateway's compare-and-set lands first, and that gateway
/// deletes its entries: once per retirement, by one gateway. Under the eager
/// policy, a version's first registration anywhere also retires every other
/// version of the function at once; old
/// workers still running afterwards renew their lease, which starts a new
/// period of use whose entries go when it ends.
///
/// It is a `Service`: list it before the `GatewayServer` in the `ServiceGroup`,
/// so that at shutdown the server closes its connections (releasing their
/// leases) before the registry stops.
public final class Registry: Service, Sendable {
    /// Settings for the registry; every field has a default.
    public struct Configuration: Sendable {
        /// When a version's entries are deleted. Default: `.afterGrace`.
        public var purgePolicy: PurgePolicy
        /// How long a version must be unused everywhere before its entries go.
        /// Default: 10 minutes, longer than a rolling deploy's pauses, so a quick
        /// rollback finds its entries.
        public var grace: TimeAmount
        /// How long a lease lives unrenewed, so how soon a dead gateway's
        /// versions count as unused. Default: 30 s (renewed every 10 s).
        public var leaseDuration: TimeAmount
        /// How often this gateway looks for versions to purge. Default: 5 s,
        /// with ±20 % jitter so that gateways started together do not sweep together.
        public var sweepInterval: TimeAmount
        /// How long a retired version is remembered: a version that comes back
        /// within it is a rollback, after it a new version. Default: 30 days.
        public var retention: TimeAmount
        /// This gateway's id in leases. Default: host name and process id.
        public var gatewayID: String

        /// The default gateway id: `hostname:pid`.
        public static var defaultGatewayID: String {
            var name = [CChar](repeating: 0, count: 256)
            let host = gethostname(&name, name.count) == 0
                ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                : "gateway"
            return "\(host):\(getpid())"
        }

        /// Creates a configuration.
        public init(
            purgePolicy: PurgePolicy = .afterGrace,
            grace: TimeAmount = .minutes(10),
            leaseDuration: TimeAmount = .seconds(30),
            sweepInterval: TimeAmount = .seconds(5),
            retention: TimeAmount = .hours(24 * 30),
            gatewayID: String = Configuration.defaultGatewayID
        ) {
            self.purgePolicy = purgePolicy
            self.grace = grace
            self.leaseDuration = leaseDuration
            self.sweepInterval = sweepInterval
            self.retention = retention
            self.gatewayID = gatewayID
        }

        /// Checks the fields; throws `.invalidConfiguration`.
        public func validate() throws {
            guard self.grace >= .zero else { throw GatewayError(.invalidConfiguration, "the purge grace period cannot be negative") }
            guard self.leaseDuration >= .milliseconds(30), self.sweepInterval >= .milliseconds(10) else {
                throw GatewayError(.invalidConfiguration, "the lease must last at least 30 ms and the sweep interval be at least 10 ms")
            }
            guard !self.gatewayID.isEmpty, self.gatewayID.utf8.count <= 256 else {
                throw GatewayError(.invalidConfiguration, "the gateway id must be 1 to 256 bytes")
            }
        }
    }

    /// When a version's entries are deleted. A struct around an internal enum,
    /// so that policies can be added without breaking code that uses them.
    public struct PurgePolicy: Sendable, Hashable, CustomStringConvertible {
        enum Base: Sendable, Hashable {
            case afterGrace
            case eager
        }

        let base: Base

        /// Once no gateway has held a lease on the version for the grace period.
        public static let afterGrace = PurgePolicy(base: .afterGrace)
        /// As soon as a new version of the function registers (and, for entries
        /// written after that by old workers, once they are gone for the grace period).
        public static let eager = PurgePolicy(base: .eager)

        /// `grace` or `eager`, as the command line spells them.
        public var description: String {
            switch self.base {
            case .afterGrace: "grace"
            case .eager: "eager"
            }
        }

        /// The policy named `name` on the command line (`grace` or `eager`).
        public init?(_ name: String) {
            switch name {
            case "grace": self = .afterGrace
            case "eager": self = .eager
            default: return nil
            }
        }

        init(base: Base) { self.base = base }
    }

    /// A version one of this gateway's connections uses.
    struct HeldVersion: Hashable, Sendable {
        var namespace: String
        var function: String
        var version: String
    }

    private enum Command: Sendable {
        /// A registration; `attempt` counts from 1 (see `maximumAcquireAttempts`).
        case acquire(HeldVersion, attempt: Int = 1)
        case release(HeldVersion)
    }

    /// How often a registration that Redis did not take is tried again
    /// (after 100 ms, 200 ms, … apart). A renewal takes the lease anyway,
    /// but only a registration retires other versions under `eager`, so a
    /// registration is not given up on a passing fault.
    static let maximumAcquireAttempts = 5

    private struct PurgeJob: Sendable {
        var namespace: String
        var function: String
        var claim: FunctionRecord.PurgeClaim
    }

    private struct LocalState: Sendable {
        /// Which connections registered each version.
        var holders: [HeldVersion: Set<UInt64>] = [:]
        /// Which versions each connection registered.
        var byConnection: [UInt64: Set<HeldVersion>] = [:]
        /// The namespaces this gateway sweeps: its own, and those its connections used.
        var namespaces: Set<String>
    }

    /// The registry's settings.
    public let configuration: Configuration
    private let backend: (any RegistryBackend)?
    private let logger: Logger
    private let statistics: GatewayStatistics
    private let metrics: GatewayMetrics
    private let faults: RateLimitedLog
    private let local: NIOLockedValueBox<LocalState>
    private let commands: AsyncStream<Command>
    private let commandSink: AsyncStream<Command>.Continuation
    private let purges: AsyncStream<PurgeJob>
    private let purgeSink: AsyncStream<PurgeJob>.Continuation

    /// Creates the registry of a gateway.
    ///
    /// - Parameters:
    ///   - configuration: policy, grace, lease and sweep timing, and this gateway's id.
    ///   - store: the gateway's store; the registry lives beside its entries
    ///     (in Redis, or in memory). A store that cannot hold one leaves the
    ///     registry inert: registrations are acknowledged and nothing is purged.
    ///   - namespace: the gateway's namespace, swept from the start.
    ///   - logger: where it logs; it never makes its own.
    ///   - statistics: where purges and faults are counted.
    ///   - metrics: where purges are recorded for Prometheus (by default through `MetricsSystem.factory`).
    public init(
        configuration: Configuration = Configuration(),
        store: any CacheStore,
        namespace: String,
        logger: Logger,
        statistics: GatewayStatistics,
        metrics: GatewayMetrics = GatewayMetrics()
    ) {
        self.configuration = configuration
        self.backend = (store as? any RegistryBackendProvider)?.makeRegistryBackend() ?? nil
        self.logger = logger
        self.statistics = statistics
        self.metrics = metrics
        self.faults = RateLimitedLog(logger: logger, interval: .seconds(10))
        self.local = NIOLockedValueBox(LocalState(namespaces: [namespace]))
        (self.commands, self.commandSink) = AsyncStream.makeStream()
        (self.purges, self.purgeSink) = AsyncStream.makeStream()
    }

    // MARK: From connections (any thread, never blocks)

    /// Notes that `connection` uses `function` in `namespace`; the gateway takes
    /// a lease on the version if none of its connections held it.
    func register(namespace: String, function: FunctionVersion, connection: UInt64) {
        let held = HeldVersion(namespace: namespace, function: function.function, version: function.version)
        let isFirst = self.local.withLockedValue { local -> Bool in
            local.namespaces.insert(namespace)
            local.byConnection[connection, default: []].insert(held)
            return local.holders[held, default: []].insert(connection).inserted && local.holders[held]!.count == 1
        }
        if isFirst { self.commandSink.yield(.acquire(held)) }
    }

    /// Notes that `connection` closed; the leases only it needed are released.
    func connectionClosed(_ connection: UInt64) {
        let released = self.local.withLockedValue { local -> [HeldVersion] in
            guard let versions = local.byConnection.removeValue(forKey: connection) else { return [] }
            var released: [HeldVersion] = []
            for held in versions {
                local.holders[held]?.remove(connection)
                if local.holders[held]?.isEmpty == true {
                    local.holders[held] = nil
                    released.append(held)
                }
            }
            return released
        }
        for held in released { self.commandSink.yield(.release(held)) }
    }

    /// The versions this gateway holds a lease on (for stats).
    var heldVersionCount: Int { self.local.withLockedValue { $0.holders.count } }

    // MARK: Listing

    /// The registry's view of `namespace`, with this gateway's per-function counters.
    func functions(namespace: String) async throws -> [FunctionInfo] {
        let counters = self.statistics.functionCounters(namespace: namespace)
        var names = Set(counters.keys)
        if let backend { names.formUnion(try await backend.functionNames(namespace: namespace)) }
        let now = Self.nowMilliseconds()
        var result: [FunctionInfo] = []
        for name in names.sorted() {
            let counter = counters[name] ?? FunctionCounters()
            var info = FunctionInfo(function: name, hits: counter.hits, misses: counter.misses, computeSavedMicroseconds: counter.computeSavedMicroseconds)
            if let backend, let record = try await backend.record(namespace: namespace, function: name) {
                for (version, entry) in record.versions.sorted(by: { ($0.value.firstSeen, $0.key) > ($1.value.firstSeen, $1.key) }) {
                    info.versions.append(VersionInfo(
                        version: version,
                        firstSeenMilliseconds: UInt64(max(0, entry.firstSeen)),
                        lastSeenMilliseconds: UInt64(max(0, entry.lastSeen)),
                        entries: try await backend.entryCount(namespace: namespace, function: name, version: version),
                        state: entry.state(now: now),
                        leases: entry.leases.filter { $0.value > now }.sorted { $0.key < $1.key }.map {
                            LeaseInfo(gateway: $0.key, expiresMilliseconds: UInt64(max(0, $0.value)))
                        }
                    ))
                }
            }
            result.append(info)
        }
        return result
    }

    // MARK: Service

    /// Processes registrations, renews leases, sweeps and purges until graceful
    /// shutdown; then releases what this gateway still holds.
    public func run() async throws {
        guard let backend = self.backend else {
            self.logger.notice("this store keeps no registry: versions are not tracked and nothing is purged")
            try? await gracefulShutdown()
            return
        }
        self.logger.info("registry running", metadata: [
            "gateway": "\(self.configuration.gatewayID)",
            "purge": "\(self.configuration.purgePolicy)",
            "grace_ms": "\(self.configuration.grace.nanoseconds / 1_000_000)",
        ])
        await withTaskGroup(of: Void.self) { workers in
            workers.addTask {
                for await command in self.commands { await self.perform(command, backend: backend) }
                // Registrations are done: let the purges still queued finish.
                self.purgeSink.finish()
            }
            workers.addTask {
                for await job in self.purges { await self.purge(job, backend: backend) }
            }
            await withTaskGroup(of: Void.self) { timers in
                timers.addTask { await self.every(.nanoseconds(self.configuration.leaseDuration.nanoseconds / 3), jitter: false) { await self.renewAll(backend: backend) } }
                timers.addTask { await self.every(self.configuration.sweepInterval, jitter: true) { await self.sweep(backend: backend) } }
                // The server stops first (it comes later in the service group), so
                // its connections' releases are queued by now.
                try? await gracefulShutdown()
                timers.cancelAll()
            }
            // Whatever is still held (connections that never closed) is released.
            let remaining = self.local.withLockedValue { local -> [HeldVersion] in
                defer { local.holders = [:]; local.byConnection = [:] }
                return Array(local.holders.keys)
            }
            for held in remaining { self.commandSink.yield(.release(held)) }
            self.commandSink.finish()
        }
        self.logger.info("registry stopped")
    }

    private func every(_ interval: TimeAmount, jitter: Bool, _ body: () async -> Void) async {
        while !Task.isCancelled {
            var delay = interval.nanoseconds
            if jitter { delay = Int64(Double(delay) * Double.random(in: 0.8...1.2)) }
            do { try await Task.sleep(nanoseconds: UInt64(max(1, delay))) } catch { return }
            await body()
        }
    }

    private func perform(_ command: Command, backend: any RegistryBackend) async {
        let now = Self.nowMilliseconds()
        let duration = self.configuration.leaseDuration.nanoseconds / 1_000_000
        let gateway = self.configuration.gatewayID
        switch command {
        case .acquire(let held, let attempt):
            let eager = self.configuration.purgePolicy == .eager
            do {
                let acquired = try await backend.modify(namespace: held.namespace, function: held.function) { record in
                    let acquired = record.acquire(version: held.version, gateway: gateway, now: now, duration: duration, eager: eager)
                    return (acquired, acquired.claims)
                }
                if acquired.isNewVersion {
                    self.logger.info("new version registered", metadata: ["function": "\(held.function)", "version": "\(held.version)"])
                }
                for claim in acquired.claims {
                    self.purgeSink.yield(PurgeJob(namespace: held.namespace, function: held.function, claim: claim))
                }
            } catch {
                self.registryFault("could not take a lease on \(held.function) \(held.version) (attempt \(attempt)): \(error)")
                guard attempt < Self.maximumAcquireAttempts else { return }
                // Queued again after a pause, behind what came meanwhile.
                let sink = self.commandSink
                Task {
                    try? await Task.sleep(for: .milliseconds(100 * attempt))
                    // Not if its connections have gone meanwhile.
                    guard self.local.withLockedValue({ $0.holders[held] != nil }) else { return }
                    sink.yield(.acquire(held, attempt: attempt + 1))
                }
            }
        case .release(let held):
            do {
                try await backend.modify(namespace: held.namespace, function: held.function) { record in
                    record.release(version: held.version, gateway: gateway, now: now)
                    return ((), [])
                }
            } catch {
                // The lease lapses by itself.
                self.registryFault("could not release the lease on \(held.function) \(held.version): \(error)")
            }
        }
    }

    /// Renews every lease this gateway holds. A renewal never retires other
    /// versions, even if the record was lost meanwhile (Redis flushed): only a
    /// worker's registration of a new version does.
    private func renewAll(backend: any RegistryBackend) async {
        let held = self.local.withLockedValue { Array($0.holders.keys) }
        let duration = self.configuration.leaseDuration.nanoseconds / 1_000_000
        let gateway = self.configuration.gatewayID
        for version in held {
            let now = Self.nowMilliseconds()
            do {
                try await backend.modify(namespace: version.namespace, function: version.function) { record in
                    _ = record.acquire(version: version.version, gateway: gateway, now: now, duration: duration, eager: false)
                    return ((), [])
                }
            } catch {
                self.registryFault("could not renew the lease on \(version.function) \(version.version): \(error)")
            }
        }
    }

    /// Claims the versions nobody uses any more, and forgets long-retired ones.
    private func sweep(backend: any RegistryBackend) async {
        let namespaces = self.local.withLockedValue { $0.namespaces.sorted() }
        let grace = self.configuration.grace.nanoseconds / 1_000_000
        let retention = self.configuration.retention.nanoseconds / 1_000_000
        for namespace in namespaces {
            do {
                for function in try await backend.functionNames(namespace: namespace).sorted() {
                    let now = Self.nowMilliseconds()
                    let claims = try await backend.modify(namespace: namespace, function: function) { record in
                        let claims = record.claimIdleVersions(now: now, grace: grace)
                        record.forgetRetiredVersions(now: now, retention: retention)
                        return (claims, claims)
                    }
                    for claim in claims {
                        self.purgeSink.yield(PurgeJob(namespace: namespace, function: function, claim: claim))
                    }
                }
            } catch {
                self.registryFault("sweep of namespace \(namespace) failed: \(error)")
            }
        }
        self.statistics.add(.registrySweeps)
    }

    /// Deletes a claimed version's entries. A claim is this gateway's alone,
    /// so a failed purge is retried (its captured index stays in place) a few
    /// times; after that its entries are left to expire.
    private func purge(_ job: PurgeJob, backend: any RegistryBackend) async {
        let started = NIODeadline.now()
        for attempt in 1...5 {
            do {
                let deleted = try await backend.purge(namespace: job.namespace, function: job.function, claim: job.claim)
                self.statistics.add(.purges)
                self.statistics.add(.purgedEntries, deleted)
                self.metrics.recordPurge(function: job.function, deleted: deleted)
                self.logger.info("purged a retired version", metadata: [
                    "function": "\(job.function)",
                    "version": "\(job.claim.version)",
                    "epoch": "\(job.claim.epoch)",
                    "entries": "\(deleted)",
                    "ms": "\((NIODeadline.now() - started).nanoseconds / 1_000_000)",
                ])
                return
            } catch {
                self.registryFault("purge of \(job.function) \(job.claim.version) failed (attempt \(attempt)): \(error)")
                try? await Task.sleep(for: .milliseconds(200 * attempt))
            }
        }
    }

    private func registryFault(_ message: String) {
        self.statistics.add(.registryFaults)
        self.faults.log("registry", message)
    }

    /// Registry times are Unix milliseconds, comparable between hosts.
    static func nowMilliseconds() -> Int64 { RedisStore.nowMilliseconds() }
}
