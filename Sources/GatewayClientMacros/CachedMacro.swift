import SwiftDiagnostics
import SwiftParser
import SwiftSyntax
import SwiftSyntaxBuilder
import SwiftSyntaxMacros

/// `@Cached(ttl:)`: replaces a function's body with a call to the
/// `GatewayClient` runtime that looks the result up in the cache and runs the
/// original body only on a miss.
///
/// For
///
/// ```swift
/// struct InvoiceService {
///     @Cached(ttl: .seconds(300))
///     func total(for customer: CustomerID, currency: Currency) async throws -> Money { BODY }
/// }
/// ```
///
/// the new body is
///
/// ```swift
/// {
///     try await GatewayClient.cache(ttl: .seconds(300), function: "InvoiceService.total(for:currency:)", version: __cacheGatewayVersion(0x<16 hex digits>, "<64 hex digits>"), arguments: self, customer, currency) { () throws in
///         BODY
///     }
/// }
/// ```
///
/// - `try` only if the function throws, `await` only if it is async; a
///   synchronous function calls `GatewayClient.cacheSync` instead.
/// - With `refresh: .early` the call passes `refresh: .early` and so takes
///   the runtime's form whose body is `@escaping @Sendable` (it runs again in
///   the background); `refresh: .never` is the plain form. Anything but these
///   literals is an error: the form is chosen at compile time.
/// - The closure of a throwing function is declared `() throws in` (or
///   `() throws(E) in`): the runtime throws what the closure throws
///   (`throws(Failure)`), so the call keeps a typed error's type, and a closure
///   inferred as non-throwing (a body that happens not to throw) would make
///   the `try` a warning in the user's code. A non-throwing function's closure
///   has no signature; `async` is inferred from the body either way.
/// - `function:` is the enclosing types and the function's full name
///   (``CachedName``), or the `name:` literal. The module is not part of it:
///   the runtime prepends it from `#fileID`.
/// - `version:` is the `version:` literal, or else a call that finds the
///   function's version in the module's table when the `CacheVersions` plugin
///   made one and is the function's own hash otherwise (``CachedVersion``).
/// - `arguments:` lists the parameters by their internal names, in order. An
///   instance method puts `self` first (so `Self` must be `Encodable`), or
///   `self[keyPath: K]` with `key: K`. A function without parameters (and not
///   an instance method) passes no `arguments:` at all.
///
/// Declarations that cannot be cached are reported as errors at the attribute
/// (see ``CachedDiagnostic``), all of them at once, by throwing them: the
/// expansion then fails and the body stays as it was, so that the errors are
/// not buried under follow-up ones.
public struct CachedMacro: BodyMacro {
    /// The expansion is formatted here, line by line: the body's own formatting
    /// must come through unchanged (multi-line string literals depend on it).
    public static var formatMode: FormatMode { .disabled }

    public static func expansion(
        of node: AttributeSyntax,
        providingBodyFor declaration: some DeclSyntaxProtocol & WithOptionalCodeBlockSyntax,
        in context: some MacroExpansionContext
    ) throws -> [CodeBlockItemSyntax] {
        guard let function = declaration.as(FunctionDeclSyntax.self) else {
            let message: CachedDiagnostic
            if declaration.is(InitializerDeclSyntax.self) {
                message = .initializer
            } else if declaration.is(DeinitializerDeclSyntax.self) {
                message = .notAFunction("a deinitializer")
            } else if declaration.is(AccessorDeclSyntax.self) {
                message = .notAFunction("an accessor")
            } else {
                message = .notAFunction("this declaration")
            }
            let attributes = Syntax(declaration).asProtocol(WithAttributesSyntax.self)?.attributes
            throw DiagnosticsError(diagnostics: [
                self.diagnostic(message, at: node, fixIt: self.removeAttribute(node, in: attributes))
            ])
        }
        var expander = Expander(attribute: node, function: function, context: context)
        return try expander.expand()
    }

    /// Closures (behind an experimental compiler feature) are not functions that can be cached.
    public static func expansion(
        of node: AttributeSyntax,
        providingBodyFor closure: ClosureExprSyntax,
        in context: some MacroExpansionContext
    ) throws -> [CodeBlockItemSyntax] {
        throw DiagnosticsError(diagnostics: [
            self.diagnostic(.notAFunction("a closure"), at: node, fixIt: self.removeAttribute(node, in: nil))
        ])
    }

