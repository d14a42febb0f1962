#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import GatewaySystem
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import ServiceLifecycle

/// A minimal HTTP/1.1 server for one document: `GET /metrics`.
///
/// It serves whatever `exposition` returns (for Prometheus, the registry's
/// text exposition) on a `MetricsEndpoint`. Each response closes its
/// connection (`Connection: close`), which is what a scraper polling every
/// few seconds needs, and keeps the server free of keep-alive state. A
/// connection that has not sent its request within `requestTimeout` is
/// closed. Other paths get 404, other methods 405.
///
/// It is a `Service`: `run()` binds (unless `bind()` was called first) and
/// serves until graceful shutdown, then stops accepting, lets responses being
/// written finish, closes idle connections and removes its socket file.
/// `GatewayApplication` binds it before the gateway reports ready, so that
/// READY=1 means both endpoints accept connections.
public actor MetricsServer: Service {
    private enum State {
        case initial
        case bound(any Channel)
        case finished
    }

    /// Where it listens.
    public let endpoint: MetricsEndpoint
    private let socketMode: UInt32
    private let socketGroup: String?
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let exposition: @Sendable () -> [UInt8]
    private let contentType: String
    private let requestTimeout: TimeAmount
    private let connections = NIOLockedValueBox<[ObjectIdentifier: any Channel]>([:])
    private var state: State = .initial

    /// The content type of the Prometheus text exposition format.
    public static let prometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// Creates a server; it binds in `bind()` or `run()`.
    ///
    /// - Parameters:
    ///   - endpoint: a loopback TCP address or a Unix socket.
    ///   - socketMode: the Unix socket file's permission bits.
    ///   - socketGroup: the Unix socket file's group (name or number); nil keeps the process's.
    ///   - eventLoopGroup: the loops that serve connections.
    ///   - logger: where the server logs; it never makes its own.
    ///   - contentType: the response's content type.
    ///   - requestTimeout: how long a connection may take to send its request.
    ///   - exposition: the document, rendered at each request.
    public init(
        endpoint: MetricsEndpoint,
        socketMode: UInt32 = 0o660,
        socketGroup: String? = nil,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        contentType: String = MetricsServer.prometheusContentType,
        requestTimeout: TimeAmount = .seconds(10),
        exposition: @escaping @Sendable () -> [UInt8]
    ) {
        self.endpoint = endpoint
        self.socketMode = socketMode
        self.socketGroup = socketGroup
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
        self.contentType = contentType
        self.requestTimeout = requestTimeout
        self.exposition = exposition
    }

    /// Binds the endpoint and starts accepting; returns the address bound (with
    /// the port chosen when the endpoint's was 0). Throws `.invalidConfiguration`
    /// when it cannot listen. Calling it again returns the same address.
    @discardableResult
    public func bind() async throws -> String {
        switch self.state {
        case .bound(let channel): return Self.describe(channel, self.endpoint)
        case .finished: throw GatewayError(.invalidConfiguration, "a MetricsServer runs once")
        case .initial: break
        }
        let connections = self.connections
        let exposition = self.exposition
        let contentType = self.contentType
        let requestTimeout = self.requestTimeout
        let bootstrap = ServerBootstrap(group: self.eventLoopGroup)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let key = ObjectIdentifier(channel)
                    connections.withLockedValue { $0[key] = channel }
                    channel.closeFuture.whenComplete { _ in connections.withLockedValue { $0[key] = nil } }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                    try channel.pipeline.syncOperations.addHandler(
                        MetricsHTTPHandler(exposition: exposition, contentType: contentType, requestTimeout: requestTimeout)
                    )
                }
            }
        let channel: any Channel
        do {
            switch self.endpoint.base {
            case .tcp(let host, let port):
                channel = try await bootstrap.bind(host: host, port: port).get()
            case .unixSocket(let path):
                try UnixSocketPath.prepare(path)
                // Bound with a umask that leaves the socket unreachable until its mode is set.
                let previousMask = umask(0o177)
                defer { umask(previousMask) }
                channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false).get()
            }
        } catch let error as GatewayError {
            throw error
        } catch {
            throw GatewayError(.invalidConfiguration, "cannot serve metrics on \(self.endpoint): \(error)")
        }
        if case .unixSocket(let path) = self.endpoint.base {
            do {
                try UnixSocketPath.applyPermissions(path, mode: self.socketMode, group: self.socketGroup)
            } catch {
                try? await channel.close()
                throw error
            }
        }
        self.state = .bound(channel)
        let address = Self.describe(channel, self.endpoint)
        self.logger.info("serving metrics", metadata: ["metrics.address": "\(address)", "metrics.path": "/metrics"])
        return address
    }

    /// Serves until graceful shutdown (binding first unless `bind()` was
    /// called), then stops accepting, lets responses being written finish,
    /// closes idle connections and removes the socket file.
    public func run() async throws {
        if case .initial = self.state { try await self.bind() }
        guard case .bound(let channel) = self.state else {
            throw GatewayError(.invalidConfiguration, "a MetricsServer runs once")
        }
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        // No new connections now. A response being written finishes; a
        // connection still waiting for its request is closed.
        let open = self.connections.withLockedValue { Array($0.values) }
        for connection in open {
            connection.pipeline.fireUserInboundEventTriggered(MetricsHTTPHandler.ShutdownEvent())
        }
        for connection in open {
            try? await connection.closeFuture.get()
        }
        self.state = .finished
        if case .unixSocket(let path) = self.endpoint.base {
            do {
                try removeFile(path)
            } catch {
                self.logger.warning("could not remove the metrics socket file", metadata: ["metrics.address": "\(self.endpoint)", "error": "\(error)"])
            }
        }
        self.logger.debug("metrics server stopped")
    }

    private static func describe(_ channel: any Channel, _ endpoint: MetricsEndpoint) -> String {
        guard case .tcp(let host, _) = endpoint.base, let port = channel.localAddress?.port else { return "\(endpoint)" }
        return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Answers one request per connection, then closes it.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Told to every connection when the server stops.
    struct ShutdownEvent: Sendable {}

    private let exposition: @Sendable () -> [UInt8]
    private let contentType: String
    private let requestTimeout: TimeAmount
    private var head: HTTPRequestHead?
    private var responding = false
    private var timeout: Scheduled<Void>?

    init(exposition: @escaping @Sendable () -> [UInt8], contentType: String, requestTimeout: TimeAmount) {
        self.exposition = exposition
        self.contentType = contentType
        self.requestTimeout = requestTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A peer that connects and says nothing is not kept.
        let channel = context.channel
        self.timeout = context.eventLoop.scheduleTask(in: self.requestTimeout) { channel.close(promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timeout?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            // A GET has no body; whatever a peer sends is dropped, not buffered.
            break
        case .end:
            guard let head = self.head, !self.responding else { return }
            self.head = nil
            self.respond(to: head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A request NIO could not parse: HTTPServerProtocolErrorHandler has
        // answered 400 already; the connection is of no further use.
        context.close(promise: nil)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ShutdownEvent {
            if !self.responding { context.close(promise: nil) }
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        self.responding = true
        self.timeout?.cancel()
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        var headers = HTTPHeaders()
        headers.add(name: "Connection", value: "close")
        let status: HTTPResponseStatus
        var body = context.channel.allocator.buffer(capacity: 0)
        if path != "/metrics" {
            status = .notFound
            body.writeString("not found: the metrics are at /metrics\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else if request.method != .GET && request.method != .HEAD {
            status = .methodNotAllowed
            headers.add(name: "Allow", value: "GET, HEAD")
            body.writeString("method not allowed: use GET\n")
            headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        } else {
            status = .ok
            body.writeBytes(self.exposition())
            headers.add(name: "Content-Type", value: self.contentType)
        }
        headers.add(name: "Content-Length", value: "\(body.readableBytes)")
        let version = HTTPVersion(major: 1, minor: 1)
        context.write(Self.wrapOutboundOut(.head(HTTPResponseHead(version: version, status: status, headers: headers))), promise: nil)
        if request.method != .HEAD && body.readableBytes > 0 {
            context.write(Self.wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        }
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }
}

@available(*, unavailable)
extension MetricsHTTPHandler: Sendable {}
