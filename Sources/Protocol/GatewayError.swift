/// The error type of cache-gateway's protocol, gateway and client.
///
/// Like swift-service-lifecycle's errors it is a struct with an opaque `Code`
/// (compare against the static members), a message for people, and the source
/// location (`#fileID`, `#line`) that raised it. Only the code takes part in `==`.
public struct GatewayError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable, comparable value.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        fileprivate enum Base: Hashable, Sendable {
            case frameTooLarge
            case truncatedFrame
            case malformedMessage
            case nestingTooDeep
            case invalidUTF8
            case typeMismatch
            case valueOutOfRange
            case missingValue
            case unknownMessageType
            case invalidField
            case unsupportedVersion
            case unencodable
            case valueTooLarge
            case libraryFailure
            case remote
            case unavailable
            case timeout
            case backendError
            case connectionClosed
            case notAllowed
            case shuttingDown
            case tooManyRequests
            case invalidConfiguration
        }

        fileprivate let base: Base

        private init(_ base: Base) { self.base = base }

        /// A frame's length prefix is above the configured maximum frame size.
        /// The stream cannot be resynchronised, so the connection is closed.
        public static let frameTooLarge = Code(.frameTooLarge)
        /// The stream ended in the middle of a frame.
        public static let truncatedFrame = Code(.truncatedFrame)
        /// A payload is not exactly one well-formed MessagePack value.
        public static let malformedMessage = Code(.malformedMessage)
        /// A MessagePack value nests containers deeper than `MessagePack.maximumDepth`.
        public static let nestingTooDeep = Code(.nestingTooDeep)
        /// A MessagePack string is not valid UTF-8.
        public static let invalidUTF8 = Code(.invalidUTF8)
        /// A MessagePack value has a different type than the one asked for.
        public static let typeMismatch = Code(.typeMismatch)
        /// A MessagePack number does not fit the Swift type asked for.
        public static let valueOutOfRange = Code(.valueOutOfRange)
        /// A keyed value or array element that the decoder needs is absent.
        public static let missingValue = Code(.missingValue)
        /// A message's type number is not one this side understands.
        public static let unknownMessageType = Code(.unknownMessageType)
        /// A message field has the wrong type or is out of its documented range.
        public static let invalidField = Code(.invalidField)
        /// The peer speaks a protocol version this side does not support.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A value cannot be encoded (for example, it nests too deeply or its
        /// `encode(to:)` threw).
        public static let unencodable = Code(.unencodable)
        /// A value is larger than the configured maximum value size.
        public static let valueTooLarge = Code(.valueTooLarge)
        /// A C library (msgpack-c, hiredis, libcrypto) reported a failure.
        public static let libraryFailure = Code(.libraryFailure)
        /// The gateway answered with an error response; `GatewayError.wireCode` says which.
        public static let remote = Code(.remote)
        /// The backend (Redis) or the gateway cannot be reached.
        public static let unavailable = Code(.unavailable)
        /// An operation did not finish within its timeout.
        public static let timeout = Code(.timeout)
        /// The backend answered with an error (for example a Redis error reply).
        public static let backendError = Code(.backendError)
        /// The connection closed while a request was in flight.
        public static let connectionClosed = Code(.connectionClosed)
        /// The peer is not allowed to use the gateway.
        public static let notAllowed = Code(.notAllowed)
        /// The gateway is shutting down.
        public static let shuttingDown = Code(.shuttingDown)
        /// Too many requests are in flight on one connection.
        public static let tooManyRequests = Code(.tooManyRequests)
        /// A configuration value (URL, flag, file) is invalid.
        public static let invalidConfiguration = Code(.invalidConfiguration)

        /// A short name for the code.
        public var description: String {
            switch self.base {
            case .frameTooLarge: "frame too large"
            case .truncatedFrame: "truncated frame"
            case .malformedMessage: "malformed message"
            case .nestingTooDeep: "nesting too deep"
            case .invalidUTF8: "invalid UTF-8"
            case .typeMismatch: "type mismatch"
            case .valueOutOfRange: "value out of range"
            case .missingValue: "missing value"
            case .unknownMessageType: "unknown message type"
            case .invalidField: "invalid field"
            case .unsupportedVersion: "unsupported protocol version"
            case .unencodable: "unencodable value"
            case .valueTooLarge: "value too large"
            case .libraryFailure: "C library failure"
            case .remote: "gateway error"
            case .unavailable: "unavailable"
            case .timeout: "timeout"
            case .backendError: "backend error"
            case .connectionClosed: "connection closed"
            case .notAllowed: "not allowed"
            case .shuttingDown: "shutting down"
            case .tooManyRequests: "too many requests"
            case .invalidConfiguration: "invalid configuration"
            }
        }
    }

    /// The error's code; the only part that takes part in `==` and hashing.
    public let code: Code
    /// What happened, for people.
    public let message: String
    /// For `.remote` errors, the error code the gateway sent; otherwise the code
    /// that this error is reported with on the wire.
    public let wireCode: ErrorCode
    /// The file (`#fileID`) that raised the error.
    public let fileID: String
    /// The line that raised the error.
    public let line: Int

    /// Creates an error; the source location defaults to the caller's.
    public init(
        _ code: Code,
        _ message: String,
        wireCode: ErrorCode? = nil,
        fileID: StaticString = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.message = message
        self.wireCode = wireCode ?? code.defaultWireCode
        self.fileID = "\(fileID)"
        self.line = line
    }

    public static func == (lhs: GatewayError, rhs: GatewayError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    /// The code, the message and where it was raised.
    public var description: String {
        "GatewayError(\(self.code)): \(self.message) [\(self.fileID):\(self.line)]"
    }
}

extension GatewayError.Code {
    /// The stable wire code used when this error is reported to a peer.
    var defaultWireCode: ErrorCode {
        switch self.base {
        case .frameTooLarge: .frameTooLarge
        case .truncatedFrame, .malformedMessage, .nestingTooDeep: .malformedFrame
        case .unknownMessageType: .unknownMessageType
        case .invalidUTF8, .typeMismatch, .valueOutOfRange, .missingValue, .invalidField, .unencodable:
            .invalidField
        case .unsupportedVersion: .unsupportedVersion
        case .valueTooLarge: .valueTooLarge
        case .unavailable, .backendError, .connectionClosed: .unavailable
        case .timeout: .timeout
        case .notAllowed: .notAllowed
        case .shuttingDown: .shuttingDown
        case .tooManyRequests: .tooManyRequests
        case .libraryFailure, .remote, .invalidConfiguration: .internal
        }
    }
}