    // MARK: Helpers shared with the expander

    /// A diagnostic at the attribute, highlighting the part of the declaration it is about.
    static func diagnostic(
        _ message: CachedDiagnostic,
        at attribute: AttributeSyntax,
        highlighting highlight: Syntax? = nil,
        fixIt: FixIt? = nil
    ) -> Diagnostic {
        Diagnostic(
            node: attribute,
            message: message,
            highlights: highlight.map { [$0] },
            fixIts: fixIt.map { [$0] } ?? []
        )
    }

    /// A fix-it that deletes the attribute: with its line when it is on a line
    /// of its own, leaving the indentation when the declaration follows on the
    /// same line.
    static func removeAttribute(_ attribute: AttributeSyntax, in attributes: AttributeListSyntax?) -> FixIt {
        // The compiler hands the macro detached copies of the attribute and of the
        // declaration; only the declaration's copy knows what follows the attribute.
        let texts = attribute.tokens(viewMode: .sourceAccurate).map(\.text)
        let inDeclaration = attributes?.lazy.compactMap { element -> AttributeSyntax? in
            guard case .attribute(let candidate) = element else { return nil }
            return candidate.tokens(viewMode: .sourceAccurate).map(\.text) == texts ? candidate : nil
        }.first
        let old = inDeclaration ?? attribute
        let next = old.nextToken(viewMode: .sourceAccurate)
        if let next, !next.leadingTrivia.contains(where: \.isNewline) {
            let indentation = TokenSyntax(.identifier(""), leadingTrivia: old.leadingTrivia, presence: .present)
            return FixIt.replace(message: CachedFixIt.removeAttribute, oldNode: old, newNode: indentation)
        }
        return FixIt.replace(message: CachedFixIt.removeAttribute, oldNode: old, newNode: AttributeListSyntax([]))
    }

    /// The indentation of the new body's statements inside its braces.
    ///
    /// swift-syntax wraps a body macro's statements in braces, and up to 601
    /// indents them even when formatting is disabled; from 602 on it leaves
    /// them as they are, so the macro indents them itself.
    static var indentation: String {
        #if canImport(SwiftSyntax602)
        "    "
        #else
        ""
        #endif
    }
}

/// The work of one expansion: checks the declaration and builds the new body.
private struct Expander<Context: MacroExpansionContext> {
    let attribute: AttributeSyntax
    let function: FunctionDeclSyntax
    let context: Context

    /// What the checks found, in order; thrown when it contains an error.
    private var diagnostics: [Diagnostic] = []

    init(attribute: AttributeSyntax, function: FunctionDeclSyntax, context: Context) {
        self.attribute = attribute
        self.function = function
        self.context = context
    }

    /// The arguments of the attribute.
    private struct Options {
        var ttl: ExprSyntax?
        var key: LabeledExprSyntax?
        var version: StringLiteralExprSyntax?
        var name: StringLiteralExprSyntax?
        /// `refresh: .early`.
        var refreshEarly = false
    }

