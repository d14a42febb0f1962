import CoreMetrics
import Foundation
import GatewayProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The process's link to its gateway: one shared connection (the original
/// idea's singleton), opened lazily on first use, multiplexing every call, and
/// reopened with backoff when it drops.
///
/// The connection is a `GatewayLink`: calls write their requests and,
/// when nobody else is reading, read their replies on their own threads, so a
/// hit costs no thread hop (see `GatewayLink` for how, and for what an
/// `async` call's short wait on its thread costs).
///
/// Everything here fails open: when the gateway is absent, slow or answers an
/// error, a lookup reports `.bypass` and the caller simply runs its function.
/// While the gateway stays absent, `ConnectionStateMachine` keeps calls from
/// trying to connect; while it is connected but does not answer (stopped or
/// hung), `CircuitBreaker` keeps them from waiting for the lookup timeout.
public final class CacheClient: Sendable {
    /// Settings for the client; every field has a default.
    public struct Configuration: Sendable {
        /// The gateway's socket: `CACHE_GATEWAY_SOCKET`, or `/run/cache-gateway/gateway.sock`.
        public var socketPath: String
        /// A name for the gateway's logs.
        public var clientName: String
        /// How long a lookup may take before the function runs uncached. Default: 10 ms.
        public var lookupTimeout: Duration
        /// How long connecting (and saying hello) may take. Default: 100 ms.
        public var connectTimeout: Duration
        /// The first wait after the gateway could not be reached; it doubles per
        /// failure up to `reconnectMaximumDelay`. Calls in between run uncached
        /// without trying to connect.
        public var reconnectInitialDelay: Duration
        /// The longest wait between two connect attempts. Default: 5 s.
        public var reconnectMaximumDelay: Duration
        /// How long an `async` call may wait for its reply on its own thread,
        /// reading the socket itself, before it suspends and lets the client's
        /// background thread hand the reply over. Default: 1 ms.
        ///
        /// Within this window a reply costs no thread hop (an in-memory hit
        /// takes tens of microseconds); the price is that the call keeps its
        /// thread of the cooperative pool for up to this long. Zero makes every
        /// `async` call suspend at once. Synchronous calls (`cacheSync`) block
        /// anyway and read until `lookupTimeout`.
        public var maximumInlineWait: Duration
        /// How many lookups in a row may time out before the client stops
        /// asking the gateway (the circuit breaker opens): calls then run
        /// uncached at once, without any I/O. Default: 3.
        public var circuitBreakerThreshold: Int
        /// How long the client stops asking after the breaker opens; then one
        /// call looks up as a probe. An answer resumes lookups; another timeout
        /// stops them again for twice as long, up to
        /// `circuitBreakerMaximumOpenTime`. Default: 100 ms.
        public var circuitBreakerInitialOpenTime: Duration
        /// The longest the client stops asking at a time. Default: 2 s.
        public var circuitBreakerMaximumOpenTime: Duration
        /// How long a held lookup may wait for its value: when a lookup
        /// misses while another worker (on any host sharing the gateway's
        /// backend) computes the same entry, the gateway says so and the
        /// client asks again to be held until the value is stored. Past this
        /// bound the function runs uncached. The client announces it in its
        /// hello; zero announces nothing, and the gateway then never holds
        /// this client's lookups (every miss computes). Default: 3 s.
        ///
        /// A synchronous call (`cacheSync`) blocks its thread while held; an
        /// `async` one suspends. Either way identical calls in this process
        /// are held once (the process's own single flight comes first).
        public var heldLookupTimeout: Duration
        /// Where the client logs what a worker should know about its gateway:
        /// connecting and failing to, a lost connection, and the circuit
        /// breaker opening and closing (never one line per call). Default: a
        /// logger that discards everything; pass the service's own.
        public var logger: Logger
        /// Where the client's counters go (`ClientMetrics` names them): hits,
        /// misses and every kind of bypass, stores, and connects. Default:
        /// `MetricsSystem.factory`, whatever the service bootstrapped.
        public var metricsFactory: any MetricsFactory

        /// The default socket path, from the environment or the standard location.
        public static var defaultSocketPath: String {
            let environment = ProcessInfo.processInfo.environment["CACHE_GATEWAY_SOCKET"] ?? ""
            return environment.isEmpty ? "/run/cache-gateway/gateway.sock" : environment
        }

