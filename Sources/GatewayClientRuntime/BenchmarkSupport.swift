import GatewayProtocol
import NIOCore

/// The client's own work on a hit, without any I/O, for the release-build
/// benchmarks (Benchmarks/GatewayBenchmarks): what a `cache(...)` hit does
/// besides the two system calls of its round trip.
@_spi(Benchmarks)
public struct HitWork {
    @usableFromInline let decoder: MessageCodec
    @usableFromInline var scratch = ByteBuffer()
    @usableFromInline let frames = FrameDecoder()
    @usableFromInline var registered: [ObjectIdentifier: CachedFunction] = [:]

    /// Creates what a connection would own.
    public init() throws {
        self.decoder = try MessageCodec()
        self.scratch.reserveCapacity(256)
    }

    /// Derives the key as `cache` does, finds the version's lookup fields and
    /// frames the lookup as the connection does, reads `replyFrame` (a lookup
    /// reply) as the reader does and decodes the hit's value; nil when it is
    /// not a hit. Inlinable like `cache`, so that it is specialized the same way.
    @inlinable
    public mutating func run<Result: Codable, each Argument: Encodable>(
        _ result: Result.Type,
        function: String,
        version: String,
        fileID: String = #fileID,
        replyFrame: ByteBuffer,
        arguments: repeat each Argument
    ) throws -> Result? {
        guard let call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: repeat each arguments) else {
            return nil
        }
        self.scratch.clear()
        if self.registered[ObjectIdentifier(call.site)] == nil {
            self.registered[ObjectIdentifier(call.site)] = call.site
        }
        LookupFrames.appendLookup(id: 1, fields: call.site.fields, key: call.key, to: &self.scratch)
        var input = replyFrame
        guard let payload = try self.frames.readPayload(from: &input) else { return nil }
        let reply = try LookupFrames.lookupReply(payload) ?? self.decoder.decode(payload: payload)
        guard case .lookupReply(.hit(let value)) = reply.body else { return nil }
        return call.value(from: value)
    }
}
