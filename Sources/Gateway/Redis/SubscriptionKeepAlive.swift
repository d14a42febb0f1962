import Logging
import NIOCore

/// The keep-alive of a subscribed Redis connection (the near-cache's
/// invalidation listener, the Sentinel `+switch-master` subscriber): once
/// subscribed, a `PING` every `interval`. A connection that has not answered
/// the previous `PING` when the next one is due is closed, so a silently
/// dead peer (a network partition) is noticed within two intervals.
///
/// Owned by the connection's channel handler and used only on its event loop.
final class SubscriptionKeepAlive {
    private let interval: TimeAmount
    private let logger: Logger
    /// Who is pinged and what happens next, for the log line:
    /// "\(peer) did not answer PING within N ms; \(then)".
    private let peer: String
    private let then: String
    private var timer: RepeatedTask?
    private var awaitingPong = false

    /// A keep-alive that pings every `interval` once started.
    init(interval: TimeAmount, logger: Logger, peer: String, then: String) {
        self.interval = interval
        self.logger = logger
        self.peer = peer
        self.then = then
    }

    /// The subscription is confirmed: pinging starts.
    func start(context: ChannelHandlerContext) {
        self.timer?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timer = context.eventLoop.scheduleRepeatedTask(initialDelay: self.interval, delay: self.interval) { _ in
            let (keepAlive, context) = loopBound.value
            keepAlive.due(context: context)
        }
    }

    /// A `PONG` arrived.
    func pong() {
        self.awaitingPong = false
    }

    /// The connection closed: pinging stops.
    func stop() {
        self.timer?.cancel()
        self.timer = nil
    }

    private func due(context: ChannelHandlerContext) {
        if self.awaitingPong {
            self.logger.warning("\(self.peer) did not answer PING within \(self.interval.nanoseconds / 1_000_000) ms; \(self.then)")
            self.stop()
            context.close(promise: nil)
            return
        }
        self.awaitingPong = true
        context.writeAndFlush(NIOAny(RedisCommand("PING")), promise: nil)
    }
}