        /// Creates a configuration.
        public init(
            socketPath: String = Configuration.defaultSocketPath,
            clientName: String = ProcessInfo.processInfo.processName,
            lookupTimeout: Duration = .milliseconds(10),
            connectTimeout: Duration = .milliseconds(100),
            reconnectInitialDelay: Duration = .milliseconds(100),
            reconnectMaximumDelay: Duration = .seconds(5),
            maximumInlineWait: Duration = .milliseconds(1),
            circuitBreakerThreshold: Int = 3,
            circuitBreakerInitialOpenTime: Duration = .milliseconds(100),
            circuitBreakerMaximumOpenTime: Duration = .seconds(2),
            heldLookupTimeout: Duration = .seconds(3),
            logger: Logger = Logger(label: "cache-gateway.client", factory: { _ in SwiftLogNoOpLogHandler() }),
            metricsFactory: any MetricsFactory = MetricsSystem.factory
        ) {
            self.socketPath = socketPath
            self.clientName = clientName
            self.lookupTimeout = lookupTimeout
            self.connectTimeout = connectTimeout
            self.reconnectInitialDelay = reconnectInitialDelay
            self.reconnectMaximumDelay = reconnectMaximumDelay
            self.maximumInlineWait = maximumInlineWait
            self.circuitBreakerThreshold = circuitBreakerThreshold
            self.circuitBreakerInitialOpenTime = circuitBreakerInitialOpenTime
            self.circuitBreakerMaximumOpenTime = circuitBreakerMaximumOpenTime
            self.heldLookupTimeout = heldLookupTimeout
            self.logger = logger
            self.metricsFactory = metricsFactory
        }
    }

    private static let current = NIOLockedValueBox<CacheClient>(CacheClient(configuration: Configuration()))

    /// The client that `@Cached` functions use.
    public static var shared: CacheClient { self.current.withLockedValue { $0 } }

    /// Points `@Cached` functions at another gateway (or changes timeouts); calls
    /// already running finish with the previous client.
    public static func configure(_ configuration: Configuration) {
        let previous = self.current.withLockedValue { current -> CacheClient in
            let previous = current
            current = CacheClient(configuration: configuration)
            return previous
        }
        previous.close()
    }

    private struct State: Sendable {
        var machine: ConnectionStateMachine
        var breaker: CircuitBreaker
        var connection: GatewayLink?
    }

    /// The client's settings.
    public let configuration: Configuration
    private let state: NIOLockedValueBox<State>
    let singleFlight = SingleFlight()
    let metrics: ClientMetrics
    private let logger: Logger
    /// `configuration`'s timeouts as the connection's deadlines take them.
    private let lookupTimeout: TimeAmount
    private let connectTimeout: TimeAmount
    /// `configuration.heldLookupTimeout` for the connection's deadlines.
    private let heldTimeout: TimeAmount

