import GatewayProtocol
import Logging
import NIOCore
import Synchronization

/// Told to every connection when the gateway starts draining.
struct DrainEvent: Sendable {}

/// Set once when the gateway starts draining; a connection accepted after that
/// moment reads it in `channelActive`, so none escapes the drain.
final class DrainSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    var isDraining: Bool { self.flag.load(ordering: .acquiring) }
    func start() { self.flag.store(true, ordering: .releasing) }
}

/// What every connection of one server shares.
struct ServerContext: Sendable {
    let configuration: GatewayConfiguration
    let store: any CacheStore
    let statistics: GatewayStatistics
    let metrics: GatewayMetrics
    let logger: Logger
    let drain: DrainSignal
}

/// Serves one worker connection, entirely on its event loop.
///
/// It sits behind a `FrameDecoder` and receives frame payloads. Each request is
/// decoded, handed to the store, and answered when the store's future
/// completes: requests run concurrently and replies go out in completion order,
/// each carrying its request's id. Replies produced while a read burst is being
/// processed are flushed once, at `channelReadComplete`, so a pipelined burst
/// costs one write system call. An in-memory hit never leaves this event loop.
final class ConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let shared: ServerContext
    private let codec: MessageCodec
    private var logger: Logger
    private var greeted = false
    private var inFlight = 0
    private var inReadBurst = false
    private var needsFlush = false
    private var drainCheck: Scheduled<Void>?
    /// Requests read while the channel was not writable, waiting their turn
    /// (at most what one read delivered: reading stops meanwhile).
    private var backlog = CircularBuffer<ByteBuffer>()
    /// When draining started; requests read within `drainGrace` of it are served.
    private var drainStarted: NIODeadline?

    init(context: ServerContext, connectionID: UInt64) throws {
        self.shared = context
        self.codec = try MessageCodec()
        self.logger = context.logger
        self.logger[metadataKey: "connection"] = "\(connectionID)"
    }

    func channelActive(context: ChannelHandlerContext) {
        self.shared.statistics.increment(.connections)
        self.shared.statistics.increment(.connectionsAccepted)
        self.shared.metrics.connectionOpened()
        context.fireChannelActive()
        if self.shared.drain.isDraining { self.startDraining(context: context) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.shared.statistics.decrement(.connections)
        self.shared.metrics.connectionClosed()
        self.drainCheck?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        self.inReadBurst = true
        let payload = Self.unwrapInboundIn(data)
        guard self.backlog.isEmpty, context.channel.isWritable else {
            self.backlog.append(payload)
            return
        }
        self.process(payload, context: context)
    }

    private func process(_ payload: ByteBuffer, context: ChannelHandlerContext) {
        self.shared.statistics.increment(.requests)
        let message: GatewayMessage
        do {
            message = try self.codec.decodeRequest(payload: payload)
        } catch let error as GatewayError {
            self.shared.metrics.recordRequest(nil)
            let id = GatewayMessage.requestID(inPayload: payload) ?? 0
            self.fail(id: id, error, context: context)
            return
        } catch {
            self.shared.metrics.recordRequest(nil)
            self.fail(id: 0, GatewayError(.malformedMessage, "\(error)"), context: context)
            return
        }
        self.handle(message, context: context)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadBurst = false
        if self.needsFlush {
            self.needsFlush = false
            context.flush()
        }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Errors that reach here come from the frame decoder: the stream cannot
        // be trusted any more, so say why and close.
        let gatewayError = (error as? GatewayError) ?? GatewayError(.malformedMessage, "\(error)")
        self.logger.notice("closing connection: \(gatewayError.message)", metadata: ["code": "\(gatewayError.wireCode)"])
        self.shared.statistics.increment(.errors)
        self.shared.metrics.recordError(gatewayError.wireCode)
        let reply = GatewayMessage(id: 0, .error(ErrorReply(gatewayError)))
        if let frame = try? reply.encodedFrame(allocator: context.channel.allocator) {
            context.writeAndFlush(Self.wrapOutboundOut(frame), promise: nil)
        }
        context.close(promise: nil)
    }

    /// Backpressure: a peer that sends requests but does not read the replies
    /// would make NIO queue replies without bound (a 4 MiB hit per 50-byte
    /// lookup). While the outbound buffer is above its high-water mark the
    /// connection stops reading and holds back the requests it has already
    /// read (see `channelRead`); it goes on once the peer has caught up.
    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            // Serve what was held back, as one burst with one flush, while the
            // peer keeps up; then read again.
            self.inReadBurst = true
            while context.channel.isWritable, let payload = self.backlog.popFirst() {
                self.process(payload, context: context)
            }
            self.inReadBurst = false
            if self.needsFlush {
                self.needsFlush = false
                context.flush()
            }
            if self.backlog.isEmpty {
                try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
                context.read()
                self.closeIfDrained(context: context)
            }
        } else {
            // On the channel's own event loop the option is set synchronously.
            try? context.channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        }
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainEvent {
            self.startDraining(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    // MARK: Requests

    private func handle(_ message: GatewayMessage, context: ChannelHandlerContext) {
        let id = message.id
        self.shared.metrics.recordRequest(message.body.type)
        guard message.body.type.isRequest else {
            self.fail(id: id, GatewayError(.unknownMessageType, "message type \(message.body.type) is a reply, not a request"), context: context)
            return
        }
        if case .hello(let hello) = message.body {
            self.hello(id: id, hello, context: context)
            return
        }
        if let started = self.drainStarted, NIODeadline.now() - started >= Self.drainGrace {
            self.fail(id: id, GatewayError(.shuttingDown, "the gateway is shutting down"), context: context)
            return
        }
        guard self.greeted else {
            self.reply(GatewayMessage(id: id, .error(ErrorReply(code: .helloRequired, message: "send hello first"))), context: context)
            self.shared.statistics.increment(.errors)
            self.shared.metrics.recordError(.helloRequired)
            return
        }
        guard self.inFlight < self.shared.configuration.maxInFlightPerConnection else {
            self.fail(id: id, GatewayError(.tooManyRequests, "more than \(self.shared.configuration.maxInFlightPerConnection) requests in flight"), context: context)
            return
        }
        let namespace = self.shared.configuration.namespace
        let loop = context.eventLoop
        switch message.body {
        case .ping:
            self.reply(GatewayMessage(id: id, .pong), context: context)
        case .lookup(let lookup):
            let key = StorageKey(namespace: namespace, function: lookup.function, key: lookup.key)
            let started = self.shared.metrics.startTime()
            let functionMetrics = self.shared.metrics.function(lookup.function.function)
            self.track(self.shared.store.lookup(key, on: loop), id: id, context: context, startedAt: started) { result, statistics in
                switch result {
                case .hit(let value, let computeMicroseconds):
                    statistics.increment(.hits)
                    functionMetrics.recordHit(computeMicroseconds: computeMicroseconds)
                    return .lookupReply(.hit(value))
                case .miss:
                    statistics.increment(.misses)
                    functionMetrics.recordMiss()
                    return .lookupReply(.miss)
                case .missDoNotStore:
                    statistics.increment(.misses)
                    functionMetrics.recordMiss()
                    return .lookupReply(.missDoNotStore)
                }
            }
        case .store(let store):
            guard store.value.readableBytes <= self.shared.configuration.maxValueSize else {
                self.fail(id: id, GatewayError(.valueTooLarge, "the value has \(store.value.readableBytes) bytes; the limit is \(self.shared.configuration.maxValueSize)"), context: context)
                return
            }
            let key = StorageKey(namespace: namespace, function: store.function, key: store.key)
            let entry = StoreEntry(
                value: store.value,
                ttl: .milliseconds(Int64(store.ttlMilliseconds)),
                computeMicroseconds: store.computeMicroseconds
            )
            let metrics = self.shared.metrics
            let functionMetrics = metrics.function(store.function.function)
            self.track(self.shared.store.store(key, entry: entry, on: loop), id: id, context: context) { stored, statistics in
                statistics.increment(stored ? .stores : .droppedStores)
                metrics.recordStore(functionMetrics, stored: stored)
                return .storeReply(stored: stored)
            }
        case .register:
            // The source-hash registry (leases, purging) arrives with issue 5;
            // until then registering is acknowledged and changes nothing.
            self.reply(GatewayMessage(id: id, .registerReply), context: context)
        case .invalidate(let invalidate):
            let future = self.shared.store.invalidate(
                namespace: namespace,
                function: invalidate.function,
                version: invalidate.version,
                key: invalidate.key,
                on: loop
            )
            let metrics = self.shared.metrics
            self.track(future, id: id, context: context) { deleted, _ in
                metrics.recordPurge(function: invalidate.function, deleted: deleted)
                return .invalidateReply(deleted: deleted)
            }
        case .stats:
            self.reply(GatewayMessage(id: id, .statsReply(self.shared.statistics.snapshot(store: self.shared.store))), context: context)
        default:
            self.fail(id: id, GatewayError(.unknownMessageType, "message type \(message.body.type) is not served"), context: context)
        }
    }

    private func hello(id: UInt64, _ hello: Hello, context: ChannelHandlerContext) {
        guard hello.protocolVersion == GatewayMessage.protocolVersion else {
            self.fail(id: id, GatewayError(.unsupportedVersion, "this gateway speaks protocol version \(GatewayMessage.protocolVersion), not \(hello.protocolVersion)"), context: context)
            // Fatal: flush the error first, then close (a close drops unflushed writes).
            self.needsFlush = false
            let channel = context.channel
            context.writeAndFlush(Self.wrapOutboundOut(channel.allocator.buffer(capacity: 0))).whenComplete { _ in
                channel.close(promise: nil)
            }
            return
        }
        if !self.greeted {
            self.greeted = true
            self.logger[metadataKey: "client"] = "\(hello.clientName)[\(hello.pid)]"
            self.logger.debug("hello")
        }
        let reply = HelloReply(
            protocolVersion: GatewayMessage.protocolVersion,
            gatewayVersion: GatewayVersion.current,
            maxFrameSize: UInt64(self.shared.configuration.maxFrameSize),
            maxValueSize: UInt64(self.shared.configuration.maxValueSize)
        )
        self.reply(GatewayMessage(id: id, .helloReply(reply)), context: context)
    }

    /// Answers when `future` completes. Store futures complete on this
    /// connection's event loop, so the callback runs here without a hop.
    /// With `startedAt` (from `GatewayMetrics.startTime()`), the time until the
    /// reply is written is recorded as a lookup's.
    private func track<Value: Sendable>(
        _ future: EventLoopFuture<Value>,
        id: UInt64,
        context: ChannelHandlerContext,
        startedAt: UInt64 = 0,
        _ makeReply: @escaping @Sendable (Value, GatewayStatistics) -> GatewayMessage.Body
    ) {
        self.inFlight += 1
        let statistics = self.shared.statistics
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        future.hop(to: context.eventLoop).whenComplete { result in
            let (handler, context) = loopBound.value
            handler.inFlight -= 1
            switch result {
            case .success(let value):
                handler.reply(GatewayMessage(id: id, makeReply(value, statistics)), context: context)
                handler.shared.metrics.recordLookup(since: startedAt)
            case .failure(let error):
                let gatewayError = (error as? GatewayError) ?? GatewayError(.unavailable, "\(error)")
                handler.fail(id: id, gatewayError, context: context)
            }
            handler.closeIfDrained(context: context)
        }
    }

    private func fail(id: UInt64, _ error: GatewayError, context: ChannelHandlerContext) {
        self.shared.statistics.increment(.errors)
        self.shared.metrics.recordError(error.wireCode)
        self.logger.debug("request failed: \(error.message)", metadata: ["id": "\(id)", "code": "\(error.wireCode)"])
        self.reply(GatewayMessage(id: id, .error(ErrorReply(error))), context: context)
    }

    private func reply(_ message: GatewayMessage, context: ChannelHandlerContext) {
        guard context.channel.isActive else { return }
        var capacity = 64
        if case .lookupReply(.hit(let value)) = message.body { capacity += value.readableBytes }
        var buffer = context.channel.allocator.buffer(capacity: capacity)
        do {
            try self.codec.encodeFrame(message, into: &buffer)
        } catch {
            // Only a reply larger than 4 GiB could fail to encode; say so instead.
            let fallback = GatewayMessage(id: message.id, .error(ErrorReply(code: .internal, message: "the reply could not be encoded")))
            buffer.clear()
            try? fallback.encodeFrame(into: &buffer)
        }
        if self.inReadBurst {
            context.write(Self.wrapOutboundOut(buffer), promise: nil)
            self.needsFlush = true
        } else {
            context.writeAndFlush(Self.wrapOutboundOut(buffer), promise: nil)
        }
    }

    // MARK: Draining

    /// How long after draining starts a connection keeps serving requests as
    /// usual: long enough for requests that were already on their way (in the
    /// peer's or the kernel's buffers) to arrive and be answered. After it,
    /// requests get `shuttingDown`, and the connection closes as soon as
    /// nothing is in flight, however busy its peer.
    static let drainGrace = TimeAmount.milliseconds(200)

    private func startDraining(context: ChannelHandlerContext) {
        guard self.drainStarted == nil else { return }
        self.drainStarted = .now()
        self.scheduleDrainCheck(in: Self.drainGrace, context: context)
    }

    private func closeIfDrained(context: ChannelHandlerContext) {
        guard let started = self.drainStarted, self.drainCheck == nil, self.inFlight == 0, self.backlog.isEmpty else { return }
        let elapsed = NIODeadline.now() - started
        if elapsed >= Self.drainGrace {
            context.close(promise: nil)
        } else {
            self.scheduleDrainCheck(in: Self.drainGrace - elapsed, context: context)
        }
    }

    private func scheduleDrainCheck(in delay: TimeAmount, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.drainCheck = context.eventLoop.scheduleTask(in: delay) {
            let (handler, context) = loopBound.value
            handler.drainCheck = nil
            handler.closeIfDrained(context: context)
        }
    }
}
