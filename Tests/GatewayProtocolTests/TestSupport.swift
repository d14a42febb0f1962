@_exported import CanonicalFixture
import GatewayProtocol
import NIOCore
import Testing

/// Runs `body`, expects it to throw a `GatewayError`, and checks the error's code.
@discardableResult
func expectGatewayError<R>(
    _ code: GatewayError.Code,
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () throws -> R
) -> GatewayError? {
    let error = #expect(throws: GatewayError.self, sourceLocation: sourceLocation) {
        _ = try body()
    }
    if let error {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
    }
    return error
}

/// A `ByteBuffer` holding exactly `bytes`.
func buffer(_ bytes: [UInt8]) -> ByteBuffer {
    ByteBuffer(bytes: bytes)
}

/// `bytes` behind a 4-byte big-endian length prefix, assembled by hand.
func frame(_ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(payload.count)
    return [UInt8(length >> 24), UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length)]
        + payload
}

/// Decodes one message from its payload bytes.
func message(payload: [UInt8]) throws -> GatewayMessage {
    try GatewayMessage(payload: buffer(payload))
}

/// A value that nests `depth` one-element arrays around a nil: `[[[…[nil]…]]]`.
///
/// Its MessagePack form is `0x91` repeated `depth` times, then `0xc0`.
indirect enum Nest: Codable, Equatable, Sendable {
    case leaf
    case wrap(Nest)

    init(depth: Int) {
        var value = Nest.leaf
        for _ in 0..<depth { value = .wrap(value) }
        self = value
    }

    var depth: Int {
        var count = 0
        var value = self
        while case .wrap(let inner) = value {
            count += 1
            value = inner
        }
        return count
    }

    init(from decoder: any Decoder) throws {
        if try decoder.singleValueContainer().decodeNil() {
            self = .leaf
            return
        }
        var container = try decoder.unkeyedContainer()
        self = .wrap(try container.decode(Nest.self))
    }

    func encode(to encoder: any Encoder) throws {
        switch self {
        case .leaf:
            var container = encoder.singleValueContainer()
            try container.encodeNil()
        case .wrap(let inner):
            var container = encoder.unkeyedContainer()
            try container.encode(inner)
        }
    }
}

/// A value that nests `depth` one-element arrays around an empty array: `[[…[[]]…]]`.
///
/// Its MessagePack form is `0x91` repeated `depth` times, then `0x90`.
indirect enum NestAroundEmpty: Codable, Equatable, Sendable {
    case empty
    case wrap(NestAroundEmpty)

    init(depth: Int) {
        var value = NestAroundEmpty.empty
        for _ in 0..<depth { value = .wrap(value) }
        self = value
    }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        if container.isAtEnd {
            self = .empty
        } else {
            self = .wrap(try container.decode(NestAroundEmpty.self))
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        if case .wrap(let inner) = self { try container.encode(inner) }
    }
}
