/// A Swift source file of the module whose versions are computed.
public struct SourceFile: Sendable {
    /// Where it is, as shown in explanations; not part of any version.
    public var path: String
    /// Its text.
    public var text: String

    /// A source file at `path` with `text`.
    public init(path: String, text: String) {
        self.path = path
        self.text = text
    }
}
