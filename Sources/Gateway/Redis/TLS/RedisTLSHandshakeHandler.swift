import GatewayProtocol
import NIOCore
import NIOTLS

/// Waits for the TLS handshake of a new Redis connection and reports it as
/// `handshakeResult`; leaves the pipeline once Redis has sent its first
/// bytes of data.
///
/// A handshake that fails (a certificate that does not verify, a wrong name,
/// a server that wants a client certificate) fails `handshakeResult` with
/// `GatewayError(.unavailable)` that names the endpoint and swift-nio-ssl's
/// reason, and closes the channel. That error is not passed on: the
/// connection never served a command, and the pool logs the failed connect
/// once per interval (a handler further in would log every attempt). A
/// handshake not done within `timeout` fails the same way.
///
/// With TLS 1.3 the client's handshake completes before the server has
/// checked the client's certificate, so a server that wants one (and got
/// none, or one it does not trust) refuses only afterwards, with an alert.
/// Until Redis has sent data, such an error is passed on as a
/// `GatewayError(.unavailable)` that says so: the connection's first
/// commands fail with it, and the pool logs it as a failed connect.
final class RedisTLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny

    private let endpoint: String
    private let serverName: String?
    private let timeout: TimeAmount
    private var promise: EventLoopPromise<Void>?
    private var timer: Scheduled<Void>?
    private var handshakeCompleted = false

    init(endpoint: String, serverName: String?, timeout: TimeAmount) {
        self.endpoint = endpoint
        self.serverName = serverName
        self.timeout = timeout
    }

    private var result: EventLoopFuture<Void>?

    /// Succeeds once the handshake completed; fails as described above.
    func handshakeResult(on eventLoop: any EventLoop) -> EventLoopFuture<Void> {
        self.result ?? eventLoop.makeFailedFuture(GatewayError(.unavailable, "the TLS handler for Redis at \(self.endpoint) was never in a pipeline"))
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let promise = context.eventLoop.makePromise(of: Void.self)
        self.promise = promise
        self.result = promise.futureResult
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleTask(in: self.timeout) {
            let (handler, context) = loopBound.value
            handler.fail(GatewayError(.unavailable, "the TLS handshake with Redis at \(handler.endpoint) did not finish within \(handler.timeout.nanoseconds / 1_000_000) ms"), context: context)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        self.promise?.fail(GatewayError(.unavailable, "the connection to Redis at \(self.endpoint) closed during the TLS handshake"))
        self.promise = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            self.timer?.cancel()
            self.timer = nil
            self.handshakeCompleted = true
            let promise = self.promise
            self.promise = nil
            promise?.succeed(())
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
        // Redis answered: the server accepted this client. Reads no longer pass through here.
        if self.handshakeCompleted {
            self.handshakeCompleted = false
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard self.promise != nil else {
            guard self.handshakeCompleted else {
                context.fireErrorCaught(error)
                return
            }
            let refused = GatewayError(
                .unavailable,
                "the TLS handshake with Redis at \(self.endpoint) failed: the server refused this client after the handshake (does it require a client certificate? --redis-tls-cert-file): \(error)"
            )
            context.fireErrorCaught(refused)
            return
        }
        let name = self.serverName.map { " for the name '\($0)'" } ?? " for its IP address"
        self.fail(GatewayError(.unavailable, "the TLS handshake with Redis at \(self.endpoint) failed (certificate checked\(name)): \(error)"), context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.fail(GatewayError(.unavailable, "the connection to Redis at \(self.endpoint) closed during the TLS handshake"), context: context)
        context.fireChannelInactive()
    }

    private func fail(_ error: GatewayError, context: ChannelHandlerContext) {
        self.timer?.cancel()
        self.timer = nil
        guard let promise = self.promise else { return }
        self.promise = nil
        promise.fail(error)
        context.close(promise: nil)
    }
}
