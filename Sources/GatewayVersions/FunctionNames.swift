import SwiftSyntax

/// How a function is named, shared by the `@Cached` macro and the versions
/// table, so that the two always agree on the name a version is found by.
package enum FunctionNames {
    /// `name(label:label:)`, `_` for an unlabelled argument; an operator's
    /// arguments are never labelled.
    package static func fullName(of function: FunctionDeclSyntax) -> String {
        let labels: [String]
        switch function.name.tokenKind {
        case .binaryOperator, .prefixOperator, .postfixOperator:
            labels = function.signature.parameterClause.parameters.map { _ in "_" }
        default:
            labels = function.signature.parameterClause.parameters.map(\.firstName.nameText)
        }
        return "\(function.name.nameText)(\(labels.map { "\($0):" }.joined()))"
    }
}
