import GatewayProtocol
import NIOCore

/// One reply from Redis, in the RESP2 data model.
///
/// RESP2 has two distinct "null" replies: the null bulk string (`$-1`, what
/// `GET` answers for a missing key) and the null array (`*-1`, for example an
/// `EXEC` aborted by `WATCH` or a `BLPOP` that timed out). They are kept apart
/// as `.bulkString(nil)` and `.array(nil)`.
///
/// A Redis error reply (`-ERR ...`) is a value, `.error`, not a thrown error:
/// in a pipeline each command has its own outcome, and a connection that
/// answered with an error is still healthy. Call `checked()` to turn an error
/// reply into a thrown `GatewayError(.backendError)`.
public enum RESPValue: Sendable, Hashable {
    /// A simple string (`+OK`, `+PONG`, `+QUEUED`). Invalid UTF-8 is repaired
    /// with U+FFFD; Redis only sends ASCII here.
    case simpleString(String)
    /// An error reply (`-ERR ...`, `-WRONGTYPE ...`), without the leading `-`.
    case error(String)
    /// An integer reply (`:42`).
    case integer(Int64)
    /// A bulk string (`$3\r\nfoo`), binary safe; `nil` for the null bulk string (`$-1`).
    case bulkString(ByteBuffer?)
    /// An array (`*2 ...`); `nil` for the null array (`*-1`).
    case array([RESPValue]?)
}

extension RESPValue {
    /// Whether the value is either null reply (`$-1` or `*-1`).
    public var isNull: Bool {
        switch self {
        case .bulkString(nil), .array(nil): true
        default: false
        }
    }

    /// The bytes of a bulk string, or nil for any other value (including the null bulk string).
    public var bytes: ByteBuffer? {
        if case .bulkString(let buffer?) = self { return buffer }
        return nil
    }

    /// The text of a simple string, or a bulk string decoded as UTF-8 (invalid
    /// sequences repaired); nil for other values.
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let buffer?): String(buffer: buffer)
        default: nil
        }
    }

    /// The integer of an integer reply; nil for other values.
    public var integer: Int64? {
        if case .integer(let value) = self { return value }
        return nil
    }

    /// The elements of a non-null array; nil for other values.
    public var array: [RESPValue]? {
        if case .array(let elements?) = self { return elements }
        return nil
    }

    /// The value itself, or a thrown `GatewayError(.backendError)` carrying
    /// Redis's message when it is an error reply.
    public func checked(fileID: StaticString = #fileID, line: Int = #line) throws -> RESPValue {
        if case .error(let message) = self {
            throw GatewayError(.backendError, "Redis answered with an error: \(message)", fileID: fileID, line: line)
        }
        return self
    }
}

extension RESPValue: CustomStringConvertible {
    /// A short rendering for logs and test failures; bulk strings longer than
    /// 64 bytes are shown by length only, so that values do not flood logs.
    public var description: String {
        switch self {
        case .simpleString(let text): "+\(text)"
        case .error(let message): "-\(message)"
        case .integer(let value): ":\(value)"
        case .bulkString(nil): "$nil"
        case .bulkString(let buffer?):
            buffer.readableBytes <= 64
                ? "$\(String(reflecting: String(decoding: buffer.readableBytesView, as: UTF8.self)))"
                : "$<\(buffer.readableBytes) bytes>"
        case .array(nil): "*nil"
        case .array(let elements?): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
