import Foundation
import GatewayConnection
import GatewayProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The process's link to its gateway: one shared connection (the original
/// idea's singleton), opened lazily on first use, multiplexing every call, and
/// reopened with backoff when it drops.
///
/// Everything here fails open: when the gateway is absent, slow or answers an
/// error, a lookup reports `.bypass` and the caller simply runs its function.
public final class CacheClient: Sendable {
    /// Settings for the client; every field has a default.
    public struct Configuration: Sendable {
        /// The gateway's socket: `CACHE_GATEWAY_SOCKET`, or `/run/cache-gateway/gateway.sock`.
        public var socketPath: String
        /// A name for the gateway's logs.
        public var clientName: String
        /// How long a lookup may take before the function runs uncached. Default: 10 ms.
        public var lookupTimeout: TimeAmount
        /// How long connecting (and saying hello) may take. Default: 100 ms.
        public var connectTimeout: TimeAmount
        /// The first wait after the gateway could not be reached; it doubles per
        /// failure up to `reconnectMaximumDelay`. Calls in between run uncached
        /// without trying to connect.
        public var reconnectInitialDelay: TimeAmount
        /// The longest wait between two connect attempts. Default: 5 s.
        public var reconnectMaximumDelay: TimeAmount

        /// The default socket path, from the environment or the standard location.
        public static var defaultSocketPath: String {
            let environment = ProcessInfo.processInfo.environment["CACHE_GATEWAY_SOCKET"] ?? ""
            return environment.isEmpty ? "/run/cache-gateway/gateway.sock" : environment
        }

        /// Creates a configuration.
        public init(
            socketPath: String = Configuration.defaultSocketPath,
            clientName: String = ProcessInfo.processInfo.processName,
            lookupTimeout: TimeAmount = .milliseconds(10),
            connectTimeout: TimeAmount = .milliseconds(100),
            reconnectInitialDelay: TimeAmount = .milliseconds(100),
            reconnectMaximumDelay: TimeAmount = .seconds(5)
        ) {
            self.socketPath = socketPath
            self.clientName = clientName
            self.lookupTimeout = lookupTimeout
            self.connectTimeout = connectTimeout
            self.reconnectInitialDelay = reconnectInitialDelay
            self.reconnectMaximumDelay = reconnectMaximumDelay
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
        var connection: GatewayConnection?
        /// Function versions registered on `connection`.
        var registered: Set<FunctionVersion> = []
    }

    /// The client's settings.
    public let configuration: Configuration
    private let state: NIOLockedValueBox<State>
    let singleFlight = SingleFlight()

    /// Creates a client; it connects on first use.
    public init(configuration: Configuration) {
        self.configuration = configuration
        self.state = NIOLockedValueBox(State(machine: ConnectionStateMachine(
            initialDelay: configuration.reconnectInitialDelay,
            maximumDelay: configuration.reconnectMaximumDelay
        )))
    }

    /// What a lookup found.
    enum Lookup {
        /// The entry's bytes, and where to store a replacement should they not decode.
        case hit(ByteBuffer, GatewayConnection, maxValueSize: Int)
        /// Compute and store through this connection, values up to `maxValueSize` bytes.
        case miss(GatewayConnection, maxValueSize: Int)
        /// Compute; do not store (the gateway said so, or it is absent, slow or failing).
        case bypass
    }

    // MARK: Connection

    /// What a call does about the connection, decided under the lock without
    /// any I/O or thread hop, so that a call with the gateway absent costs no
    /// more than a lock.
    enum Access {
        case use(GatewayConnection)
        case connect
        case bypass
    }

    func access() -> Access {
        let now = NIODeadline.now()
        return self.state.withLockedValue { state in
            switch state.machine.decide(now: now) {
            case .useConnection:
                if let connection = state.connection { return .use(connection) }
                // Connected, but the connection just went away: try again next time.
                state.machine.connectionLost()
                return .bypass
            case .connect: return .connect
            case .bypass: return .bypass
            }
        }
    }

