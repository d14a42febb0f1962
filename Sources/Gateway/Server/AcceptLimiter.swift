#if canImport(Glibc)
import Glibc
#endif
import GatewayProtocol
import GatewaySystem
import NIOCore

/// The first handler of the listener's pipeline: keeps a spare descriptor in
/// reserve and pauses accepting when the process runs out of descriptors,
/// so that the gateway neither spins on a backlog it cannot accept nor stops
/// for good (the policy is `AcceptGate`'s). Each pause is counted in `stats`
/// (`acceptBackoffs`) and logged at most once per interval.
final class AcceptLimiter: ChannelDuplexHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel
    typealias OutboundIn = Never

    /// How often a paused listener tries to take its reserve back when no
    /// connection closes meanwhile.
    static let retryDelay = TimeAmount.seconds(1)

    private var gate = AcceptGate()
    private var reserve: Int32?
    private var retry: Scheduled<Void>?
    private let statistics: GatewayStatistics
    private let log: RateLimitedLog

    init(statistics: GatewayStatistics, log: RateLimitedLog) {
        self.statistics = statistics
        self.log = log
        self.reserve = Self.openReserve()
    }

    /// A descriptor that only holds a place: /dev/null, read-only.
    private static func openReserve() -> Int32? {
        try? systemCall("open") { open("/dev/null", O_RDONLY | O_CLOEXEC) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.retry?.cancel()
        if let reserve = self.reserve { _ = Glibc.close(reserve) }
        self.reserve = nil
    }

    func read(context: ChannelHandlerContext) {
        if self.gate.readRequested() { context.read() }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = Self.unwrapInboundIn(data)
        self.gate.accepted()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        child.closeFuture.whenComplete { _ in
            loopBound.eventLoop.execute {
                let (handler, context) = loopBound.value
                if handler.gate.closed() { handler.takeReserveBack(context: context) }
            }
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? IOError, error.errnoCode == EMFILE || error.errnoCode == ENFILE {
            let wasPaused = self.gate.isPaused
            if self.gate.descriptorsExhausted(), let reserve = self.reserve {
                // The next accept gets this descriptor.
                _ = Glibc.close(reserve)
                self.reserve = nil
            }
            if !wasPaused {
                self.statistics.increment(.acceptBackoffs)
                self.log.log(
                    "accept-descriptors",
                    "no file descriptor left to accept a connection; accepting pauses until one is free (raise LimitNOFILE)",
                    metadata: ["error": "\(error)", "connections": "\(self.gate.open)"]
                )
                self.scheduleRetry(context: context)
            }
        }
        context.fireErrorCaught(error)
    }

    private func takeReserveBack(context: ChannelHandlerContext) {
        if self.reserve == nil { self.reserve = Self.openReserve() }
        if self.gate.reserveTaken(self.reserve != nil) { context.read() }
        if self.gate.isPaused {
            self.scheduleRetry(context: context)
        } else {
            self.retry?.cancel()
            self.retry = nil
        }
    }

    private func scheduleRetry(context: ChannelHandlerContext) {
        guard self.retry == nil else { return }
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.retry = context.eventLoop.scheduleTask(in: Self.retryDelay) {
            let (handler, context) = loopBound.value
            handler.retry = nil
            if handler.gate.wantsReserve { handler.takeReserveBack(context: context) }
        }
    }
}
