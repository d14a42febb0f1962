import NIOCore

/// Limits on frames, shared by both ends of a connection.
public enum FrameLimits {
    /// The default largest payload a frame may carry: 8 MiB.
    ///
    /// It leaves room for the default largest value (4 MiB) plus the fields
    /// around it; the gateway's hello reply tells clients the configured figures.
    public static let defaultMaxFrameSize = 8 * 1024 * 1024
    /// The length prefix: 4 bytes, big-endian, unsigned.
    public static let prefixLength = 4
}

/// Splits a byte stream into frame payloads: a 4-byte big-endian length, then
/// that many bytes.
///
/// The length is checked against `maxFrameSize` as soon as its 4 bytes arrive,
/// before anything is buffered for the payload, so a peer cannot make the
/// reader allocate more than `maxFrameSize` plus what it has actually sent. A
/// length above the limit throws `.frameTooLarge`; the stream cannot be
/// resynchronised after that, so the connection must be closed. Bytes left at
/// the end of the stream throw `.truncatedFrame`.
public struct FrameDecoder: ByteToMessageDecoder, Sendable {
    /// A frame's payload (a slice of the inbound bytes).
    public typealias InboundOut = ByteBuffer

    /// The largest payload accepted, in bytes.
    public let maxFrameSize: Int

    /// Creates a decoder that accepts payloads up to `maxFrameSize` bytes.
    public init(maxFrameSize: Int = FrameLimits.defaultMaxFrameSize) {
        precondition(maxFrameSize > 0 && maxFrameSize <= Int(UInt32.max), "maxFrameSize must fit the 4-byte length prefix")
        self.maxFrameSize = maxFrameSize
    }

    /// Reads one payload from `buffer`, or returns nil when more bytes are needed.
    public func readPayload(from buffer: inout ByteBuffer) throws -> ByteBuffer? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard length <= self.maxFrameSize else {
            throw GatewayError(
                .frameTooLarge,
                "the frame's length prefix says \(length) bytes; the limit is \(self.maxFrameSize)"
            )
        }
        guard buffer.readableBytes >= FrameLimits.prefixLength + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: FrameLimits.prefixLength)
        return buffer.readSlice(length: Int(length))
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let payload = try self.readPayload(from: &buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(payload))
        return .continue
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try self.decode(context: context, buffer: &buffer) == .continue {}
        if seenEOF && buffer.readableBytes > 0 {
            let missing = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self).map {
                " of \(Int($0) + FrameLimits.prefixLength)"
            } ?? ""
            let have = buffer.readableBytes
            buffer.moveReaderIndex(to: buffer.writerIndex)
            throw GatewayError(.truncatedFrame, "the stream ended after \(have)\(missing) bytes of a frame")
        }
        return .needMoreData
    }
}

/// Turns each outbound `GatewayMessage` into one frame.
public struct FrameEncoder: MessageToByteEncoder, Sendable {
    /// The message to frame.
    public typealias OutboundIn = GatewayMessage

    /// Creates an encoder.
    public init() {}

    public func encode(data: GatewayMessage, out: inout ByteBuffer) throws {
        try data.encodeFrame(into: &out)
    }
}
