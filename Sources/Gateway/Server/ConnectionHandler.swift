import GatewayProtocol
import Logging
import NIOCore

/// Told to every connection when the gateway starts draining.
struct DrainEvent: Sendable {}

/// Serves one worker connection on SwiftNIO: the I/O under its
/// `WorkerSession`.
///
/// It sits behind a `FrameReader` and receives frame payloads, which it
/// hands to the session with the connection's other events; it carries out
/// the session's writes, pauses and closes on the channel
/// (`WorkerTransport`).
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler, WorkerTransport {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shared: ServerContext
    private let connectionID: UInt64
    private let access: ConnectionAccess
    private let reading: ReadingState
    private let codec: MessageCodec
    /// The channel's context, from `handlerAdded` until `handlerRemoved`
    /// (the context holds this handler: kept longer, the two would never be
    /// freed). The session's callbacks may still run after that, and then
    /// find the connection closed.
    private var context: ChannelHandlerContext?
    /// The channel's event loop, from `handlerAdded` on.
    private var loop: (any EventLoop)?
    /// The session, from `handlerAdded` until `handlerRemoved`. The session
    /// holds this handler (its transport) for as long as callbacks hold it.
    private var session: WorkerSession!

    init(context: ServerContext, connectionID: UInt64, access: ConnectionAccess, reading: ReadingState) throws {
        self.shared = context
        self.connectionID = connectionID
        self.access = access
        self.reading = reading
        self.codec = try MessageCodec()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop = context.eventLoop
        self.session = WorkerSession(
            context: self.shared,
            connectionID: self.connectionID,
            access: self.access,
            reading: self.reading,
            codec: self.codec,
            transport: self
        )
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.session = nil
        self.context = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.session.activate()
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.session.deactivate()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.session.receive(Self.unwrapInboundIn(data))
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.session.readComplete()
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.session.transportFailed(error)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.session.writabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            self.session.startDraining()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: WorkerTransport

    var eventLoop: any EventLoop { self.loop! }

    var isActive: Bool { self.context?.channel.isActive ?? false }

    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    func makeBuffer(capacity: Int) -> ByteBuffer {
        self.context?.channel.allocator.buffer(capacity: capacity) ?? ByteBuffer()
    }

    func write(_ buffer: ByteBuffer) {
        self.context?.write(Self.wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        self.context?.flush()
    }

    func writeAndFlush(_ buffer: ByteBuffer) {
        self.context?.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
    }

    func writeThenClose(_ buffer: ByteBuffer) {
        guard let context = self.context else { return }
        let channel = context.channel
        context.writeAndFlush(Self.wrapOutboundOut(buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    func pauseReading() {
        // On the channel's own event loop the option is set synchronously.
        try? self.context?.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }

    func resumeReading() {
        guard let context = self.context else { return }
        try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
        context.read()
    }

    func close() {
        self.context?.close(promise: nil)
    }
}
