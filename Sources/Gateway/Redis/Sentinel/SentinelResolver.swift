import GatewayProtocol
import Logging
import NIOCore
import Synchronization

/// Finds a Sentinel-monitored master: the `RedisEndpointSource` of a pool
/// (and of the near-cache's listener) for `redis+sentinel://` URLs.
///
/// **Resolving.** Each resolution asks the sentinels one after the other
/// (`SentinelMasterState` says in which order), each within
/// `sentinelTimeout`, on a short-lived connection: `SENTINEL
/// get-master-addr-by-name <name>`. The first address given wins; a sentinel
/// that is down, refuses, or does not know the master is skipped. The
/// connection made to that address then confirms with `ROLE` that it is a
/// master (`requiresMaster`), so a sentinel that is behind cannot send writes
/// to a replica. Resolutions asked for while one is running share it, so a
/// pool reconnecting all its connections asks the sentinels once.
///
/// **Moving.** When an answer, or a `+switch-master` announcement that
/// `SentinelSwitchSubscriber` hears, names another master than the one
/// known, the observers are told at once (the pool replaces its
/// connections; the near-cache flushes and moves its listener).
final class SentinelResolver: RedisEndpointSource {
    private struct State: Sendable {
        var master: SentinelMasterState<RedisURL.Endpoint>
        var running: EventLoopFuture<RedisURL>?
        var observers: [@Sendable (RedisURL.Endpoint) -> Void] = []
    }

    /// The sentinels, the master's name, and how to talk to the master.
    let configuration: RedisSentinelConfiguration
    private let logger: Logger
    private let state: Mutex<State>
    private let subscriber = Mutex<SentinelSwitchSubscriber?>(nil)
    private let eventLoopGroup: any EventLoopGroup
    /// While no sentinel answers, every reconnect fails: said once per 10 s.
    private let faults: RateLimitedLog

    /// A resolver for `configuration`; `start()` subscribes to announcements
    /// on one of the sentinels (a connection of `eventLoopGroup`).
    init(configuration: RedisSentinelConfiguration, eventLoopGroup: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        var logger = logger
        logger[metadataKey: "redis.sentinel.master"] = "\(configuration.masterName)"
        self.logger = logger
        self.faults = RateLimitedLog(logger: logger, interval: .seconds(10))
        self.state = Mutex(State(master: SentinelMasterState(sentinelCount: configuration.sentinels.count)))
    }

    /// The sentinels and the master's name (no password).
    var description: String {
        "sentinel " + self.configuration.sentinels.map(\.description).joined(separator: ",") + "/" + self.configuration.masterName
    }

    /// The master as last known.
    var currentEndpoint: RedisURL.Endpoint? {
        self.state.withLock { $0.master.master }
    }

    /// The master's URL as last known (before any answer, with the first sentinel's endpoint).
    var currentURL: RedisURL {
        var url = self.configuration.master
        if let endpoint = self.currentEndpoint { url.endpoint = endpoint }
        return url
    }

    /// Yes: a sentinel's answer can be out of date.
    var requiresMaster: Bool { true }

    func observeChanges(_ observer: @escaping @Sendable (RedisURL.Endpoint) -> Void) {
        self.state.withLock { $0.observers.append(observer) }
    }

    /// Subscribes to `+switch-master` (once).
    func start() {
        let subscriber = self.subscriber.withLock { current -> SentinelSwitchSubscriber? in
            guard current == nil else { return nil }
            let subscriber = SentinelSwitchSubscriber(resolver: self, eventLoop: self.eventLoopGroup.next(), logger: self.logger)
            current = subscriber
            return subscriber
        }
        subscriber?.start()
    }

    /// Stops the subscription.
    func shutdown() async {
        // Taken out, so that the subscriber (which holds the resolver) goes too.
        let subscriber = self.subscriber.withLock { current in
            defer { current = nil }
            return current
        }
        await subscriber?.shutdown()
    }