    /// Opens the connection (the caller got `.connect` from `access()`); nil when it failed.
    func connect() -> EventLoopFuture<GatewayConnection?> {
        GatewayConnection.connectFuture(
            socketPath: self.configuration.socketPath,
            clientName: self.configuration.clientName,
            timeout: self.configuration.connectTimeout
        ).map { connection -> GatewayConnection? in
            self.state.withLockedValue { state in
                state.machine.connectSucceeded()
                state.connection = connection
                state.registered = []
            }
            connection.closeFuture.whenComplete { _ in
                self.state.withLockedValue { state in
                    guard state.connection === connection else { return }
                    state.connection = nil
                    state.registered = []
                    state.machine.connectionLost()
                }
            }
            return connection
        }.recover { _ in
            self.state.withLockedValue { $0.machine.connectFailed(now: .now()) }
            return nil
        }
    }

    /// Registers `function` on `connection` the first time it is used there.
    /// The request is not awaited: the gateway handles a connection's requests
    /// in order, so it is registered before the lookup that follows.
    private func registerIfNeeded(_ function: FunctionVersion, on connection: GatewayConnection) {
        let isNew = self.state.withLockedValue { state in
            state.connection === connection && state.registered.insert(function).inserted
        }
        if isNew {
            _ = connection.sendNext(.register(function), timeout: .seconds(5))
        }
    }

    // MARK: Lookup and store

    /// How a call's lookup starts: settled at once (no gateway to ask) or
    /// pending on the network. Kept apart so that the absent-gateway path
    /// involves no future and no thread hop.
    enum LookupStart {
        case done(Lookup)
        case pending(EventLoopFuture<Lookup>)
    }

    /// Starts the lookup of `call`, connecting first when it is this call's turn to.
    func startLookup(_ call: CachedCall) -> LookupStart {
        switch self.access() {
        case .bypass:
            return .done(.bypass)
        case .use(let connection):
            return .pending(self.lookup(call.function, key: call.key, on: connection))
        case .connect:
            return .pending(self.connect().flatMap { connection in
                guard let connection else { return MultiThreadedEventLoopGroup.singleton.any().makeSucceededFuture(.bypass) }
                return self.lookup(call.function, key: call.key, on: connection)
            })
        }
    }

    /// Looks `key` up on `connection`; never fails (see `Lookup`).
    func lookup(_ function: FunctionVersion, key: CacheKey, on connection: GatewayConnection) -> EventLoopFuture<Lookup> {
        self.registerIfNeeded(function, on: connection)
        let maxValueSize = Int(clamping: connection.hello.maxValueSize)
        return connection.sendNext(.lookup(GatewayProtocol.Lookup(function: function, key: key)), timeout: self.configuration.lookupTimeout)
            .map { reply -> Lookup in
                switch reply.body {
                case .lookupReply(.hit(let value)): .hit(value, connection, maxValueSize: maxValueSize)
                case .lookupReply(.miss): .miss(connection, maxValueSize: maxValueSize)
                default: .bypass
                }
            }
            .recover { _ in .bypass }
    }

    /// Stores `value` without waiting for the reply; a value above the
    /// gateway's limit is not sent.
    func store(_ value: [UInt8], function: FunctionVersion, key: CacheKey, ttl: Duration, computeTime: Duration, on connection: GatewayConnection, maxValueSize: Int) {
        guard value.count <= maxValueSize else { return }
        let milliseconds = max(1, ttl.components.seconds * 1000 + ttl.components.attoseconds / 1_000_000_000_000_000)
        let microseconds = max(0, computeTime.components.seconds * 1_000_000 + computeTime.components.attoseconds / 1_000_000_000_000)
        let store = Store(
            function: function,
            key: key,
            ttlMilliseconds: UInt64(min(milliseconds, Int64(Store.maximumTTLMilliseconds))),
            computeMicroseconds: UInt64(microseconds),
            value: ByteBuffer(bytes: value)
        )
        _ = connection.sendNext(.store(store), timeout: .seconds(5))
    }

    /// Where the client stands with its gateway (for tests and diagnostics).
    var connectionState: ConnectionStateMachine.State {
        self.state.withLockedValue { $0.machine.state }
    }

    /// Closes the connection, if open.
    func close() {
        let connection = self.state.withLockedValue { state -> GatewayConnection? in
            let connection = state.connection
            state.connection = nil
            return connection
        }
        if let connection { Task { await connection.close() } }
    }
}