    mutating func expand() throws -> [CodeBlockItemSyntax] {
        let options = self.options()

        guard let body = self.function.body else {
            self.report(.noBody)
            throw DiagnosticsError(diagnostics: self.diagnostics)
        }
        guard let ttl = options.ttl else {
            throw CachedMacroError(description: "@Cached needs a 'ttl:' argument")
        }

        if ttl.durationLiteralSign.map({ $0 <= 0 }) ?? false {
            self.report(
                .nonPositiveTTL(ttl.trimmedDescription),
                highlighting: ttl,
                fixIt: CachedMacro.removeAttribute(self.attribute, in: self.function.attributes)
            )
        }
        let arguments = self.parameterNames()
        self.checkResult()
        let placement = CachedName.placement(of: self.function, in: self.context.lexicalContext)
        let isInstanceMethod = placement.isMember && !self.function.isStatic
        if let key = options.key, !isInstanceMethod {
            self.report(.keyOnNonInstanceMethod, highlighting: key, fixIt: self.removeArgument(key))
        }
        if let key = options.key, isInstanceMethod {
            self.checkKeyPathRoot(key.expression)
        }
        if isInstanceMethod, placement.isActorMember, options.key == nil {
            // `self` would be passed as an argument, which must be Encodable:
            // without this, the compiler's error is about a generic
            // constraint inside the expansion.
            self.report(.actorNeedsKey("\\Self.id"))
        }
        if isInstanceMethod, self.function.modifiers.contains(where: { $0.name.tokenKind == .keyword(.mutating) }) {
            self.report(.mutatingMethod)
        }
        if placement.isLocal {
            self.report(.localFunction)
        }
        if options.refreshEarly, placement.isActorMember, !self.function.isStatic {
            self.report(.refreshOnActor)
        }

        if self.diagnostics.contains(where: { $0.diagMessage.severity == .error }) {
            throw DiagnosticsError(diagnostics: self.diagnostics)
        }
        for warning in self.diagnostics {
            self.context.diagnose(warning)
        }

        let name = options.name.map(\.trimmedDescription)
            ?? StringLiteralExprSyntax(content: placement.qualifiedName).description
        let version = try options.version.map(\.trimmedDescription)
            ?? CachedVersion.expression(of: self.function, excluding: self.attribute)

        var passed: [String] = []
        if isInstanceMethod {
            if let key = options.key {
                passed.append("self[keyPath: \(key.expression.trimmedDescription)]")
            } else {
                passed.append("self")
            }
        }
        passed += arguments

        let effects = self.function.signature.effectSpecifiers
        let isAsync = effects?.asyncSpecifier != nil
        var call = ""
        var closure = "{"
        if let throwsClause = effects?.throwsClause {
            call += "try "
            // The closure is declared throwing like the function: the runtime throws
            // the closure's error type, so `throws(E)` stays typed, and a body that
            // happens not to throw would otherwise make the call non-throwing and
            // its `try` a warning. (A body that awaits is inferred `async` all the same.)
            var effect = throwsClause.trimmed
            if effect.throwsSpecifier.tokenKind == .keyword(.rethrows) {
                effect.throwsSpecifier = .keyword(.throws)
            }
            closure += " () \(effect.trimmedDescription) in"
        }
        call += isAsync ? "await GatewayClient.cache(" : "GatewayClient.cacheSync("
        call += "ttl: \(ttl.trimmedDescription), "
        if options.refreshEarly { call += "refresh: .early, " }
        call += "function: \(name), version: \(version)"
        if !passed.isEmpty {
            call += ", arguments: " + passed.joined(separator: ", ")
        }
        call += ") \(closure)"

        var lines = [call]
        lines += BodyText.lines(of: body).map { $0.isEmpty ? $0 : "    " + $0 }
        lines.append("}")
        return [CodeBlockItemSyntax("\(raw: BodyText.indented(lines, by: CachedMacro.indentation))")]
    }

    // MARK: Attribute arguments

    private mutating func options() -> Options {
        var options = Options()
        guard case .argumentList(let arguments) = self.attribute.arguments else { return options }
        for argument in arguments {
            switch argument.label?.text {
            case "ttl":
                options.ttl = argument.expression
            case "key":
                options.key = argument
            case "version":
                options.version = self.stringLiteral(argument)
            case "name":
                options.name = self.stringLiteral(argument)
            case "refresh":
                options.refreshEarly = self.refreshChoice(argument) ?? false
            default:
                break
            }
        }
        return options
    }

    /// The argument as a plain string literal; `nil` for a `nil` literal, or after
    /// reporting an error for anything else.
    private mutating func stringLiteral(_ argument: LabeledExprSyntax) -> StringLiteralExprSyntax? {
        let label = argument.label?.text ?? ""
        if argument.expression.is(NilLiteralExprSyntax.self) {
            return nil
        }
        guard let literal = argument.expression.as(StringLiteralExprSyntax.self),
            literal.segments.allSatisfy({ $0.is(StringSegmentSyntax.self) })
        else {
            self.report(.notAStringLiteral(label), highlighting: argument.expression)
            return nil
        }
        let isEmpty = literal.segments.allSatisfy { $0.as(StringSegmentSyntax.self)?.content.text.isEmpty ?? false }
        if isEmpty {
            self.report(.emptyString(label), highlighting: argument.expression)
            return nil
        }
        return literal
    }

