import GatewayProtocol
import NIOCore

/// Reads one RESP2 bulk string reply (`$N` CRLF, N bytes, CRLF; or `$-1`
/// CRLF, none) from the front of a buffer, as a slice of it.
///
/// Only a reply that is complete and well formed is read; anything else is
/// left where it is for hiredis's reader, which reports malformed replies
/// (`RESPReplyDecoder`).
enum RESPBulkString {
    /// The most digits a length may have here (Redis's bulk strings are at
    /// most 512 MB); a longer one is left to the reader.
    static let maximumLengthDigits = 18

    /// The bulk string at the front of `buffer`, with `buffer` moved past it;
    /// nil (and `buffer` untouched) when the front is not a complete, well
    /// formed bulk string. Throws `GatewayError(.backendError)` for a bulk
    /// string longer than `maximumReplySize` bytes of RESP, as the reader does.
    static func read(from buffer: inout ByteBuffer, maximumReplySize: Int) throws -> RESPValue? {
        // (header length, value length), or nil: parsed in place, without copying.
        let parsed: (header: Int, length: Int)?? = buffer.withUnsafeReadableBytes { bytes in
            guard bytes.count >= 4, bytes[0] == UInt8(ascii: "$") else { return nil }
            if bytes[1] == UInt8(ascii: "-") {
                guard bytes.count >= 5, bytes[2] == UInt8(ascii: "1"), bytes[3] == 0x0D, bytes[4] == 0x0A else { return nil }
                return .some(nil)
            }
            var length = 0
            var index = 1
            while index < bytes.count, index <= Self.maximumLengthDigits, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[index]) {
                length = length * 10 + Int(bytes[index] - UInt8(ascii: "0"))
                index += 1
            }
            guard index > 1, index + 1 < bytes.count, bytes[index] == 0x0D, bytes[index + 1] == 0x0A else { return nil }
            return (index + 2, length)
        }
        switch parsed {
        case .none:
            return nil
        case .some(.none):
            buffer.moveReaderIndex(forwardBy: 5)
            return .bulkString(nil)
        case .some(.some(let (header, length))):
            guard header + length + 2 <= maximumReplySize else {
                throw GatewayError(.backendError, "a Redis reply is larger than the limit of \(maximumReplySize) bytes")
            }
            guard buffer.readableBytes >= header + length + 2,
                  buffer.getInteger(at: buffer.readerIndex + header + length, as: UInt16.self) == 0x0D0A
            else { return nil }
            buffer.moveReaderIndex(forwardBy: header)
            let value = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 2)
            return .bulkString(value)
        }
    }
}
