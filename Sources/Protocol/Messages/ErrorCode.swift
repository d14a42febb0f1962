/// The stable numeric code of an error response (`docs/PROTOCOL.md`, "Error codes").
///
/// Codes are never renumbered. A peer may receive a code it does not know (a newer
/// gateway); it keeps the number and treats it like `.internal`.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The number sent on the wire.
    public let rawValue: UInt64

    /// Wraps a wire number, known or not.
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    /// 1: the payload is not one well-formed MessagePack array of the documented shape.
    public static let malformedFrame = ErrorCode(rawValue: 1)
    /// 2: the length prefix exceeds the gateway's maximum frame size. Fatal: the
    /// gateway closes the connection after sending it.
    public static let frameTooLarge = ErrorCode(rawValue: 2)
    /// 3: the message type is unknown, or is not a request.
    public static let unknownMessageType = ErrorCode(rawValue: 3)
    /// 4: a field has the wrong MessagePack type, is missing, or is out of range.
    public static let invalidField = ErrorCode(rawValue: 4)
    /// 5: the hello's protocol version is not supported. Fatal.
    public static let unsupportedVersion = ErrorCode(rawValue: 5)
    /// 6: a request other than hello arrived before the hello was answered.
    public static let helloRequired = ErrorCode(rawValue: 6)
    /// 7: a stored value exceeds the gateway's maximum value size.
    public static let valueTooLarge = ErrorCode(rawValue: 7)
    /// 8: the backend (Redis) is unavailable; nothing was done.
    public static let unavailable = ErrorCode(rawValue: 8)
    /// 9: the backend did not answer within the gateway's timeout.
    public static let timeout = ErrorCode(rawValue: 9)
    /// 10: the peer is not allowed to use this gateway. Fatal.
    public static let notAllowed = ErrorCode(rawValue: 10)
    /// 11: the gateway is shutting down and takes no new requests.
    public static let shuttingDown = ErrorCode(rawValue: 11)
    /// 12: the connection has too many requests in flight.
    public static let tooManyRequests = ErrorCode(rawValue: 12)
    /// 13: an unexpected failure inside the gateway.
    public static let `internal` = ErrorCode(rawValue: 13)

    /// The documented name, or `code N` for an unknown number.
    public var description: String {
        switch self.rawValue {
        case 1: "malformedFrame"
        case 2: "frameTooLarge"
        case 3: "unknownMessageType"
        case 4: "invalidField"
        case 5: "unsupportedVersion"
        case 6: "helloRequired"
        case 7: "valueTooLarge"
        case 8: "unavailable"
        case 9: "timeout"
        case 10: "notAllowed"
        case 11: "shuttingDown"
        case 12: "tooManyRequests"
        case 13: "internal"
        default: "code \(self.rawValue)"
        }
    }
}