    /// Whether `refresh:` is `.early` (true) or `.never` (false), written as
    /// `.early`, `CacheRefresh.early` or `GatewayClient.CacheRefresh.early`
    /// (or `never`); nil after reporting anything else, which the macro
    /// cannot read.
    private mutating func refreshChoice(_ argument: LabeledExprSyntax) -> Bool? {
        if let member = argument.expression.as(MemberAccessExprSyntax.self), member.declName.argumentNames == nil,
            ["early", "never"].contains(member.declName.baseName.text),
            member.base.map({ ["CacheRefresh", "GatewayClient.CacheRefresh"].contains($0.trimmedDescription) }) ?? true
        {
            return member.declName.baseName.text == "early"
        }
        self.report(.refreshNotALiteral(argument.expression.trimmedDescription), highlighting: argument.expression)
        return nil
    }

    /// A fix-it that deletes `argument` from the attribute.
    private func removeArgument(_ argument: LabeledExprSyntax) -> FixIt? {
        guard case .argumentList(let list) = self.attribute.arguments,
            let index = list.firstIndex(where: { $0.id == argument.id })
        else { return nil }
        var remaining = Array(list)
        let position = list.distance(from: list.startIndex, to: index)
        remaining.remove(at: position)
        if position == remaining.count, !remaining.isEmpty {
            remaining[remaining.count - 1].trailingComma = nil
        }
        return FixIt.replace(
            message: CachedFixIt.removeKey,
            oldNode: list,
            newNode: LabeledExprListSyntax(remaining)
        )
    }

    /// Reports a key path without a root type (`\.id`), which the compiler
    /// cannot type-check as an attribute argument, with a fix-it naming `Self`.
    ///
    /// Swift 6.3 stops at its own error about the argument ("cannot infer key
    /// path type from context; consider explicitly specifying a root type")
    /// and does not run the macro; this is the message for a compiler that
    /// does run it. It cannot be made to work: nothing in the attribute's
    /// arguments, which are type-checked on their own, names the root.
    private mutating func checkKeyPathRoot(_ expression: ExprSyntax) {
        guard let keyPath = expression.as(KeyPathExprSyntax.self), keyPath.root == nil else { return }
        let rooted = keyPath.with(\.root, TypeSyntax(IdentifierTypeSyntax(name: .keyword(.Self))))
        let suggested = rooted.trimmedDescription
        self.report(
            .keyPathWithoutRoot(keyPath.trimmedDescription, suggested),
            highlighting: keyPath,
            fixIt: FixIt.replace(message: CachedFixIt.nameRoot(suggested), oldNode: keyPath, newNode: rooted)
        )
    }

    // MARK: Signature

    /// The names by which the body refers to the parameters, in order; reports
    /// the parameters that cannot be part of a cache key.
    private mutating func parameterNames() -> [String] {
        var names: [String] = []
        for parameter in self.function.signature.parameterClause.parameters {
            let internalName = parameter.secondName ?? parameter.firstName
            let written = parameter.with(\.trailingComma, nil).trimmedDescription
            if parameter.type.isInout {
                self.report(.inoutParameter(internalName.text), highlighting: parameter)
            } else if parameter.type.isFunction {
                self.report(.functionParameter(internalName.text), highlighting: parameter)
            }
            if internalName.tokenKind == .wildcard {
                self.report(.unnamedParameter(written), highlighting: parameter, fixIt: self.nameParameter(parameter))
                continue
            }
            names.append(internalName.referenceText)
        }
        return names
    }

