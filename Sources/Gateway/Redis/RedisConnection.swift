import GatewayProtocol
import Logging
import NIOCore
import NIOPosix

/// One pipelined connection to Redis: over a SwiftNIO channel, or, on one
/// of the gateway's own loops (`IOLoop`), over a socket served there
/// (`IORedisConnection`) unless it uses TLS.
///
/// Commands may be sent from any thread or task, and any number may be in
/// flight: each is queued at once, the commands of one turn of the event loop
/// go out in one write at its end, and replies are matched in FIFO order
/// (see `RedisCommandQueue`). hiredis is used only to parse replies; all
/// I/O is non-blocking, so nothing blocks an event loop.
///
/// **Replies.** A Redis error reply is returned as `RESPValue.error`, not
/// thrown: a pipeline has one outcome per command, and an error reply leaves
/// the connection healthy. Use `RESPValue.checked()` to throw it instead.
///
/// **Errors thrown** (all `GatewayError`):
/// - `.unavailable`: the connection could not be established;
/// - `.backendError`: Redis refused the handshake (`AUTH`, `SELECT`), or sent
///   bytes that are not RESP (the connection is then closed);
/// - `.timeout`: no reply within the command's timeout (the connection stays
///   open, and the late reply is dropped when it arrives);
/// - `.connectionClosed`: the connection closed before the reply arrived, or
///   was closed already;
/// - `.valueTooLarge`: the command is larger than `maximumCommandSize`;
/// - `.tooManyRequests`: `maximumInFlight` commands were waiting already (the
///   command was not sent).
///
/// Cancelling the task that awaits a reply does not un-send the command.
public final class RedisConnection: Sendable {
    /// Settings for a connection.
    public struct Configuration: Sendable, Hashable {
        /// How long to wait for the socket to connect.
        public var connectTimeout: TimeAmount
        /// The default time each command waits for Redis to answer: the
        /// longest Redis may stay silent while the command waits (see
        /// `RedisCommandQueue`); nil waits until the connection closes.
        public var commandTimeout: TimeAmount?
        /// How long the oldest command may stay unanswered past its timeout
        /// before the server is taken for dead and the connection is closed;
        /// nil never gives up (a partitioned server may then go unnoticed for
        /// as long as TCP takes to notice).
        public var unresponsiveTimeout: TimeAmount?
        /// The largest reply accepted, in bytes of RESP. A larger reply closes
        /// the connection with `.backendError`, so this must exceed the
        /// largest value the gateway stores.
        public var maximumReplySize: Int
        /// The largest command accepted, in bytes of RESP (approximately);
        /// larger ones fail with `.valueTooLarge` and are not sent.
        public var maximumCommandSize: Int
        /// A name set with `CLIENT SETNAME` on connect (shown by `CLIENT
        /// LIST`), or nil. Must not contain spaces.
        public var clientName: String?
        /// The most commands that may wait for their replies at once; more
        /// fail at once with `.tooManyRequests`, unsent. This bounds how long
        /// a command can wait behind others, since timeouts count only
        /// Redis's silence (see `RedisCommandQueue`). nil (the default) is
        /// no bound; the gateway's store sets one (`RedisStore.Configuration`).
        public var maximumInFlight: Int?
        /// Whether the handshake also sends `ROLE` and fails with
        /// `.backendError` unless the server says it is a master: a
        /// Sentinel's master is confirmed this way on every connect, so that
        /// a demoted one is never written to. Default false.
        public var requiresMaster: Bool = false

