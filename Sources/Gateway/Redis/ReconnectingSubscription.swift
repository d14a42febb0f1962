import GatewaySystem
import NIOCore
import Synchronization

/// The life of a long-lived subscribed connection (the near-cache's
/// invalidation listener, the Sentinel `+switch-master` subscriber): it is
/// started once, connects with the owner's `connect`, and after every failed
/// attempt or closed connection connects again with exponential backoff,
/// until it is shut down. The backoff starts over when the owner reports a
/// confirmed subscription (`subscribed()`).
///
/// The owner keeps what is particular to it: where to connect, the channel
/// handler (with its `SubscriptionKeepAlive`), and what to log.
final class ReconnectingSubscription: Sendable {
    private struct State: Sendable {
        var channel: (any Channel)?
        var reconnect: Scheduled<Void>?
        var failures = 0
        var isStarted = false
        var isShutDown = false
    }

    private let eventLoop: any EventLoop
    private let backoff: ExponentialBackoff
    private let connect: @Sendable (ReconnectingSubscription) -> EventLoopFuture<any Channel>
    private let connectFailed: @Sendable (any Error) -> Void
    private let lost: @Sendable () -> Void
    private let state = Mutex(State())

    /// A subscription that opens its connections with `connect` and
    /// schedules its retries on `eventLoop`. `connectFailed` hears of each
    /// failed attempt, `lost` of each open connection that closed (not at
    /// shutdown); both only log.
    init(
        eventLoop: any EventLoop,
        backoff: ExponentialBackoff,
        connect: @escaping @Sendable (ReconnectingSubscription) -> EventLoopFuture<any Channel>,
        connectFailed: @escaping @Sendable (any Error) -> Void,
        lost: @escaping @Sendable () -> Void
    ) {
        self.eventLoop = eventLoop
        self.backoff = backoff
        self.connect = connect
        self.connectFailed = connectFailed
        self.lost = lost
    }

    /// Starts connecting, in the background; calling it again does nothing.
    func start() {
        let start = self.state.withLock { state -> Bool in
            guard !state.isStarted, !state.isShutDown else { return false }
            state.isStarted = true
            return true
        }
        if start { self.attempt() }
    }

    /// Stops reconnecting and closes the connection.
    func shutdown() async {
        let (channel, timer) = self.state.withLock { state in
            state.isShutDown = true
            defer { state.reconnect = nil }
            return (state.channel, state.reconnect)
        }
        timer?.cancel()
        try? await channel?.close()
    }

    /// Whether a connection is open.
    var isConnected: Bool { self.state.withLock { $0.channel?.isActive ?? false } }

    /// Closes the open connection; the next one follows with backoff.
    func reconnect() {
        let channel = self.state.withLock { $0.channel }
        channel?.close(promise: nil)
    }

    /// The subscription is confirmed: the backoff starts over.
    func subscribed() {
        self.state.withLock { $0.failures = 0 }
    }

    private func attempt() {
        self.connect(self).whenComplete { result in
            switch result {
            case .success(let channel):
                let keep = self.state.withLock { state -> Bool in
                    guard !state.isShutDown else { return false }
                    state.channel = channel
                    return true
                }
                guard keep else {
                    channel.close(promise: nil)
                    return
                }
                channel.closeFuture.whenComplete { _ in self.closed(channel) }
            case .failure(let error):
                self.connectFailed(error)
                self.scheduleRetry()
            }
        }
    }

    private func closed(_ channel: any Channel) {
        let shuttingDown = self.state.withLock { state in
            if state.channel === channel { state.channel = nil }
            return state.isShutDown
        }
        guard !shuttingDown else { return }
        self.lost()
        self.scheduleRetry()
    }

    private func scheduleRetry() {
        self.state.withLock { state in
            guard !state.isShutDown else { return }
            state.failures += 1
            let delay = self.backoff.delay(afterFailures: state.failures, random: Double.random(in: 0..<1))
            // Scheduling runs nothing inline, so it is safe under the lock.
            state.reconnect = self.eventLoop.scheduleTask(in: delay) { self.attempt() }
        }
    }
}
