import GatewayVersions
import SwiftSyntax

/// The name under which a `@Cached` function's results are stored.
///
/// It is the enclosing types (from the macro's lexical context) and the
/// function's full name with its argument labels, joined by dots:
/// `InvoiceService.total(for:currency:)`, `f()`, `Outer.Inner.g(_:y:)`. A type
/// nested in an extension is named through the extended type
/// (`extension Outer { struct Inner { ... } }` gives `Outer.Inner`), and a
/// local function through the functions around it (`Service.load(id:).parse(_:)`).
/// The module is not known to a macro; the runtime prepends it, which makes
/// the function's full name (`Billing.InvoiceService.total(for:currency:)`)
/// under which the gateway lists it and `invalidate` finds it.
enum CachedName {
    /// Where the function is declared, and its name.
    struct Placement: Equatable {
        /// The enclosing types and functions, outermost first, then the function's full name.
        var components: [String]
        /// Whether the function is a member of a type (or extension): a method.
        var isMember: Bool
        /// Whether the function is declared inside a function, closure or accessor.
        var isLocal: Bool
        /// Whether the function is a member of an actor declaration (a member
        /// of an extension is not known to be one: the macro sees only the
        /// extension's syntax).
        var isActorMember: Bool = false

        /// The components joined by dots.
        var qualifiedName: String { self.components.joined(separator: ".") }
    }

    /// The placement of `function` given the lexical context the compiler reports
    /// for it (innermost first).
    static func placement(of function: FunctionDeclSyntax, in lexicalContext: [Syntax]) -> Placement {
        var contexts = lexicalContext[...]
        // Depending on the compiler, the context of a body macro may start with the
        // function itself (with its body removed); it is not an enclosing scope.
        if let first = contexts.first?.as(FunctionDeclSyntax.self),
            first.name.text == function.name.text,
            first.signature.trimmedDescription == function.signature.trimmedDescription
        {
            contexts = contexts.dropFirst()
        }

        var outerFirst: [String] = []
        var innermost: Kind?
        var innermostIsActor = false
        for context in contexts {
            guard let (kind, component) = self.describe(context) else { continue }
            if innermost == nil {
                innermost = kind
                innermostIsActor = context.is(ActorDeclSyntax.self)
            }
            if let component { outerFirst.insert(component, at: 0) }
        }
        outerFirst.append(self.fullName(of: function))
        return Placement(
            components: outerFirst,
            isMember: innermost == .type,
            isLocal: innermost == .local,
            isActorMember: innermostIsActor
        )
    }

    /// `name(label:label:)`, `_` for an unlabelled argument.
    static func fullName(of function: FunctionDeclSyntax) -> String {
        FunctionNames.fullName(of: function)
    }

    private static func fullName(_ base: String, _ labels: [String]) -> String {
        "\(base)(\(labels.map { "\($0):" }.joined()))"
    }

    private enum Kind: Equatable {
        /// A type or an extension: its functions are members.
        case type
        /// A function, initializer, accessor, closure and the like: its functions are local.
        case local
    }

    /// What a lexical context is, and what it adds to the name; `nil` for the
    /// contexts that don't matter (`try` and `await` expressions, for example).
    private static func describe(_ context: Syntax) -> (Kind, String?)? {
        if let decl = context.as(StructDeclSyntax.self) {
            return (.type, decl.name.nameText)
        } else if let decl = context.as(ClassDeclSyntax.self) {
            return (.type, decl.name.nameText)
        } else if let decl = context.as(EnumDeclSyntax.self) {
            return (.type, decl.name.nameText)
        } else if let decl = context.as(ActorDeclSyntax.self) {
            return (.type, decl.name.nameText)
        } else if let decl = context.as(ProtocolDeclSyntax.self) {
            return (.type, decl.name.nameText)
        } else if let decl = context.as(ExtensionDeclSyntax.self) {
            return (.type, decl.extendedType.tokens(viewMode: .sourceAccurate).map(\.text).joined())
        } else if let decl = context.as(FunctionDeclSyntax.self) {
            return (.local, self.fullName(of: decl))
        } else if let decl = context.as(InitializerDeclSyntax.self) {
            return (.local, self.fullName("init", decl.signature.parameterClause.parameters.map(\.firstName.nameText)))
        } else if context.is(DeinitializerDeclSyntax.self) {
            return (.local, "deinit")
        } else if context.is(SubscriptDeclSyntax.self) {
            return (.local, "subscript")
        } else if let binding = context.as(PatternBindingSyntax.self) {
            return (.local, binding.pattern.tokens(viewMode: .sourceAccurate).map(\.text).joined())
        } else if context.is(AccessorDeclSyntax.self) || context.is(ClosureExprSyntax.self) {
            return (.local, nil)
        }
        return nil
    }
}