        /// The defaults: 1 s to connect, 1 s per command, closed after 5 s
        /// more without an answer, replies and commands up to 64 MiB.
        public init(
            connectTimeout: TimeAmount = .seconds(1),
            commandTimeout: TimeAmount? = .seconds(1),
            unresponsiveTimeout: TimeAmount? = .seconds(5),
            maximumReplySize: Int = 64 * 1024 * 1024,
            maximumCommandSize: Int = 64 * 1024 * 1024,
            clientName: String? = nil,
            maximumInFlight: Int? = nil
        ) {
            self.maximumInFlight = maximumInFlight
            self.connectTimeout = connectTimeout
            self.commandTimeout = commandTimeout
            self.unresponsiveTimeout = unresponsiveTimeout
            self.maximumReplySize = maximumReplySize
            self.maximumCommandSize = maximumCommandSize
            self.clientName = clientName
        }
    }

    /// The server this connection talks to (its description hides the password).
    public let url: RedisURL
    /// The connection's settings.
    public let configuration: Configuration
    private let transport: Transport
    private let logger: Logger

    /// What carries the connection's bytes.
    private enum Transport: Sendable {
        /// A SwiftNIO channel, and its command queue for commands sent on
        /// the channel's event loop (`send(_:timeout:then:)`): queued
        /// straight into it, not passed down the pipeline from its tail.
        case channel(any Channel, NIOLoopBound<RedisCommandQueue>?)
        #if os(Linux)
        /// A socket on one of the gateway's own loops.
        case io(IORedisConnection)
        #endif
    }

    private init(transport: Transport, url: RedisURL, configuration: Configuration, logger: Logger) {
        self.transport = transport
        self.url = url
        self.configuration = configuration
        self.logger = logger
    }

    private convenience init(channel: any Channel, url: RedisURL, configuration: Configuration, logger: Logger) {
        // Created on the channel's event loop, right after the connect.
        var queue: NIOLoopBound<RedisCommandQueue>?
        if channel.eventLoop.inEventLoop, let handler = try? channel.pipeline.syncOperations.handler(type: RedisCommandHandler.self) {
            queue = NIOLoopBound(handler.queue, eventLoop: channel.eventLoop)
        }
        self.init(transport: .channel(channel, queue), url: url, configuration: configuration, logger: logger)
    }

    /// The event loop that runs this connection; futures returned by this
    /// connection complete on it.
    public var eventLoop: any EventLoop {
        switch self.transport {
        case .channel(let channel, _): channel.eventLoop
        #if os(Linux)
        case .io(let connection): connection.loop
        #endif
        }
    }

    /// Whether the connection is still open. A true value can be stale by the
    /// time it is used; sending on a closed connection fails with `.connectionClosed`.
    public var isActive: Bool {
        switch self.transport {
        case .channel(let channel, _): channel.isActive
        #if os(Linux)
        case .io(let connection): connection.isActive
        #endif
        }
    }