    /// The master's URL, from the first sentinel that knows it.
    func resolve(on eventLoop: any EventLoop) -> EventLoopFuture<RedisURL> {
        let (running, promise, ticket, order) = self.state.withLock { state -> (EventLoopFuture<RedisURL>?, EventLoopPromise<RedisURL>?, SentinelMasterState<RedisURL.Endpoint>.Ticket, [Int]) in
            let ticket = state.master.beginQuery()
            if let running = state.running { return (running, nil, ticket, state.master.order) }
            let promise = eventLoop.makePromise(of: RedisURL.self)
            state.running = promise.futureResult
            return (nil, promise, ticket, state.master.order)
        }
        if let running { return running.hop(to: eventLoop) }
        guard let promise else { preconditionFailure("a resolution either runs or starts") }
        self.ask(order: order[...], ticket: ticket, failures: [], eventLoop: eventLoop).whenComplete { result in
            self.state.withLock { $0.running = nil }
            promise.completeWith(result)
        }
        return promise.futureResult
    }

    /// A sentinel announced that the master moved to `endpoint`.
    func announced(_ endpoint: RedisURL.Endpoint) {
        let outcome = self.state.withLock { $0.master.announced(endpoint) }
        self.report(outcome, how: "announced by a sentinel (+switch-master)")
    }

    private func ask(order: ArraySlice<Int>, ticket: SentinelMasterState<RedisURL.Endpoint>.Ticket, failures: [String], eventLoop: any EventLoop) -> EventLoopFuture<RedisURL> {
        guard let sentinel = order.first else {
            let error = GatewayError(
                .unavailable,
                "no sentinel gave the address of master '\(self.configuration.masterName)': \(failures.joined(separator: "; "))"
            )
            self.faults.log("sentinel-resolve", "cannot find the Redis master through Sentinel; retrying", metadata: ["redis.error": "\(error.message)"])
            return eventLoop.makeFailedFuture(error)
        }
        let url = self.configuration.sentinelURL(sentinel)
        let timeout = self.configuration.sentinelTimeout
        let connection = RedisConnection.Configuration(connectTimeout: timeout, commandTimeout: timeout, unresponsiveTimeout: nil, maximumReplySize: 1 << 20, maximumCommandSize: 1 << 16)
        let command = RedisCommand("SENTINEL", "get-master-addr-by-name", self.configuration.masterName)
        let asked = RedisConnection.connect(to: url, configuration: connection, on: eventLoop, logger: self.logger).flatMap { connection in
            connection.sendFuture(command).always { _ in connection.close() }
        }.map { Result<RESPValue, any Error>.success($0) }.recover { .failure($0) }
        return asked.flatMap { result in
            let next = order.dropFirst()
            let reply: RESPValue
            switch result {
            case .failure(let error):
                let reason = (error as? GatewayError)?.message ?? "\(error)"
                return self.ask(order: next, ticket: ticket, failures: failures + ["\(url.endpoint): \(reason)"], eventLoop: eventLoop)
            case .success(let value):
                reply = value
            }
            switch SentinelReplies.masterAddress(reply) {
            case .address(let host, let port):
                let endpoint = RedisURL.Endpoint.tcp(host: host, port: port)
                let outcome = self.state.withLock { $0.master.answered(endpoint, by: sentinel, ticket: ticket) }
                self.report(outcome, how: "given by sentinel \(url.endpoint)")
                var master = self.configuration.master
                if case .superseded(let current) = outcome {
                    master.endpoint = current
                } else {
                    master.endpoint = endpoint
                }
                return eventLoop.makeSucceededFuture(master)
            case .unknownMaster:
                return self.ask(order: next, ticket: ticket, failures: failures + ["\(url.endpoint) does not know it"], eventLoop: eventLoop)
            case .refused(let message):
                return self.ask(order: next, ticket: ticket, failures: failures + ["\(url.endpoint) refused: \(message)"], eventLoop: eventLoop)
            case .malformed(let reply):
                return self.ask(order: next, ticket: ticket, failures: failures + ["\(url.endpoint) answered \(reply)"], eventLoop: eventLoop)
            }
        }
    }

    private func report(_ outcome: SentinelMasterState<RedisURL.Endpoint>.Outcome, how: String) {
        switch outcome {
        case .found(let endpoint):
            self.logger.info("found the Redis master through Sentinel", metadata: ["redis.master": "\(endpoint)", "redis.sentinel.source": "\(how)"])
        case .moved(let from, let to):
            self.logger.notice("the Redis master moved", metadata: ["redis.old_master": "\(from)", "redis.master": "\(to)", "redis.sentinel.source": "\(how)"])
            let observers = self.state.withLock { $0.observers }
            for observer in observers { observer(to) }
        case .unchanged, .superseded:
            break
        }
    }
}
