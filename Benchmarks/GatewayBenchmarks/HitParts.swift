import GatewayClientRuntime
import GatewayProtocol
import NIOCore

/// The client's own work on a hit, without any I/O: what a `cache(...)` hit
/// does besides the two system calls of its round trip. It uses the runtime's
/// `package` declarations, so that it runs exactly the runtime's code.
struct HitWork {
    let decoder: MessageCodec
    var scratch = ByteBuffer()
    let frames = FrameDecoder()
    var registered: [ObjectIdentifier: CallSite] = [:]

    /// Creates what a connection would own.
    init() throws {
        self.decoder = try MessageCodec()
        self.scratch.reserveCapacity(256)
    }

    /// Derives the key as `cache` does, finds the version's lookup fields and
    /// frames the lookup as the connection does, reads `replyFrame` (a lookup
    /// reply) as the reader does and decodes the hit's value; nil when it is
    /// not a hit. Generic like `cache`, so that it is specialized the same way.
    mutating func run<Result: Codable, each Argument: Encodable>(
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

/// A `cacheSync` hit taken apart: the same lookup through the shared client
/// and its connection, with the key derived once beforehand (`lookup`), or
/// with the key derived each time but the value not decoded
/// (`lookupDerivingKey`). Beside the whole hit, they show what the
/// connection, the key and the decoding each add to a round trip.
struct HitParts<Result: Codable> {
    let call: CachedCall
    let function: String
    let version: String

    /// Prepares the lookups of `function`'s entry for `argument`.
    init(function: String, version: String, fileID: String = #fileID, result: Result.Type, argument: Int) {
        self.call = CachedCall(function: function, version: version, fileID: fileID, result: Result.self, arguments: argument)!
        self.function = function
        self.version = version
    }

    /// The lookup alone; true on a hit.
    func lookup() -> Bool {
        if case .hit = CacheClient.shared.lookupBlocking(self.call) { return true }
        return false
    }

    /// The key derived, then the lookup; true on a hit. `CachedCall.init` is
    /// inlinable, so the key is derived by code specialized the same way as in `cache`.
    func lookupDerivingKey(_ argument: Int, fileID: String = #fileID) -> Bool {
        guard let call = CachedCall(function: self.function, version: self.version, fileID: fileID, result: Result.self, arguments: argument) else { return false }
        if case .hit = CacheClient.shared.lookupBlocking(call) { return true }
        return false
    }
}
