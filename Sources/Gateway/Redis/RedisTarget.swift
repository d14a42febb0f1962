import GatewayProtocol
import NIOCore

/// Where the Redis store's commands go: one server's pool, or a cluster's
/// router. Every call names the key that routes it (any key of the command,
/// or of the pipeline: a pipeline's keys share one slot); a single server
/// ignores it.
///
/// An enum rather than a protocol, so that the single server's path is a
/// direct call with no existential box and no slot computed.
enum RedisTarget: Sendable {
    /// One Redis server.
    case single(RedisConnectionPool)
    /// A Redis Cluster.
    case cluster(RedisClusterRouter)

    func sendFuture(_ command: RedisCommand, routedBy key: ByteBuffer, timeout: TimeAmount, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<RESPValue> {
        switch self {
        case .single(let pool): pool.sendFuture(command, timeout: timeout, preferring: eventLoop)
        case .cluster(let router): router.sendFuture(command, slot: ClusterSlot(key: key), timeout: timeout, preferring: eventLoop)
        }
    }

    /// Sends `command` and calls `answer` with its reply on `eventLoop`, with
    /// no future (`RedisConnectionPool.send(_:timeout:on:then:)`; on a
    /// cluster, the router's, which follows redirections through its futures).
    func send(_ command: RedisCommand, routedBy key: ByteBuffer, timeout: TimeAmount, on eventLoop: any EventLoop, then answer: @escaping @Sendable (Result<RESPValue, any Error>) -> Void) {
        switch self {
        case .single(let pool):
            pool.send(command, timeout: timeout, on: eventLoop, then: answer)
        case .cluster(let router):
            router.send(command, slot: ClusterSlot(key: key), timeout: timeout, on: eventLoop, then: answer)
        }
    }

    func pipelineFuture(_ commands: [RedisCommand], routedBy key: ByteBuffer, timeout: TimeAmount, preferring eventLoop: (any EventLoop)? = nil) -> EventLoopFuture<[RESPValue]> {
        switch self {
        case .single(let pool): pool.pipelineFuture(commands, timeout: timeout, preferring: eventLoop)
        case .cluster(let router): router.pipelineFuture(commands, slot: ClusterSlot(key: key), timeout: timeout, preferring: eventLoop)
        }
    }

    func send(_ command: RedisCommand, routedBy key: ByteBuffer, timeout: TimeAmount) async throws -> RESPValue {
        switch self {
        case .single(let pool): try await pool.send(command, timeout: timeout)
        case .cluster(let router): try await router.send(command, slot: ClusterSlot(key: key), timeout: timeout)
        }
    }

    func pipeline(_ commands: [RedisCommand], routedBy key: ByteBuffer, timeout: TimeAmount) async throws -> [RESPValue] {
        switch self {
        case .single(let pool): try await pool.pipeline(commands, timeout: timeout)
        case .cluster(let router): try await router.pipeline(commands, slot: ClusterSlot(key: key), timeout: timeout)
        }
    }

    /// The connections up (over every master of a cluster).
    var availableConnectionCount: Int {
        switch self {
        case .single(let pool): pool.availableConnectionCount
        case .cluster(let router): router.availableConnectionCount
        }
    }

    func start() {
        switch self {
        case .single(let pool): pool.start()
        case .cluster(let router): router.start()
        }
    }

    func waitForFirstConnectAttempts() async {
        switch self {
        case .single(let pool): await pool.waitForFirstConnectAttempts()
        case .cluster(let router): await router.waitForFirstConnectAttempts()
        }
    }

    func shutdown() async {
        switch self {
        case .single(let pool): await pool.shutdown()
        case .cluster(let router): await router.shutdown()
        }
    }
}
