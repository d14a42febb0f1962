#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import GatewaySystem
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway's server: one listener on a Unix socket, many worker connections.
///
/// It is a `Service`: `run()` binds, serves until graceful shutdown (SIGTERM or
/// SIGINT through the `ServiceGroup`), then drains. Draining stops accepting;
/// every connection goes on serving for a short grace period (so that
/// requests already on their way are answered), then answers `shuttingDown`
/// and closes as soon as nothing is in flight; the socket file is removed.
///
/// Connections are accepted through `NIOAsyncChannel` in a discarding task
/// group; each connection is then served by synchronous channel handlers on
/// its own event loop (`FrameReader`, then `ConnectionHandler` with its
/// `WorkerSession`), because a request and its reply then never hop threads.
public actor GatewayServer: Service {
    private enum State {
        case initial
        case running(serverChannel: any Channel)
        /// Serving on the gateway's own loops.
        case runningOwnLoops
        case draining
        case finished
    }

    private var state: State = .initial
    private let configuration: GatewayConfiguration
    private let store: any CacheStore
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let statistics: GatewayStatistics
    private let registry: Registry?
    private let metrics: GatewayMetrics
    private let onReady: @Sendable (String) -> Void
    private let onDraining: @Sendable () -> Void
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let drain = DrainSignal()
    private let nextConnectionID = NIOLockedValueBox<UInt64>(0)
    /// Fill leases shared with other gateways on the backend, and how their
    /// values are learnt of; nil: fills are this gateway's alone.
    private let fillSharing: (leases: any FillLeases, remote: FillRemoteReads)?

    /// How long draining may take before the remaining connections are closed.
    public static let drainDeadline = TimeAmount.seconds(10)

    /// Creates a server.
    ///
    /// - Parameters:
    ///   - configuration: socket, limits, namespace and access control.
    ///   - store: where entries live.
    ///   - eventLoopGroup: the loops that serve connections.
    ///   - logger: where the server logs; it never makes its own.
    ///   - statistics: the counters that `stats` reports.
    ///   - registry: tracks which versions connections use (run it as a
    ///     service listed before this one); nil to run without.
    ///   - metrics: where requests, hits, latencies and connections are recorded
    ///     (by default through `MetricsSystem.factory`).
    ///   - onReady: called with the socket path once the gateway accepts connections.
    ///   - onDraining: called when graceful shutdown begins.
    public init(
        configuration: GatewayConfiguration,
        store: any CacheStore,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        statistics: GatewayStatistics = GatewayStatistics(),
        registry: Registry? = nil,
        metrics: GatewayMetrics = GatewayMetrics(),
        onReady: @escaping @Sendable (String) -> Void = { _ in },
        onDraining: @escaping @Sendable () -> Void = {}
    ) {
        self.init(
            configuration: configuration, store: store, eventLoopGroup: eventLoopGroup, logger: logger, statistics: statistics,
            registry: registry, metrics: metrics, fillSharing: nil, onReady: onReady, onDraining: onDraining
        )
    }

    /// A server whose single-flight shares fills with the other gateways on
    /// its backend through `fillSharing` (see `FillCoordinator`); the other
    /// parameters are the public initializer's.
    init(
        configuration: GatewayConfiguration,
        store: any CacheStore,
        eventLoopGroup: any EventLoopGroup,
        logger: Logger,
        statistics: GatewayStatistics,
        registry: Registry?,
        metrics: GatewayMetrics,
        fillSharing: (leases: any FillLeases, remote: FillRemoteReads)?,
        onReady: @escaping @Sendable (String) -> Void,
        onDraining: @escaping @Sendable () -> Void
    ) {
        self.fillSharing = fillSharing
        self.configuration = configuration
        self.store = store
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.statistics = statistics
        self.registry = registry
        self.metrics = metrics
        self.onReady = onReady
        self.onDraining = onDraining
    }

    public func run() async throws {
        guard case .initial = self.state else {
            throw GatewayError(.invalidConfiguration, "a GatewayServer runs once")
        }
        try self.configuration.validate()
        let path = self.configuration.socketPath
        // An inherited socket's file belongs to whoever bound it (systemd).
        let ownsSocketFile = self.configuration.listener == .bind
        if ownsSocketFile { try UnixSocketPath.prepare(path) }

        let shared = ServerContext(
            configuration: self.configuration,
            store: self.store,
            statistics: self.statistics,
            metrics: self.metrics,
            logger: self.logger,
            drain: self.drain,
            registry: self.registry,
            deniedLog: RateLimitedLog(logger: self.logger, interval: .seconds(10)),
            fills: self.configuration.singleFlight
                ? FillCoordinator(
                    waitCap: self.configuration.fillWaitCap,
                    leases: self.fillSharing?.leases,
                    remote: self.fillSharing?.remote,
                    earlyRefreshBeta: self.configuration.earlyRefreshBeta,
                    metricsFactory: self.metrics.factory
                )
                : nil
        )
        let maxFrameSize = self.configuration.maxFrameSize
        let frameTimeout = self.configuration.frameTimeout
        let nextConnectionID = self.nextConnectionID
        let connections = self.connections

        let initializeConnection: @Sendable (any Channel) -> EventLoopFuture<any Channel> = { channel in
            PeerCredentialsReader.read(from: channel).flatMapThrowing { peer in
                let (id, access) = Self.admit(peer, shared: shared, ids: nextConnectionID)
                // Tracked from the moment of accepting (not when the accept
                // loop gets to it), so that draining reaches every connection.
                let key = ObjectIdentifier(channel)
                connections.withLockedValue { $0[key] = channel }
                channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[key] = nil } }
                let reading = ReadingState()
                try channel.pipeline.syncOperations.addHandler(FrameReader(maxFrameSize: maxFrameSize, timeout: frameTimeout, reading: reading))
                try channel.pipeline.syncOperations.addHandler(try ConnectionHandler(context: shared, connectionID: id, access: access, reading: reading))
                return channel
            }
        }
        // Each worker holds one descriptor for as long as it is connected.
        do {
            let (soft, hard) = try DescriptorLimit.current()
            let raised = try DescriptorLimit.raiseToHard()
            self.logger.info("file descriptor limit", metadata: ["soft": "\(raised)", "was": "\(soft)", "hard": "\(hard)"])
        } catch {
            self.logger.warning("could not raise the file descriptor limit", metadata: ["error": "\(error)"])
        }
        #if os(Linux)
        if let group = self.eventLoopGroup as? IOLoopGroup {
            try await self.run(on: group, shared: shared, path: path, ownsSocketFile: ownsSocketFile)
            return
        }
        #endif
        let statistics = self.statistics
        let acceptLog = RateLimitedLog(logger: self.logger, interval: .seconds(10))
        let bootstrap = ServerBootstrap(group: self.eventLoopGroup)
            // Connects beyond the backlog fail with EAGAIN at once; Linux caps
            // it at net.core.somaxconn (4,096 by default since Linux 5.4).
            .serverChannelOption(.backlog, value: 4096)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptLimiter(statistics: statistics, log: acceptLog))
                }
            }
            .childChannelOption(.allowRemoteHalfClosure, value: false)
            // Above 1 MiB of unsent replies a connection stops reading (see
            // WorkerSession.writabilityChanged).
            .childChannelOption(.writeBufferWaterMark, value: .init(low: 256 * 1024, high: 1024 * 1024))

        let serverChannel: NIOAsyncChannel<any Channel, Never>
        switch self.configuration.listener.base {
        case .bind:
            // Bind with a umask that leaves the socket unreachable until its mode is set.
            let previousMask = umask(0o177)
            do {
                serverChannel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false, childChannelInitializer: initializeConnection)
                umask(previousMask)
            } catch {
                umask(previousMask)
                throw GatewayError(.invalidConfiguration, "cannot listen on \(path): \(error)")
            }
            do {
                try UnixSocketPath.applyPermissions(path, mode: self.configuration.socketMode, group: self.configuration.socketGroup)
            } catch {
                try? await serverChannel.channel.close()
                _ = try? removeFile(path)
                throw error
            }
        case .inherited(let descriptor):
            do {
                serverChannel = try await bootstrap.bind(descriptor, childChannelInitializer: initializeConnection)
            } catch {
                throw GatewayError(.invalidConfiguration, "cannot serve the inherited socket \(path) (descriptor \(descriptor)): \(error)")
            }
        }

        self.state = .running(serverChannel: serverChannel.channel)
        self.logger.info("listening", metadata: [
            "socket": "\(path)", "listener": "\(self.configuration.listener)",
            "backend": "\(self.store.kind)", "namespace": "\(self.configuration.namespace)",
        ])
        self.logAccessControl()
        self.onReady(path)

        // The socket file goes however serving ends: drained, cancelled or failed.
        defer {
            if ownsSocketFile {
                do {
                    try removeFile(path)
                } catch {
                    self.logger.warning("could not remove the socket file", metadata: ["socket": "\(path)", "error": "\(error)"])
                }
            }
        }
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await serverChannel.executeThenClose { inbound in
                    for try await channel in inbound {
                        // The group ends (and `run` returns) once every connection
                        // has closed; cancelling `run` closes them at once.
                        group.addTask {
                            await withTaskCancellationHandler {
                                try? await channel.closeFuture.get()
                            } onCancel: {
                                channel.close(promise: nil)
                            }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            Task { await self.beginDraining() }
        }

        self.state = .finished
        self.logger.info("stopped")
    }

    #if os(Linux)
    /// Serves worker connections on the gateway's own loops (`IOWorkerListener`,
    /// `IOWorkerConnection`) until a graceful shutdown, then drains them as
    /// the SwiftNIO listener does; cancelled, closes them at once.
    private func run(on group: IOLoopGroup, shared: ServerContext, path: String, ownsSocketFile: Bool) async throws {
        let fd: Int32
        switch self.configuration.listener.base {
        case .bind:
            fd = try Self.bindListener(at: path)
            do {
                try UnixSocketPath.applyPermissions(path, mode: self.configuration.socketMode, group: self.configuration.socketGroup)
            } catch {
                close(fd)
                _ = try? removeFile(path)
                throw error
            }
        case .inherited(let descriptor):
            fd = descriptor
        }
        let nextConnectionID = self.nextConnectionID
        let listener = IOWorkerListener(
            fd: fd,
            loops: group.loops,
            maxFrameSize: self.configuration.maxFrameSize,
            frameTimeout: self.configuration.frameTimeout,
            statistics: self.statistics,
            log: RateLimitedLog(logger: self.logger, interval: .seconds(10))
        ) { connection, reading in
            let (id, access) = Self.admit(PeerCredentialsReader.read(fromDescriptor: connection.fd), shared: shared, ids: nextConnectionID)
            return try WorkerSession(context: shared, connectionID: id, access: access, reading: reading, codec: MessageCodec(), transport: connection)
        }
        listener.start()
        self.state = .runningOwnLoops
        self.logger.info("listening", metadata: [
            "socket": "\(path)", "listener": "\(self.configuration.listener)",
            "backend": "\(self.store.kind)", "namespace": "\(self.configuration.namespace)",
            "loops": "gateway (\(group.loops.count))",
        ])
        self.logAccessControl()
        self.onReady(path)

        let (stop, stopped) = AsyncStream<Void>.makeStream()
        await withGracefulShutdownHandler {
            for await _ in stop {}
        } onGracefulShutdown: {
            stopped.finish()
        }
        self.state = .draining
        listener.stop()
        // First the flag (connections accepted from now on drain at once),
        // then the snapshot (connections accepted before it are told).
        self.drain.start()
        if Task.isCancelled {
            for connection in listener.connections {
                connection.eventLoop.execute { connection.close() }
            }
        } else {
            // Draining: no new connections; each open one serves what is on
            // its way and closes (`WorkerSession.startDraining`), or is closed
            // at the drain deadline.
            self.logger.info("draining")
            self.onDraining()
            for connection in listener.connections {
                connection.eventLoop.execute { connection.startDraining() }
                connection.eventLoop.scheduleTask(in: Self.drainDeadline) { connection.close() }
            }
        }
        await listener.waitUntilAllClosed()
        if ownsSocketFile {
            do {
                try removeFile(path)
            } catch {
                self.logger.warning("could not remove the socket file", metadata: ["socket": "\(path)", "error": "\(error)"])
            }
        }
        self.state = .finished
        self.logger.info("stopped")
    }

    /// A listening Unix socket bound at `path`, unreachable (mode 0600)
    /// until its mode is set.
    private static func bindListener(at path: String) throws -> Int32 {
        let address = try UnixSocketAddress(path: path)
        let fd = try systemCall("socket", code: .invalidConfiguration) { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let previousMask = umask(0o177)
        defer { umask(previousMask) }
        do {
            try systemCall("bind", on: path, code: .invalidConfiguration) { address.withSocketAddress { bind(fd, $0, $1) } }
            // Connects beyond the backlog fail with EAGAIN at once; Linux caps
            // it at net.core.somaxconn (4,096 by default since Linux 5.4).
            try systemCall("listen", on: path, code: .invalidConfiguration) { listen(fd, 4096) }
        } catch {
            close(fd)
            throw error
        }
        return fd
    }
    #endif

    /// A new connection's id (the next of `ids`) and its access: who
    /// connected decides, once, whether the connection is served and in which
    /// namespace (see AccessControl).
    private static func admit(_ peer: PeerCredentials?, shared: ServerContext, ids: NIOLockedValueBox<UInt64>) -> (id: UInt64, access: ConnectionAccess) {
        let access = shared.configuration.accessControl.decide(peer: peer, namespace: shared.configuration.namespace)
        let id = ids.withLockedValue { id -> UInt64 in
            id += 1
            return id
        }
        return (id, access)
    }

    /// Logs the access rules, when there are any.
    private func logAccessControl() {
        let access = self.configuration.accessControl
        guard access.restrictsPeers || access.namespacePerUID else { return }
        self.logger.info("access control", metadata: [
            "allowUIDs": "\(access.allowedUIDs.sorted())",
            "allowGIDs": "\(access.allowedGIDs.sorted())",
            "namespacePerUID": "\(access.namespacePerUID)",
        ])
    }

    /// Stops accepting and asks every connection to finish its work and close.
    private func beginDraining() {
        guard case .running(let serverChannel) = self.state else { return }
        self.state = .draining
        self.logger.info("draining")
        self.onDraining()
        // First the flag (connections accepted from now on drain at once), then
        // the snapshot (connections accepted before it get the event).
        self.drain.start()
        serverChannel.close(promise: nil)
        let open = self.connections.withLockedValue { Array($0.values) }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
            // Whatever has not finished by the deadline is closed.
            channel.eventLoop.scheduleTask(in: Self.drainDeadline) { channel.close(promise: nil) }
        }
    }
}