    /// Creates a client; it connects on first use.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.metrics = ClientMetrics(factory: configuration.metricsFactory)
        var logger = configuration.logger
        logger[metadataKey: "gateway"] = "\(configuration.socketPath)"
        self.logger = logger
        self.lookupTimeout = TimeAmount(clamping: configuration.lookupTimeout)
        self.connectTimeout = TimeAmount(clamping: configuration.connectTimeout)
        self.heldTimeout = TimeAmount(clamping: configuration.heldLookupTimeout)
        self.state = NIOLockedValueBox(State(machine: ConnectionStateMachine(
            initialDelay: TimeAmount(clamping: configuration.reconnectInitialDelay),
            maximumDelay: TimeAmount(clamping: configuration.reconnectMaximumDelay)
        ), breaker: CircuitBreaker(
            threshold: configuration.circuitBreakerThreshold,
            initialOpenDuration: TimeAmount(clamping: configuration.circuitBreakerInitialOpenTime),
            maximumOpenDuration: TimeAmount(clamping: configuration.circuitBreakerMaximumOpenTime)
        )))
    }

    /// What a lookup found.
    @usableFromInline
    package enum Lookup {
        /// The entry's bytes, and where to store a replacement should they not decode.
        case hit(ByteBuffer, GatewayLink)
        /// A hit whose entry the caller is asked to compute again and store
        /// through this connection (an early refresh, status 4): the entry's
        /// bytes are returned at once, the refresh runs in the background.
        /// Only for a lookup that announced it (`beginLookup(_:refresh:)`).
        case refresh(ByteBuffer, GatewayLink)
        /// Compute and store through this connection.
        case miss(GatewayLink)
        /// Compute; do not store (the gateway said so, or it is absent, slow or failing).
        case bypass
        /// Another worker computes the entry: ask again to be held (status 3).
        /// Never returned by a whole lookup: `beginLookup`, `finishLookup`
        /// and `lookupBlocking` turn it into what the held lookup found.
        case wait(GatewayLink)
    }

    // MARK: Connection

    /// What a call does about the connection, decided under the lock without
    /// any I/O, so that a call with the gateway absent or not answering costs
    /// no more than a lock.
    enum Access {
        /// Send on this connection; `reports` says whether the breaker wants
        /// to hear that the gateway answered (`CircuitBreaker.Decision`).
        case use(GatewayLink, reports: Bool)
        case connect
        case bypass
    }

    /// `forLookup`: whether the call is a lookup, which the circuit breaker
    /// may turn into a bypass (other requests, which do not fail open, are
    /// always sent).
    func access(forLookup: Bool = true) -> Access {
        let (access, bypass) = self.state.withLockedValue { state -> (Access, ClientMetrics.Bypass?) in
            switch state.machine.decide(now: NIODeadline.now()) {
            case .useConnection:
                if let connection = state.connection {
                    guard forLookup else { return (.use(connection, reports: false), nil) }
                    switch state.breaker.decide(now: NIODeadline.now()) {
                    case .allow(let reports): return (.use(connection, reports: reports), nil)
                    case .bypass: return (.bypass, .circuitOpen)
                    }
                }
                // Connected, but the connection just went away: try again next time.
                state.machine.connectionLost()
                return (.bypass, .unreachable)
            case .connect: return (.connect, nil)
            case .bypass: return (.bypass, .unreachable)
            }
        }
        if forLookup, let bypass { self.metrics.bypassed(bypass) }
        return access
    }

    /// Connects and says hello (the caller got `.connect` from `access()`);
    /// nil when that failed. The hello reply is awaited like any reply.
    func connect(isolation: isolated (any Actor)? = #isolation) async -> GatewayLink? {
        guard let connection = self.openSocket() else { return nil }
        let reply = await connection.request(self.hello, timeout: self.connectTimeout, mayLead: Self.mayBlock)
        return self.finishConnecting(connection, reply)
    }

    /// `connect()`, blocking the calling thread.
    func connectBlocking() -> GatewayLink? {
        guard let connection = self.openSocket() else { return nil }
        return self.finishConnecting(connection, connection.requestBlocking(self.hello, timeout: self.connectTimeout))
    }

    private var hello: GatewayMessage.Body {
        .hello(Hello(
            clientName: self.configuration.clientName,
            pid: UInt64(ProcessInfo.processInfo.processIdentifier),
            holdMilliseconds: self.holdMilliseconds
        ))
    }

    /// `heldLookupTimeout` in whole milliseconds for the wire (0: not held).
    var holdMilliseconds: UInt64 {
        guard self.configuration.heldLookupTimeout > .zero else { return 0 }
        return CacheClient.ttlMilliseconds(self.configuration.heldLookupTimeout) ?? 0
    }

    private func openSocket() -> GatewayLink? {
        do {
            return try GatewayLink(socketPath: self.configuration.socketPath, inlineWait: TimeAmount(clamping: self.configuration.maximumInlineWait))
        } catch {
            self.connectFailed("\(error)")
            return nil
        }
    }

    private func finishConnecting(_ connection: GatewayLink, _ reply: GatewayLink.Reply) -> GatewayLink? {
        guard case .success(let message) = reply, case .helloReply(let hello) = message.body else {
            connection.close()
            switch reply {
            case .failure(let error): self.connectFailed("no hello reply: \(error)")
            case .success(let message): self.connectFailed("unexpected hello reply: \(message.body)")
            }
            return nil
        }
        connection.hello = hello
        self.state.withLockedValue { state in
            state.machine.connectSucceeded()
            state.breaker.reset()
            state.connection = connection
        }
        self.metrics.connects.increment()
        self.logger.info("connected to the gateway", metadata: ["gateway_version": "\(hello.gatewayVersion)"])
        // The state box is captured, not `self`: a weak reference to the
        // client would give it a side table, and every retain of it (one per
        // call, through `shared`) would then take the runtime's slow path,
        // about 4% of a client's own time on a hit. The box holds the
        // connection and the connection holds this closure until it closes,
        // when the closure is let go.
        connection.whenClosed { [state = self.state, logger = self.logger] connection in
            let lost = state.withLockedValue { state -> Bool in
                guard state.connection === connection else { return false }
                state.connection = nil
                state.machine.connectionLost()
                return true
            }
            if lost { logger.warning("lost the connection to the gateway; calls run uncached until it is back") }
        }
        return connection
    }

    /// Connecting failed: back off, count it and say so. One line per failed
    /// attempt, and attempts are spaced by the doubling backoff (at most one
    /// per `reconnectMaximumDelay` while the gateway stays away).
    private func connectFailed(_ reason: String) {
        let retry = self.state.withLockedValue { state -> ConnectionStateMachine.State in
            state.machine.connectFailed(now: .now())
            return state.machine.state
        }
        self.metrics.connectFailures.increment()
        var retryIn = ""
        if case .backingOff(let retryAt) = retry {
            retryIn = "\((retryAt - .now()).nanoseconds / 1_000_000) ms"
        }
        self.logger.warning("cannot reach the gateway; calls run uncached", metadata: ["reason": "\(reason)", "retry_in": "\(retryIn)"])
    }

    /// Whether an `async` call may read the socket on its own thread: not on
    /// a SwiftNIO event loop (a task may run on one as its executor), which
    /// must never block.
    @usableFromInline
    static var mayBlock: Bool { MultiThreadedEventLoopGroup.currentEventLoop == nil }

    // MARK: Lookup and store

    /// How `beginLookup` left a lookup.
    @usableFromInline
    enum LookupStart {
        case done(Lookup)
        /// `finishLookup` completes it.
        case unfinished(Unfinished)
    }

    /// What is left of a lookup after `beginLookup`.
    @usableFromInline
    enum Unfinished {
        /// Awaited on `connection`: `GatewayLink.awaitReply` gets the reply;
        /// `reports` as in `Access.use`.
        case parked(GatewayLink, UInt64, reports: Bool)
        /// This call is to connect first; `refresh` as in `beginLookup`.
        case connect(refresh: Bool)
        /// The gateway said another worker computes the entry: send a held lookup on this connection.
        case held(GatewayLink)
    }

    /// Starts looking `call` up; `finishLookup` completes what it leaves
    /// unfinished (connecting first when it is this call's turn to). A lookup
    /// never fails (see `Lookup`); with the gateway absent it costs a lock, no I/O.
    ///
    /// This is the synchronous part of an `async` lookup: with the connection open
    /// and the reply back within the inline window, the whole lookup, with no
    /// `async` call (see `GatewayLink.sendReadingInline`). `cache` calls it directly.
    ///
    /// `refresh` announces that the caller can refresh the entry in the
    /// background: the lookup may then find `.refresh`.
    @usableFromInline
    func beginLookup(_ call: CachedCall, refresh: Bool = false) -> LookupStart {
        switch self.access() {
        case .bypass:
            return .done(.bypass)
        case .connect:
            return .unfinished(.connect(refresh: refresh))
        case .use(let connection, let reports):
            let attempt = connection.sendReadingInline(
                .lookup(call.site, call.key, refresh: refresh),
                timeout: self.lookupTimeout,
                mayLead: Self.mayBlock
            )
            switch attempt {
            case .done(let reply):
                let lookup = self.lookup(reply, on: connection, reports: reports)
                if case .wait(let connection) = lookup { return .unfinished(.held(connection)) }
                return .done(lookup)
            case .parked(let id): return .unfinished(.parked(connection, id, reports: reports))
            }
        }
    }

    /// The `async` part of a lookup that `beginLookup` left unfinished.
    @usableFromInline
    func finishLookup(_ unfinished: Unfinished, _ call: CachedCall, isolation: isolated (any Actor)? = #isolation) async -> Lookup {
        let lookup: Lookup
        switch unfinished {
        case .parked(let connection, let id, let reports):
            lookup = self.lookup(await connection.awaitReply(id), on: connection, reports: reports)
        case .connect(let refresh):
            guard let connection = await self.connect() else {
                self.metrics.bypassed(.unreachable)
                return .bypass
            }
            let reply = await connection.lookup(
                call.site,
                key: call.key,
                refresh: refresh,
                timeout: self.lookupTimeout,
                mayLead: Self.mayBlock
            )
            lookup = self.lookup(reply, on: connection, reports: false)
        case .held(let connection):
            lookup = .wait(connection)
        }
        guard case .wait(let connection) = lookup else { return lookup }
        self.metrics.held.increment()
        let reply = await connection.request(self.heldLookup(call), timeout: self.heldTimeout, mayLead: Self.mayBlock)
        return self.heldLookup(reply, on: connection)
    }

    /// The held lookup of `call` (sent after status 3).
    private func heldLookup(_ call: CachedCall) -> GatewayMessage.Body {
        .lookup(GatewayProtocol.Lookup(function: call.site.function, key: call.key, holdMilliseconds: self.holdMilliseconds))
    }

    /// What a held lookup's reply means. A timeout runs the function
    /// uncached without telling the circuit breaker: the gateway answered
    /// the first lookup in time, and a held one takes as long as the
    /// computation it waits for.
    private func heldLookup(_ reply: GatewayLink.Reply, on connection: GatewayLink) -> Lookup {
        if case .failure(let error) = reply, error.code == .timeout {
            self.metrics.bypassed(.timeout)
            return .bypass
        }
        let lookup = Self.lookup(reply, on: connection)
        switch lookup {
        case .hit, .refresh: self.metrics.hits.increment()
        case .miss: self.metrics.misses.increment()
        case .bypass, .wait:
            self.metrics.bypassed(.declined)
            return .bypass
        }
        return lookup
    }

    /// A lookup (as `beginLookup` and `finishLookup` make it), blocking the
    /// calling thread (at most the connect and lookup timeouts); `refresh`
    /// as in `beginLookup`.
    @usableFromInline
    package func lookupBlocking(_ call: CachedCall, refresh: Bool = false) -> Lookup {
        let connection: GatewayLink
        let reports: Bool
        switch self.access() {
        case .bypass:
            return .bypass
        case .use(let open, let report):
            connection = open
            reports = report
        case .connect:
            guard let open = self.connectBlocking() else {
                self.metrics.bypassed(.unreachable)
                return .bypass
            }
            connection = open
            reports = false
        }
        let reply = connection.lookupBlocking(call.site, key: call.key, refresh: refresh, timeout: self.lookupTimeout)
        let lookup = self.lookup(reply, on: connection, reports: reports)
        guard case .wait(let connection) = lookup else { return lookup }
        self.metrics.held.increment()
        return self.heldLookup(connection.requestBlocking(self.heldLookup(call), timeout: self.heldTimeout), on: connection)
    }

    /// What a lookup's reply means; tells the circuit breaker about a
    /// timeout always, and about an answer when `reports` (see `Access.use`).
    func lookup(_ reply: GatewayLink.Reply, on connection: GatewayLink, reports: Bool) -> Lookup {
        if case .failure(let error) = reply, error.code == .timeout {
            self.metrics.bypassed(.timeout)
            let opened = self.state.withLockedValue { state -> TimeAmount? in
                let wasClosed = state.breaker.isClosed
                state.breaker.timedOut(now: .now())
                // Said once when the breaker opens, not again for each probe that times out.
                guard wasClosed, case .open(let until) = state.breaker.state else { return nil }
                return until - .now()
            }
            if let opened {
                self.logger.warning("the gateway does not answer lookups; calls run uncached", metadata: ["pause_ms": "\(opened.nanoseconds / 1_000_000)"])
            }
            return .bypass
        }
        if reports {
            let closed = self.state.withLockedValue { state -> Bool in
                let wasClosed = state.breaker.isClosed
                state.breaker.answered()
                return !wasClosed && state.breaker.isClosed
            }
            if closed { self.logger.info("the gateway answers lookups again") }
        }
        let lookup = Self.lookup(reply, on: connection)
        switch lookup {
        case .hit, .refresh: self.metrics.hits.increment()
        case .miss: self.metrics.misses.increment()
        case .bypass: self.metrics.bypassed(.declined)
        case .wait: break  // counted when the held lookup is answered
        }
        return lookup
    }

    static func lookup(_ reply: GatewayLink.Reply, on connection: GatewayLink) -> Lookup {
        guard case .success(let message) = reply else { return .bypass }
        switch message.body {
        case .lookupReply(.hit(let value)): return .hit(value, connection)
        case .lookupReply(.refresh(let value)): return .refresh(value, connection)
        case .lookupReply(.miss): return .miss(connection)
        case .lookupReply(.wait): return .wait(connection)
        default: return .bypass
        }
    }

    /// Stores `value` without waiting for the reply; a value above the
    /// gateway's limit is not sent, and neither is one with a TTL of zero or
    /// less (`cache` does not look such a call up in the first place).
    func store(_ value: [UInt8], site: CallSite, key: CacheKey, ttl: Duration, computeTime: Duration, on connection: GatewayLink) {
        guard let ttlMilliseconds = Self.ttlMilliseconds(ttl) else { return }
        guard value.count <= Int(clamping: connection.hello.maxValueSize) else {
            self.metrics.storesSkipped.increment()
            return
        }
        self.metrics.stores.increment()
        let store = Store(
            function: site.function,
            key: key,
            ttlMilliseconds: ttlMilliseconds,
            computeMicroseconds: Self.microseconds(computeTime),
            value: ByteBuffer(bytes: value)
        )
        connection.send(.store(store), registering: site)
    }

    /// A TTL in a store's milliseconds: nil for zero or less (not stored),
    /// at least 1 ms (a shorter positive TTL rounds up) and at most
    /// `Store.maximumTTLMilliseconds` (a longer one is clamped). Below the
    /// maximum, whole milliseconds are kept and a fraction is dropped. It
    /// never overflows, whatever the `Duration`.
    static func ttlMilliseconds(_ ttl: Duration) -> UInt64? {
        guard ttl > .zero else { return nil }
        let maximum = Store.maximumTTLMilliseconds
        // Compared as a `Duration` first: its components are `Int64`
        // seconds, which not every `Duration` fits in.
        guard ttl < .milliseconds(maximum) else { return maximum }
        // Positive and below a year, so both components are small and not negative.
        let (seconds, attoseconds) = ttl.components
        return max(1, UInt64(seconds) * 1000 + UInt64(attoseconds / 1_000_000_000_000_000))
    }

    /// A duration in whole microseconds, zero for a negative one and
    /// `UInt64.max` for one too long to count: a store's compute time.
    static func microseconds(_ duration: Duration) -> UInt64 {
        guard duration > .zero else { return 0 }
        // Past this many seconds the microseconds would not fit in an `Int64`
        // (nor would every `Duration`'s seconds: see `ttlMilliseconds`).
        let limit = Int64.max / 1_000_000
        guard duration < .seconds(limit) else { return .max }
        let (seconds, attoseconds) = duration.components
        return UInt64(seconds) * 1_000_000 + UInt64(attoseconds / 1_000_000_000_000)
    }

    // MARK: Any request

    /// Sends `body` on the shared connection (opening it if needed) and
    /// returns the reply, which may be an error reply (`.error`).
    ///
    /// It throws `.unavailable` when there is no connection to use (the
    /// gateway is absent and the client is backing off, or another call is
    /// connecting), `.timeout` when no reply came within `timeout`, and
    /// `.connectionClosed` when the connection dropped meanwhile. Unlike
    /// lookups it registers nothing.
    func request(_ body: GatewayMessage.Body, timeout: TimeAmount, isolation: isolated (any Actor)? = #isolation) async throws(GatewayError) -> GatewayMessage {
        let connection: GatewayLink
        switch self.access(forLookup: false) {
        case .bypass:
            throw GatewayError(.unavailable, "the gateway at \(self.configuration.socketPath) is not reachable now")
        case .use(let open, _):
            connection = open
        case .connect:
            guard let open = await self.connect() else {
                throw GatewayError(.unavailable, "cannot connect to the gateway at \(self.configuration.socketPath)")
            }
            connection = open
        }
        return try await connection.request(body, timeout: timeout, mayLead: Self.mayBlock).get()
    }

    /// Where the client stands with its gateway (for tests and diagnostics).
    var connectionState: ConnectionStateMachine.State {
        self.state.withLockedValue { $0.machine.state }
    }

    /// Where the circuit breaker stands (for tests and diagnostics).
    var circuitState: CircuitBreaker.State {
        self.state.withLockedValue { $0.breaker.state }
    }

    /// The open connection, if any (for tests).
    var currentConnection: GatewayLink? {
        self.state.withLockedValue { $0.connection }
    }

    /// Closes the connection, if open.
    func close() {
        let connection = self.state.withLockedValue { state -> GatewayLink? in
            let connection = state.connection
            state.connection = nil
            return connection
        }
        connection?.close()
    }
}