    /// A fix-it that gives the parameter a name: its label when it has one
    /// (`x _: Int` becomes `x: Int`), a placeholder otherwise.
    private func nameParameter(_ parameter: FunctionParameterSyntax) -> FixIt {
        var named = parameter
        if parameter.secondName != nil, parameter.firstName.tokenKind != .wildcard {
            named.secondName = nil
            named.firstName = parameter.firstName.with(\.trailingTrivia, [])
            return FixIt.replace(
                message: CachedFixIt.nameParameter(parameter.firstName.text),
                oldNode: parameter,
                newNode: named
            )
        }
        let placeholder = TokenSyntax.identifier("<#name#>")
        if let secondName = parameter.secondName {
            named.secondName = placeholder.with(\.leadingTrivia, secondName.leadingTrivia)
                .with(\.trailingTrivia, secondName.trailingTrivia)
        } else {
            named.firstName = parameter.firstName.with(\.trailingTrivia, .space)
            named.secondName = placeholder.with(\.trailingTrivia, parameter.firstName.trailingTrivia)
        }
        return FixIt.replace(message: CachedFixIt.nameParameter("<#name#>"), oldNode: parameter, newNode: named)
    }

    /// Reports a missing, `Void` or `Never` result.
    private mutating func checkResult() {
        guard let result = self.function.signature.returnClause?.type else {
            self.report(.noResult, highlighting: self.function.signature)
            return
        }
        switch result.emptyKind {
        case .void: self.report(.voidResult(result.trimmedDescription), highlighting: result)
        case .never: self.report(.neverResult(result.trimmedDescription), highlighting: result)
        case nil: break
        }
    }

    // MARK: Diagnostics

    private mutating func report(
        _ message: CachedDiagnostic,
        highlighting highlight: (any SyntaxProtocol)? = nil,
        fixIt: FixIt? = nil
    ) {
        self.diagnostics.append(
            CachedMacro.diagnostic(message, at: self.attribute, highlighting: highlight.map { Syntax($0) }, fixIt: fixIt)
        )
    }
}

// MARK: - Syntax queries

extension ExprSyntax {
    /// The sign (-1, 0 or 1) of a `Duration` written as a literal the macro
    /// can read: `.zero`, or `.seconds(n)`, `.milliseconds(n)`,
    /// `.microseconds(n)` or `.nanoseconds(n)` with a number literal `n`
    /// (possibly negated), optionally as `Duration.` or `Swift.Duration.`;
    /// nil for any other expression.
    var durationLiteralSign: Int? {
        if let member = self.as(MemberAccessExprSyntax.self) {
            guard member.declName.baseName.text == "zero", member.declName.argumentNames == nil,
                member.base.map(\.isDurationType) ?? true
            else { return nil }
            return 0
        }
        guard let call = self.as(FunctionCallExprSyntax.self),
            let callee = call.calledExpression.as(MemberAccessExprSyntax.self),
            ["seconds", "milliseconds", "microseconds", "nanoseconds"].contains(callee.declName.baseName.text),
            callee.base.map(\.isDurationType) ?? true,
            call.trailingClosure == nil, call.arguments.count == 1,
            let argument = call.arguments.first, argument.label == nil
        else { return nil }
        return argument.expression.numberLiteralSign
    }

    /// `Duration` or `Swift.Duration`.
    private var isDurationType: Bool {
        let text = self.trimmedDescription
        return text == "Duration" || text == "Swift.Duration"
    }

    /// The sign of an integer or floating-point literal, possibly negated or
    /// parenthesised; nil for anything else.
    private var numberLiteralSign: Int? {
        if let prefix = self.as(PrefixOperatorExprSyntax.self) {
            switch prefix.operator.text {
            case "-": return prefix.expression.numberLiteralSign.map { -$0 }
            case "+": return prefix.expression.numberLiteralSign
            default: return nil
            }
        }
        if let tuple = self.as(TupleExprSyntax.self), tuple.elements.count == 1,
            let only = tuple.elements.first, only.label == nil
        {
            return only.expression.numberLiteralSign
        }
        var text: Substring
        if let integer = self.as(IntegerLiteralExprSyntax.self) {
            text = Substring(integer.literal.text)
        } else if let float = self.as(FloatLiteralExprSyntax.self) {
            text = Substring(float.literal.text)
        } else {
            return nil
        }
        var sign = 1
        if text.hasPrefix("-") {
            sign = -1
            text = text.dropFirst()
        }
        let isHex = text.hasPrefix("0x")
        if isHex || text.hasPrefix("0o") || text.hasPrefix("0b") {
            text = text.dropFirst(2)
        }
        // Zero when every digit of the significand is: the exponent
        // (after `e`, or `p` in hexadecimal) does not matter.
        let significand = text.prefix { isHex ? $0 != "p" && $0 != "P" : $0 != "e" && $0 != "E" }
        let isZero = significand.allSatisfy { $0 == "0" || $0 == "_" || $0 == "." }
        return isZero ? 0 : sign
    }
}

