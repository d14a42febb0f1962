import SwiftSyntax

/// Moves a function body's statements into the closure the expansion passes to
/// the runtime, keeping their relative indentation.
enum BodyText {
    /// The statements of `body` as lines, with their common indentation removed
    /// and without leading or trailing blank lines.
    ///
    /// Indentation is removed and later added uniformly to every line, which
    /// keeps the content of multi-line string literals intact: their lines keep
    /// the same indentation relative to the closing delimiter. A line that holds
    /// only whitespace is shortened the same way, or emptied when it is shorter
    /// than the common indentation (inside a multi-line string literal such a
    /// line is empty either way).
    static func lines(of body: CodeBlockSyntax) -> [String] {
        var statements = body.statements
        guard !statements.isEmpty else { return [] }

        // Drop the line break and indentation before the first statement, but keep
        // any comment there, and drop whitespace after the last statement.
        let leading = Array(statements.leadingTrivia.pieces)
        let firstContent = leading.firstIndex(where: { !$0.isWhitespace }) ?? leading.endIndex
        let startsOnOwnLine: Bool
        if let lastBreak = leading[..<firstContent].lastIndex(where: \.isNewline) {
            startsOnOwnLine = true
            statements.leadingTrivia = Trivia(pieces: leading[(lastBreak + 1)...])
        } else {
            startsOnOwnLine = false
            statements.leadingTrivia = Trivia(pieces: leading[firstContent...])
        }
        var trailing = Array(statements.trailingTrivia.pieces)
        while let last = trailing.last, last.isWhitespace { trailing.removeLast() }
        statements.trailingTrivia = Trivia(pieces: trailing)

        var lines = statements.description
            .split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
            .map(String.init)
        // When the first statement follows the `{` on the same line, its
        // indentation says nothing about the others': leave it out.
        let firstIndented = startsOnOwnLine ? 0 : 1
        guard firstIndented < lines.count else { return lines }

        let indentations = lines[firstIndented...]
            .filter { !self.isBlank($0) }
            .map { $0.prefix(while: { $0 == " " || $0 == "\t" }) }
        var common = indentations.first.map(String.init) ?? ""
        for indentation in indentations.dropFirst() {
            common = String(zip(common, indentation).prefix(while: { $0.0 == $0.1 }).map(\.0))
        }
        for index in lines.indices.dropFirst(firstIndented) {
            if lines[index].hasPrefix(common) {
                lines[index].removeFirst(common.count)
            } else {
                // Only a blank line can lack the common indentation.
                lines[index] = ""
            }
        }
        return lines
    }

    /// `lines`, each non-empty one indented by `indentation`, joined by line breaks.
    static func indented(_ lines: [String], by indentation: String) -> String {
        lines.map { $0.isEmpty ? $0 : indentation + $0 }.joined(separator: "\n")
    }

    private static func isBlank(_ line: String) -> Bool {
        line.allSatisfy { $0 == " " || $0 == "\t" }
    }
}
