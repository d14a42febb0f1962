/// An error from the libcrypto wrapper.
///
/// Like every error in cache-gateway, it is a struct with an opaque `Code`, a
/// human-readable message, and the place in our source that raised it.
public struct DigestError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, as a stable, comparable value.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case libcryptoFailure
            case invalidKey
        }

        private let base: Base

        private init(_ base: Base) { self.base = base }

        /// libcrypto reported a failure (usually out of memory).
        public static let libcryptoFailure = Code(.libcryptoFailure)
        /// A key cannot be used (for example, an empty HMAC key).
        public static let invalidKey = Code(.invalidKey)

        /// A short name for the code.
        public var description: String {
            switch self.base {
            case .libcryptoFailure: "libcrypto failure"
            case .invalidKey: "invalid key"
            }
        }
    }

    /// The error's code; the only part that takes part in `==`.
    public let code: Code
    /// What happened, for people.
    public let message: String
    /// The file (`#fileID`) that raised the error.
    public let fileID: String
    /// The line that raised the error.
    public let line: Int

    init(code: Code, message: String, fileID: StaticString = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.fileID = "\(fileID)"
        self.line = line
    }

    public static func == (lhs: DigestError, rhs: DigestError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    /// The code, the message and where it was raised.
    public var description: String { "DigestError(\(self.code)): \(self.message) [\(self.fileID):\(self.line)]" }
}