extension FunctionDeclSyntax {
    /// Whether the function is `static` or `class`.
    var isStatic: Bool {
        self.modifiers.contains { $0.name.tokenKind == .keyword(.static) || $0.name.tokenKind == .keyword(.class) }
    }
}

extension TokenSyntax {
    /// The text that refers to the name this token declares: backquoted when the
    /// token is a keyword (`func f(in: Int)` declares a parameter `` `in` ``).
    var referenceText: String {
        let text = self.text
        return text.isValidSwiftIdentifier(for: .variableName) ? text : "`\(text)`"
    }

    /// The name without backquotes, as it appears in a full function name.
    var nameText: String {
        let text = self.text
        if text.count >= 2, text.hasPrefix("`"), text.hasSuffix("`") {
            return String(text.dropFirst().dropLast())
        }
        return text
    }
}

/// The result types that hold nothing to cache.
enum EmptyResultKind {
    case void
    case never
}

extension TypeSyntax {
    /// `inout T`.
    var isInout: Bool {
        guard let attributed = self.as(AttributedTypeSyntax.self) else { return false }
        let base = attributed.baseType.positionAfterSkippingLeadingTrivia
        // Specifiers and attributes come before the base type; their syntax differs
        // between swift-syntax versions, their tokens don't.
        return attributed.tokens(viewMode: .sourceAccurate).contains {
            $0.positionAfterSkippingLeadingTrivia < base && $0.tokenKind == .keyword(.inout)
        }
    }

    /// A function type, possibly attributed (`@escaping`, `@Sendable`), optional,
    /// parenthesised or spelled `Optional<...>`.
    var isFunction: Bool {
        var type = self
        while true {
            if type.is(FunctionTypeSyntax.self) {
                return true
            } else if let attributed = type.as(AttributedTypeSyntax.self) {
                type = attributed.baseType
            } else if let optional = type.as(OptionalTypeSyntax.self) {
                type = optional.wrappedType
            } else if let optional = type.as(ImplicitlyUnwrappedOptionalTypeSyntax.self) {
                type = optional.wrappedType
            } else if let wrapped = type.parenthesised ?? type.optionalArgument {
                type = wrapped
            } else {
                return false
            }
        }
    }

    /// `Void`, `()`, `Never` (possibly `Swift.`-qualified or parenthesised), or `nil`.
    var emptyKind: EmptyResultKind? {
        var type = self
        while let wrapped = type.parenthesised {
            type = wrapped
        }
        if let tuple = type.as(TupleTypeSyntax.self), tuple.elements.isEmpty {
            return .void
        }
        let name: String
        if let identifier = type.as(IdentifierTypeSyntax.self), identifier.genericArgumentClause == nil {
            name = identifier.name.text
        } else if let member = type.as(MemberTypeSyntax.self), member.genericArgumentClause == nil,
            member.baseType.trimmedDescription == "Swift"
        {
            name = member.name.text
        } else {
            return nil
        }
        switch name {
        case "Void": return .void
        case "Never": return .never
        default: return nil
        }
    }

    /// `T` for `(T)`.
    private var parenthesised: TypeSyntax? {
        guard let tuple = self.as(TupleTypeSyntax.self), tuple.elements.count == 1,
            let element = tuple.elements.first, element.firstName == nil, element.ellipsis == nil
        else { return nil }
        return element.type
    }

    /// `T` for `Optional<T>`.
    private var optionalArgument: TypeSyntax? {
        guard let identifier = self.as(IdentifierTypeSyntax.self), identifier.name.text == "Optional",
            let arguments = identifier.genericArgumentClause?.arguments, arguments.count == 1,
            let argument = arguments.first
        else { return nil }
        // `argument` is a `TypeSyntax` up to swift-syntax 601 and a choice of type
        // or expression from 602 on; going through `Syntax` works with both.
        return Syntax(argument.argument).as(TypeSyntax.self)
    }
}
