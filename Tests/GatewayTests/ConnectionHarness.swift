@testable import Gateway
import GatewayProtocol
import Logging
import Metrics
import NIOCore
import NIOEmbedded
import GatewayTestSupport
import Testing

/// One connection's handlers (`FrameReader` and `ConnectionHandler`) on an
/// embedded channel with a virtual clock, over an in-memory store: requests
/// are written in as frames and replies read out as messages.
struct ConnectionHarness {
    let channel: EmbeddedChannel
    let statistics: GatewayStatistics
    let store: MemoryStore

    init(access: ConnectionAccess, frameTimeout: TimeAmount = .seconds(10)) throws {
        var logger = Logger(label: "cache-gateway.tests.connection")
        logger.logLevel = .critical
        self.statistics = GatewayStatistics()
        self.store = MemoryStore(limitBytes: 1 << 20)
        let context = ServerContext(
            configuration: GatewayConfiguration(namespace: "ns", frameTimeout: frameTimeout),
            store: self.store,
            statistics: self.statistics,
            metrics: GatewayMetrics(factory: NOOPMetricsHandler.instance),
            logger: logger,
            drain: DrainSignal(),
            registry: nil,
            deniedLog: RateLimitedLog(logger: logger, interval: .seconds(10))
        )
        self.channel = EmbeddedChannel()
        let reading = ReadingState()
        try self.channel.pipeline.syncOperations.addHandler(FrameReader(maxFrameSize: FrameLimits.defaultMaxFrameSize, timeout: frameTimeout, reading: reading))
        try self.channel.pipeline.syncOperations.addHandler(try ConnectionHandler(context: context, connectionID: 1, access: access, reading: reading))
        try self.channel.connect(to: .init(unixDomainSocketPath: "/tmp/access-control-test")).wait()
    }

    func send(_ message: GatewayMessage) throws {
        try self.channel.writeInbound(try message.encodedFrame())
    }

    /// The next reply written, if any.
    func reply() throws -> GatewayMessage? {
        guard var frame = try self.channel.readOutbound(as: ByteBuffer.self) else { return nil }
        let payload = try #require(try FrameDecoder().readPayload(from: &frame))
        return try GatewayMessage(payload: payload)
    }
}
