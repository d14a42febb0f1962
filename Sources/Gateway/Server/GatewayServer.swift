#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import ServiceLifecycle

/// The gateway's server: one listener on a Unix socket, many worker connections.
///
/// It is a `Service`: `run()` binds, serves until graceful shutdown (SIGTERM or
/// SIGINT through the `ServiceGroup`), then drains. Draining stops accepting,
/// lets every connection answer what it has in flight and what is still
/// arriving, closes each connection once it has been idle for a moment, and
/// removes the socket file.
///
/// Connections are accepted through `NIOAsyncChannel` in a discarding task
/// group; each connection is then served by synchronous channel handlers on
/// its own event loop (see `ConnectionHandler`), because a request and its
/// reply then never hop threads.
public actor GatewayServer: Service {
    private enum State {
        case initial
        case running(serverChannel: any Channel)
        case draining
        case finished
    }

    private var state: State = .initial
    private let configuration: GatewayConfiguration
    private let store: any CacheStore
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let statistics: GatewayStatistics
    private let onReady: @Sendable (String) -> Void
    private let onDraining: @Sendable () -> Void
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private let nextConnectionID = NIOLockedValueBox<UInt64>(0)

    /// How long draining may take before the remaining connections are closed.
    public static let drainDeadline = TimeAmount.seconds(10)

    /// Creates a server.
    ///
    /// - Parameters:
    ///   - configuration: socket, limits and namespace; `backend` is not read here.
    ///   - store: where entries live.
    ///   - eventLoopGroup: the loops that serve connections.
    ///   - logger: where the server logs; it never makes its own.
    ///   - statistics: the counters that `stats` reports.
    ///   - onReady: called with the socket path once the gateway accepts connections.
    ///   - onDraining: called when graceful shutdown begins.
    public init(
        configuration: GatewayConfiguration,
        store: any CacheStore,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        statistics: GatewayStatistics = GatewayStatistics(),
        onReady: @escaping @Sendable (String) -> Void = { _ in },
        onDraining: @escaping @Sendable () -> Void = {}
    ) {
        self.configuration = configuration
        self.store = store
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.statistics = statistics
        self.onReady = onReady
        self.onDraining = onDraining
    }

    public func run() async throws {
        guard case .initial = self.state else {
            throw GatewayError(.invalidConfiguration, "a GatewayServer runs once")
        }
        try self.configuration.validate()
        let path = self.configuration.socketPath
        try UnixSocketPath.prepare(path)

        let shared = ServerContext(
            configuration: self.configuration,
            store: self.store,
            statistics: self.statistics,
            logger: self.logger
        )
        let maxFrameSize = self.configuration.maxFrameSize
        let nextConnectionID = self.nextConnectionID

        // Bind with a umask that leaves the socket unreachable until its mode is set.
        let previousMask = umask(0o177)
        let serverChannel: NIOAsyncChannel<any Channel, Never>
        do {
            serverChannel = try await ServerBootstrap(group: self.eventLoopGroup)
                .serverChannelOption(.backlog, value: 1024)
                .childChannelOption(.allowRemoteHalfClosure, value: false)
                .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let id = nextConnectionID.withLockedValue { id -> UInt64 in
                            id += 1
                            return id
                        }
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: maxFrameSize)))
                        try channel.pipeline.syncOperations.addHandler(try ConnectionHandler(context: shared, connectionID: id))
                        return channel
                    }
                }
            umask(previousMask)
        } catch {
            umask(previousMask)
            throw GatewayError(.invalidConfiguration, "cannot listen on \(path): \(error)")
        }
        try UnixSocketPath.applyPermissions(path, mode: self.configuration.socketMode, group: self.configuration.socketGroup)

        self.state = .running(serverChannel: serverChannel.channel)
        self.logger.info("listening", metadata: ["socket": "\(path)", "backend": "\(self.store.kind)", "namespace": "\(self.configuration.namespace)"])
        self.onReady(path)

        let connections = self.connections
        try await withGracefulShutdownHandler {
            try await withThrowingDiscardingTaskGroup { group in
                try await serverChannel.executeThenClose { inbound in
                    for try await channel in inbound {
                        let id = ObjectIdentifier(channel)
                        connections.withLockedValue { $0[id] = channel }
                        group.addTask {
                            try? await channel.closeFuture.get()
                            connections.withLockedValue { $0[id] = nil }
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            Task { await self.beginDraining() }
        }

        self.state = .finished
        if unlink(path) != 0 && errno != ENOENT {
            self.logger.warning("could not remove the socket file", metadata: ["socket": "\(path)"])
        }
        self.logger.info("stopped")
    }

    /// Stops accepting and asks every connection to finish its work and close.
    private func beginDraining() {
        guard case .running(let serverChannel) = self.state else { return }
        self.state = .draining
        self.logger.info("draining")
        self.onDraining()
        serverChannel.close(promise: nil)
        let open = self.connections.withLockedValue { Array($0.values) }
        for channel in open {
            channel.pipeline.fireUserInboundEventTriggered(DrainEvent())
            // Whatever has not finished by the deadline is closed.
            channel.eventLoop.scheduleTask(in: Self.drainDeadline) { channel.close(promise: nil) }
        }
    }
}
