/// An error of the versions computation, with where it was raised.
public struct VersionsError: Error, CustomStringConvertible {
    /// What kind of error it is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }

        /// A file summary that cannot be used: from a damaged cache, for example.
        public static let invalidSummary = Code("invalid summary")

        /// The code's name.
        public var description: String { self.name }
    }

    /// What kind of error it is.
    public let code: Code
    /// What went wrong, in words.
    public let message: String
    /// The source file that raised it.
    public let fileID: String
    /// The line that raised it.
    public let line: Int

    /// An error of kind `code`, raised here.
    public init(_ code: Code, _ message: String, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.message = message
        self.fileID = fileID
        self.line = line
    }

    /// `code: message (file:line)`.
    public var description: String { "\(self.code): \(self.message) (\(self.fileID):\(self.line))" }
}
