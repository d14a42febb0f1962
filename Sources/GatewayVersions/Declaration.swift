import SwiftSyntax

/// One declaration of a module that a cached function's version can depend on.
///
/// Types and extensions are split in two: a *header* (attributes, modifiers,
/// name, generic parameters, conformances, `where` clause: everything but the
/// members) and their members, each a declaration of its own. A member brings
/// in the headers around it (an extension's constraints decide what its
/// members mean); a type, when a name refers to it, brings in its header, all
/// its members and nested types, and every extension of its name.
struct Declaration {
    enum Kind: String, Codable, Sendable {
        /// A function, initializer, deinitializer, subscript, variable, enum
        /// case, type alias, associated type, operator, precedence group or macro.
        case member
        /// The header of a struct, class, enum, actor or protocol.
        case type
        /// The header of an extension.
        case `extension`
    }

    let kind: Kind
    /// The names under which references find it (`helper`, `init`, `+`,
    /// `subscript`); for a type or extension, the name of the type (an
    /// extension's last component: `extension Outer.Inner` is found as `Inner`).
    let names: [String]
    /// How it is shown in explanations: `func helper(_:)`, `struct Quote`.
    let display: String
    /// The index of the source file.
    let file: Int
    /// Where it starts, for explanations.
    let position: AbsolutePosition
    /// The declaration's syntax node.
    let node: Syntax
    /// The enclosing type or extension header, if any.
    let parent: Int?
    /// The text of the `#if` conditions around it, outermost first.
    let conditions: [String]
    /// Whether it is a requirement of a protocol: its witnesses, found by its
    /// names, are part of anything that depends on it.
    let isRequirement: Bool
    /// For a type or extension header: the declarations directly inside it.
    var contents: [Int] = []
}