    /// Succeeds when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> {
        switch self.transport {
        case .channel(let channel, _): channel.closeFuture
        #if os(Linux)
        case .io(let connection): connection.closeFuture
        #endif
        }
    }

    // MARK: Connecting

    /// Connects to `url`, then sends the handshake in one pipeline: `AUTH`
    /// when the URL has a password, `SELECT` when its database is not 0,
    /// `CLIENT SETNAME` when configured, and a `PING` that proves the server
    /// answers (and, without `AUTH`, that it does not require a password).
    ///
    /// Fails with `.unavailable` when the socket cannot be connected within
    /// `connectTimeout`, `.backendError` when Redis refuses a handshake
    /// command, `.timeout` when the handshake is not answered within
    /// `commandTimeout` (or `connectTimeout` when commands have no timeout).
    /// With `metrics`, the round trip of every command is recorded.
    public static func connect(
        to url: RedisURL,
        configuration: Configuration = Configuration(),
        on eventLoop: any EventLoop,
        logger: Logger,
        metrics: GatewayMetrics? = nil
    ) -> EventLoopFuture<RedisConnection> {
        var endpointLogger = logger
        endpointLogger[metadataKey: "redis.endpoint"] = "\(url.endpoint)"
        let logger = endpointLogger
        #if os(Linux)
        // On the gateway's own loops, plain TCP and Unix sockets are served
        // there too; TLS is SwiftNIO's (`connectChannel` picks a loop of its own).
        if url.tls == nil, let loop = eventLoop as? IOLoop {
            return Self.connectOnOwnLoop(to: url, configuration: configuration, on: loop, logger: logger, metrics: metrics)
        }
        #endif
        let connected = Self.connectChannel(to: url, configuration: configuration, on: eventLoop, hasCodecHandlers: false) {
            RedisCommandHandler(queue: try RedisCommandQueue(configuration: configuration, logger: logger, metrics: metrics))
        }
        return connected.flatMapErrorThrowing { error in
            if let error = error as? GatewayError { throw error }
            throw GatewayError(.unavailable, "cannot connect to Redis at \(url.endpoint): \(error)")
        }.flatMap { channel in
            RedisConnection(channel: channel, url: url, configuration: configuration, logger: logger).handshaken()
        }
    }

    #if os(Linux)
    private static func connectOnOwnLoop(
        to url: RedisURL,
        configuration: Configuration,
        on loop: IOLoop,
        logger: Logger,
        metrics: GatewayMetrics?
    ) -> EventLoopFuture<RedisConnection> {
        let makeQueue: @Sendable () throws -> RedisCommandQueue = {
            try RedisCommandQueue(configuration: configuration, logger: logger, metrics: metrics)
        }
        return IORedisConnection.connect(to: url.endpoint, timeout: configuration.connectTimeout, on: loop, makeQueue: makeQueue).flatMap { socket in
            RedisConnection(transport: .io(socket), url: url, configuration: configuration, logger: logger).handshaken()
        }
    }
    #endif

    /// Connects a channel to `url`'s endpoint (TCP or a Unix socket) whose
    /// pipeline decodes RESP replies and encodes commands (unless
    /// `hasCodecHandlers` is false: the data connections' `RedisCommandHandler`
    /// decodes its replies and encodes its commands itself, a turn's worth into
    /// one buffer) and ends with the handler `makeHandler` makes: the data
    /// connections', the near-cache listener's and the Sentinel subscriber's.
    ///
    /// With `url.tls`, the pipeline starts with the TLS handlers
    /// (`RedisTLSContext`) and the future succeeds only once the TLS
    /// handshake has: a certificate that does not verify fails it with
    /// `.unavailable`. Without it, the pipeline has no TLS handler at all.
    static func connectChannel(
        to url: RedisURL,
        configuration: Configuration,
        on eventLoop: any EventLoop,
        hasCodecHandlers: Bool = true,
        makeHandler: @escaping @Sendable () throws -> any ChannelHandler
    ) -> EventLoopFuture<any Channel> {
        let tlsHandlers: (@Sendable () throws -> [any ChannelHandler])?
        if let tls = url.tls, case .tcp(let host, _) = url.endpoint {
            let endpoint = "\(url.endpoint)"
            // The TLS handshake gets as long as the TCP connect.
            let timeout = configuration.connectTimeout
            tlsHandlers = { try RedisTLSContext.makeHandlers(tls, host: host, endpoint: endpoint, timeout: timeout) }
        } else {
            tlsHandlers = nil
        }
        var eventLoop = eventLoop
        #if os(Linux)
        // Channels need one of SwiftNIO's loops.
        if eventLoop is IOLoop { eventLoop = MultiThreadedEventLoopGroup.singleton.next() }
        #endif
        let bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tlsHandlers {
                        try channel.pipeline.syncOperations.addHandlers(tlsHandlers())
                    }
                    if hasCodecHandlers {
                        try channel.pipeline.syncOperations.addHandler(
                            ByteToMessageHandler(RESPReplyDecoder(maximumReplySize: configuration.maximumReplySize))
                        )
                        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(RESPCommandEncoder()))
                    }
                    try channel.pipeline.syncOperations.addHandler(makeHandler())
                }
            }
        let connected: EventLoopFuture<any Channel>
        switch url.endpoint {
        case .tcp(let host, let port):
            connected = bootstrap.connect(host: host, port: port)
        case .unixSocket(let path):
            connected = bootstrap.connect(unixDomainSocketPath: path)
        }
        guard tlsHandlers != nil else { return connected }
        return connected.flatMap { channel in
            // The handler leaves the pipeline once the handshake is done; it
            // is there still, since this runs right after the connect.
            let handshake: EventLoopFuture<Void>
            do {
                handshake = try channel.pipeline.syncOperations.handler(type: RedisTLSHandshakeHandler.self).handshakeResult(on: channel.eventLoop)
            } catch {
                handshake = channel.eventLoop.makeSucceededVoidFuture()
            }
            return handshake.map { channel }
        }
    }

    /// Connects to `url`; see `connect(to:configuration:on:logger:)`.
    public static func connect(
        to url: RedisURL,
        configuration: Configuration = Configuration(),
        on eventLoop: any EventLoop,
        logger: Logger
    ) async throws -> RedisConnection {
        try await Self.connect(to: url, configuration: configuration, on: eventLoop, logger: logger).get()
    }

    /// The commands sent right after connecting; see `connect`.
    static func handshakeCommands(for url: RedisURL, clientName: String?) -> [RedisCommand] {
        var commands: [RedisCommand] = []
        if let password = url.password {
            commands.append(.auth(username: url.username, password: password))
        }
        if url.database != 0 {
            commands.append(.select(url.database))
        }
        if let clientName {
            commands.append(RedisCommand("CLIENT", "SETNAME", clientName))
        }
        commands.append(.ping)
        return commands
    }

    /// This connection once its handshake is answered; closed, with the
    /// handshake's error, when it is not.
    private func handshaken() -> EventLoopFuture<RedisConnection> {
        self.handshake().flatMapError { error in
            self.close().flatMapThrowing { throw error }
        }.map {
            self.logger.debug("connected to Redis", metadata: ["redis.database": "\(self.url.database)"])
            return self
        }
    }

    private func handshake() -> EventLoopFuture<Void> {
        let requiresMaster = self.configuration.requiresMaster
        let commands = Self.handshakeCommands(for: self.url, clientName: self.configuration.clientName) + (requiresMaster ? [RedisCommand("ROLE")] : [])
        let endpoint = self.url.endpoint
        // Always bounded, so that a server that accepts but never answers
        // cannot hang `connect` even when commands have no timeout.
        let timeout = self.configuration.commandTimeout ?? self.configuration.connectTimeout
        return self.pipelineFuture(commands, timeout: timeout).flatMapThrowing { replies in
            for (command, reply) in zip(commands, replies) {
                if case .error(let message) = reply {
                    // The message is Redis's; it never echoes the password.
                    throw GatewayError(.backendError, "Redis refused \(command.name) on connect: \(message)")
                }
            }
            if requiresMaster, let role = replies.last {
                let name = SentinelReplies.role(role)
                guard name == "master" else {
                    throw GatewayError(.backendError, "Redis at \(endpoint) is not a master (ROLE says \(name ?? "something unreadable")): the Sentinels' answer is out of date")
                }
            }
        }
    }

    // MARK: Sending

    /// Sends `command` and returns a future for its reply; the hot path.
    ///
    /// `timeout` overrides `configuration.commandTimeout` for this command
    /// (nil uses the configured one).
    public func sendFuture(_ command: RedisCommand, timeout: TimeAmount? = nil) -> EventLoopFuture<RESPValue> {
        let promise = self.eventLoop.makePromise(of: RESPValue.self)
        let request = RedisRequest(command: command, promise: promise, timeout: timeout ?? self.configuration.commandTimeout)
        self.write(.one(request), replies: CollectionOfOne(request.reply))
        return promise.futureResult
    }

    /// Sends `command` and calls `answer` with its reply (or why there is
    /// none: the errors of `sendFuture(_:timeout:)`) on this connection's
    /// event loop, with no future: the lookup path.
    ///
    /// Called on this connection's event loop, the command is queued straight
    /// into the connection's command queue and goes out with the other commands of
    /// this turn of the loop, in one write at its end.
    func send(_ command: RedisCommand, timeout: TimeAmount? = nil, then answer: @escaping @Sendable (Result<RESPValue, any Error>) -> Void) {
        let request = RedisRequest(command: command, reply: .callback(answer), timeout: timeout ?? self.configuration.commandTimeout)
        switch self.transport {
        case .channel(_, let queue?) where queue.eventLoop.inEventLoop:
            queue.value.enqueueDirectly(request)
        #if os(Linux)
        case .io(let connection) where connection.loop.inEventLoop:
            connection.queue.enqueueDirectly(request)
        #endif
        default:
            self.write(.one(request), replies: CollectionOfOne(request.reply))
        }
    }

    /// Sends `commands` back to back with a single flush and returns a
    /// future for their replies, in order.
    ///
    /// The commands are not a transaction: each is executed on its own and
    /// error replies are returned in place. The future fails as soon as any
    /// command fails (timeout, connection closed), with that command's error.
    public func pipelineFuture(_ commands: [RedisCommand], timeout: TimeAmount? = nil) -> EventLoopFuture<[RESPValue]> {
        let eventLoop = self.eventLoop
        guard !commands.isEmpty else { return eventLoop.makeSucceededFuture([]) }
        let timeout = timeout ?? self.configuration.commandTimeout
        let promises = commands.map { _ in eventLoop.makePromise(of: RESPValue.self) }
        let requests = zip(commands, promises).map { RedisRequest(command: $0, promise: $1, timeout: timeout) }
        self.write(.many(requests), replies: requests.map(\.reply))
        return EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: eventLoop)
    }

    /// Sends `command` and waits for its reply; see `sendFuture(_:timeout:)`.
    public func send(_ command: RedisCommand, timeout: TimeAmount? = nil) async throws -> RESPValue {
        try await self.sendFuture(command, timeout: timeout).get()
    }

    /// Sends `commands` with a single flush and waits for all replies; see
    /// `pipelineFuture(_:timeout:)`.
    public func pipeline(_ commands: [RedisCommand], timeout: TimeAmount? = nil) async throws -> [RESPValue] {
        try await self.pipelineFuture(commands, timeout: timeout).get()
    }

    private func write(_ outbound: RedisOutbound, replies: some Collection<RedisReplyTarget> & Sendable) {
        switch self.transport {
        case .channel(let channel, _):
            // The write promise fails only if the request never reached the
            // command queue (the channel was already torn down); otherwise
            // the queue owns the promises and completes them.
            let endpoint = self.url.endpoint
            channel.writeAndFlush(outbound).whenFailure { error in
                let closed = GatewayError(.connectionClosed, "the Redis connection to \(endpoint) is closed (\(error))")
                for reply in replies {
                    reply.fail(closed)
                }
            }
        #if os(Linux)
        case .io(let connection):
            // A closed connection's queue fails what it is given.
            if connection.loop.inEventLoop {
                connection.queue.accept(outbound)
                connection.queue.scheduleFlush()
            } else {
                connection.loop.execute {
                    connection.queue.accept(outbound)
                    connection.queue.scheduleFlush()
                }
            }
        #endif
        }
    }

    // MARK: Closing

    /// Closes the connection; commands in flight fail with `.connectionClosed`.
    /// Succeeds once closed, also when it was closed already.
    @discardableResult
    public func close() -> EventLoopFuture<Void> {
        switch self.transport {
        case .channel(let channel, _):
            channel.close(promise: nil)
            return channel.closeFuture
        #if os(Linux)
        case .io(let connection):
            connection.loop.execute { connection.close() }
            return connection.closeFuture
        #endif
        }
    }

    /// Closes the connection and waits until it is closed.
    public func close() async {
        try? await self.close().get()
    }
}
