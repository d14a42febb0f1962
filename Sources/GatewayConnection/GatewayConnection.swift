import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// One connection to a gateway, with many requests in flight.
///
/// Each request gets a fresh id; replies are matched by id, so they may arrive
/// in any order. `connect` sends hello and waits for its reply. Every failure
/// is a `GatewayError`: `.unavailable` when nothing listens, `.connectionClosed`
/// for requests pending when the connection drops, `.timeout`, and `.remote`
/// (with the gateway's `wireCode`) for error replies.
public final class GatewayConnection: Sendable {
    private let channel: any Channel
    private let handler: NIOLoopBound<ReplyMatcher>
    private let nextID: NIOLockedValueBox<UInt64>

    /// What the gateway said in its hello reply.
    public let hello: HelloReply

    private init(channel: any Channel, handler: NIOLoopBound<ReplyMatcher>, hello: HelloReply, nextID: NIOLockedValueBox<UInt64> = NIOLockedValueBox(0)) {
        self.channel = channel
        self.handler = handler
        self.nextID = nextID
        self.hello = hello
    }

    /// Connects to the gateway at `socketPath` and says hello.
    public static func connect(
        socketPath: String,
        clientName: String = "gateway-connection",
        timeout: TimeAmount = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> GatewayConnection {
        try await self.connectFuture(socketPath: socketPath, clientName: clientName, timeout: timeout, eventLoopGroup: eventLoopGroup).get()
    }

    /// Connects to the gateway at `socketPath` and says hello; the future form,
    /// for callers that must not suspend (the client's synchronous path waits on it).
    public static func connectFuture(
        socketPath: String,
        clientName: String = "gateway-connection",
        timeout: TimeAmount = .seconds(5),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) -> EventLoopFuture<GatewayConnection> {
        ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(FrameDecoder(maxFrameSize: Int(UInt32.max))))
                    try channel.pipeline.syncOperations.addHandler(ReplyMatcher())
                }
            }
            .connect(unixDomainSocketPath: socketPath)
            .flatMapErrorThrowing { error in
                throw GatewayError(.unavailable, "cannot connect to the gateway at \(socketPath): \(error)")
            }
            .flatMap { channel in
                channel.eventLoop.makeCompletedFuture {
                    NIOLoopBound(try channel.pipeline.syncOperations.handler(type: ReplyMatcher.self), eventLoop: channel.eventLoop)
                }.flatMap { handler in
                    let unsaid = HelloReply(protocolVersion: 0, gatewayVersion: "", maxFrameSize: 0, maxValueSize: 0)
                    let connection = GatewayConnection(channel: channel, handler: handler, hello: unsaid)
                    let hello = GatewayMessage(id: 0, .hello(Hello(clientName: clientName, pid: UInt64(ProcessInfoShim.pid))))
                    return connection.sendNext(hello.body, timeout: timeout).flatMapThrowing { reply in
                        guard case .helloReply(let hello) = reply.body else {
                            channel.close(promise: nil)
                            if case .error(let error) = reply.body {
                                throw GatewayError(.remote, error.message, wireCode: error.code)
                            }
                            throw GatewayError(.malformedMessage, "the gateway answered hello with \(reply.body.type)")
                        }
                        return GatewayConnection(channel: channel, handler: handler, hello: hello, nextID: connection.nextID)
                    }.flatMapErrorThrowing { error in
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
    }

    /// Sends a request and returns the reply's body. An error reply throws
    /// `.remote` with the gateway's code.
    public func request(_ body: GatewayMessage.Body, timeout: TimeAmount = .seconds(5)) async throws -> GatewayMessage.Body {
        let reply = try await self.sendNext(body, timeout: timeout).get()
        if case .error(let error) = reply.body {
            throw GatewayError(.remote, error.message, wireCode: error.code)
        }
        return reply.body
    }

    /// Sends a request with the next free id; the reply may be an error reply.
    public func sendNext(_ body: GatewayMessage.Body, timeout: TimeAmount = .seconds(5)) -> EventLoopFuture<GatewayMessage> {
        let id = self.nextID.withLockedValue { id -> UInt64 in
            id += 1
            return id
        }
        return self.send(GatewayMessage(id: id, body), timeout: timeout)
    }

    /// Sends a message as it is (any id, any type) and returns the reply with
    /// that id. For tests and tools that need to send unusual messages.
    public func send(_ message: GatewayMessage, timeout: TimeAmount = .seconds(5)) -> EventLoopFuture<GatewayMessage> {
        let promise = self.channel.eventLoop.makePromise(of: GatewayMessage.self)
        let handler = self.handler
        let channel = self.channel
        self.channel.eventLoop.execute {
            handler.value.register(id: message.id, promise: promise, timeout: timeout, channel: channel)
            do {
                // A write that fails (the connection closed meanwhile) fails the
                // request at once instead of leaving it to its timeout.
                channel.writeAndFlush(try message.encodedFrame(allocator: channel.allocator)).whenFailure { error in
                    handler.value.fail(id: message.id, GatewayError(.connectionClosed, "the request could not be sent: \(error)"))
                }
            } catch {
                handler.value.fail(id: message.id, error)
            }
        }
        return promise.futureResult
    }

    /// Closes the connection; pending requests fail with `.connectionClosed`.
    public func close() async {
        try? await self.channel.close()
    }

    /// Completes when the connection has closed, for whatever reason.
    public var closeFuture: EventLoopFuture<Void> { self.channel.closeFuture }
}

/// Matches replies to pending requests by id, on the channel's event loop.
private final class ReplyMatcher: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var pending: [UInt64: (promise: EventLoopPromise<GatewayMessage>, timeout: Scheduled<Void>)] = [:]

    func register(id: UInt64, promise: EventLoopPromise<GatewayMessage>, timeout: TimeAmount, channel: any Channel) {
        let bound = NIOLoopBound(self, eventLoop: channel.eventLoop)
        let scheduled = channel.eventLoop.scheduleTask(in: timeout) {
            bound.value.fail(id: id, GatewayError(.timeout, "no reply to request \(id) within \(timeout)"))
        }
        if let previous = self.pending.updateValue((promise, scheduled), forKey: id) {
            previous.timeout.cancel()
            previous.promise.fail(GatewayError(.invalidField, "request id \(id) was reused while in flight"))
        }
    }

    func fail(id: UInt64, _ error: any Error) {
        guard let entry = self.pending.removeValue(forKey: id) else { return }
        entry.timeout.cancel()
        entry.promise.fail(error)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = Self.unwrapInboundIn(data)
        guard let message = try? GatewayMessage(payload: payload) else {
            context.fireErrorCaught(GatewayError(.malformedMessage, "the gateway sent an unreadable frame"))
            context.close(promise: nil)
            return
        }
        if let entry = self.pending.removeValue(forKey: message.id) {
            entry.timeout.cancel()
            entry.promise.succeed(message)
        } else if message.id == 0, case .error(let error) = message.body {
            // A connection-level error (e.g. frameTooLarge): it concerns every request.
            self.failAll(GatewayError(.remote, error.message, wireCode: error.code))
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.failAll(GatewayError(.connectionClosed, "the gateway closed the connection"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Requests fail with a `GatewayError`, never a transport's own error
        // type. A read that fails (ECONNRESET when the gateway closes while our
        // request is still unread in its buffer, as it does when draining) means
        // the connection is gone: that is `.connectionClosed`, like an orderly EOF.
        let failure = error as? GatewayError ?? GatewayError(.connectionClosed, "the connection to the gateway failed: \(error)")
        self.failAll(failure)
        context.close(promise: nil)
    }

    private func failAll(_ error: any Error) {
        let pending = self.pending
        self.pending = [:]
        for entry in pending.values {
            entry.timeout.cancel()
            entry.promise.fail(error)
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

enum ProcessInfoShim {
    static var pid: Int32 { getpid() }
}
