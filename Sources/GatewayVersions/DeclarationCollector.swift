import SwiftSyntax

/// Walks one source file and records its declarations (``Declaration``) and
/// its `@Cached` functions.
///
/// Declarations inside function bodies, closures and accessors are local: no
/// other code can name them, and they are part of the tokens of the
/// declaration that holds them, so they are not recorded. `@Cached`
/// functions are found there too (a local one is allowed).
final class DeclarationCollector: SyntaxVisitor {
    private let file: Int
    private let text: [UInt8]
    private(set) var declarations: [Declaration]
    private(set) var cached: [CachedFunction] = []
    private var enclosing: [Int] = []
    private var conditions: [String] = []

    /// Collects into `declarations`, which already holds those of the files before.
    init(file: Int, text: [UInt8], declarations: [Declaration]) {
        self.file = file
        self.text = text
        self.declarations = declarations
        super.init(viewMode: .sourceAccurate)
    }

    // MARK: Types and extensions

    override func visit(_ node: StructDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .type, name: node.name.nameText, display: "struct")
    }
    override func visitPost(_ node: StructDeclSyntax) { self.enclosing.removeLast() }

    override func visit(_ node: ClassDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .type, name: node.name.nameText, display: "class")
    }
    override func visitPost(_ node: ClassDeclSyntax) { self.enclosing.removeLast() }

    override func visit(_ node: EnumDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .type, name: node.name.nameText, display: "enum")
    }
    override func visitPost(_ node: EnumDeclSyntax) { self.enclosing.removeLast() }

    override func visit(_ node: ActorDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .type, name: node.name.nameText, display: "actor")
    }
    override func visitPost(_ node: ActorDeclSyntax) { self.enclosing.removeLast() }

    override func visit(_ node: ProtocolDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .type, name: node.name.nameText, display: "protocol")
    }
    override func visitPost(_ node: ProtocolDeclSyntax) { self.enclosing.removeLast() }

    override func visit(_ node: ExtensionDeclSyntax) -> SyntaxVisitorContinueKind {
        self.header(node, kind: .extension, name: node.extendedType.lastNameComponent, display: "extension")
    }
    override func visitPost(_ node: ExtensionDeclSyntax) { self.enclosing.removeLast() }

    // MARK: Members and top-level declarations

    override func visit(_ node: FunctionDeclSyntax) -> SyntaxVisitorContinueKind {
        let index = self.member(node, names: [node.name.nameText], display: "func " + Self.fullName(node))
        if let attribute = node.cachedAttribute {
            self.cached.append(CachedFunction(declaration: index, syntax: node, attribute: attribute))
        }
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: InitializerDeclSyntax) -> SyntaxVisitorContinueKind {
        let labels = node.signature.parameterClause.parameters.map { $0.firstName.nameText + ":" }.joined()
        self.member(node, names: ["init"], display: "init(\(labels))")
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: DeinitializerDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [], display: "deinit")
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: SubscriptDeclSyntax) -> SyntaxVisitorContinueKind {
        let labels = node.parameterClause.parameters.map(\.firstName.nameText)
        // A `subscript(dynamicMember:)` runs for any member access on its type.
        let names = labels.first == "dynamicMember" ? ["subscript", Names.dynamicMember] : ["subscript"]
        self.member(node, names: names, display: "subscript(\(labels.map { $0 + ":" }.joined()))")
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: VariableDeclSyntax) -> SyntaxVisitorContinueKind {
        var names: [String] = []
        for binding in node.bindings {
            for token in binding.pattern.tokens(viewMode: .sourceAccurate) {
                if case .identifier = token.tokenKind { names.append(token.nameText) }
            }
        }
        self.member(node, names: names, display: "\(node.bindingSpecifier.text) \(names.joined(separator: ", "))")
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: EnumCaseDeclSyntax) -> SyntaxVisitorContinueKind {
        let names = node.elements.map(\.name.nameText)
        self.member(node, names: names, display: "case \(names.joined(separator: ", "))")
        return .skipChildren
    }

    override func visit(_ node: TypeAliasDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [node.name.nameText], display: "typealias \(node.name.nameText)")
        return .skipChildren
    }

    override func visit(_ node: AssociatedTypeDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [node.name.nameText], display: "associatedtype \(node.name.nameText)")
        return .skipChildren
    }

    override func visit(_ node: OperatorDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [node.name.text], display: "operator \(node.name.text)")
        return .skipChildren
    }

    override func visit(_ node: PrecedenceGroupDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [node.name.text], display: "precedencegroup \(node.name.text)")
        return .skipChildren
    }

    override func visit(_ node: MacroDeclSyntax) -> SyntaxVisitorContinueKind {
        self.member(node, names: [node.name.nameText], display: "macro \(node.name.nameText)")
        return .skipChildren
    }

    // MARK: Code that declares nothing others can name

    /// Top-level statements (in `main.swift`): what they declare is local.
    override func visit(_ node: CodeBlockSyntax) -> SyntaxVisitorContinueKind {
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    override func visit(_ node: ClosureExprSyntax) -> SyntaxVisitorContinueKind {
        self.findLocalCachedFunctions(in: node)
        return .skipChildren
    }

    // MARK: Conditional compilation

    override func visit(_ node: IfConfigClauseSyntax) -> SyntaxVisitorContinueKind {
        var text = node.poundKeyword.text
        if let condition = node.condition {
            text += " " + condition.tokens(viewMode: .sourceAccurate).map(\.text).joined(separator: " ")
        }
        self.conditions.append(text)
        return .visitChildren
    }
    override func visitPost(_ node: IfConfigClauseSyntax) { self.conditions.removeLast() }

    // MARK: Recording

    private func header(_ node: some DeclSyntaxProtocol, kind: Declaration.Kind, name: String, display: String) -> SyntaxVisitorContinueKind {
        let index = self.record(Syntax(node), kind: kind, names: [name], display: "\(display) \(name)")
        self.enclosing.append(index)
        return .visitChildren
    }

    @discardableResult
    private func member(_ node: some DeclSyntaxProtocol, names: [String], display: String) -> Int {
        self.record(Syntax(node), kind: .member, names: names, display: display)
    }

    private func record(_ node: Syntax, kind: Declaration.Kind, names: [String], display: String) -> Int {
        let parent = self.enclosing.last
        let isRequirement = kind == .member && parent.map { self.declarations[$0].node.is(ProtocolDeclSyntax.self) } == true
        let index = self.declarations.count
        self.declarations.append(
            Declaration(
                kind: kind, names: names, display: display, file: self.file,
                position: node.positionAfterSkippingLeadingTrivia, node: node, parent: parent,
                conditions: self.conditions, isRequirement: isRequirement
            )
        )
        if let parent { self.declarations[parent].contents.append(index) }
        return index
    }

    /// Records the `@Cached` functions inside `node` (local functions). The
    /// source text is searched first: most bodies hold none, and the search is
    /// much cheaper than a walk.
    private func findLocalCachedFunctions(in declaration: some SyntaxProtocol) {
        let node = Syntax(declaration)
        guard let body = Self.bodyRange(of: node), self.contains("Cached", in: body) else { return }
        let finder = LocalCachedFunctionFinder(viewMode: .sourceAccurate)
        // The node's own attributes are not its body: walk its children only.
        for child in node.children(viewMode: .sourceAccurate) where !child.is(AttributeListSyntax.self) {
            finder.walk(child)
        }
        for (function, attribute) in finder.found {
            // Not indexed by name: nothing outside its enclosing body can call it.
            let index = self.record(Syntax(function), kind: .member, names: [], display: "func " + Self.fullName(function))
            self.cached.append(CachedFunction(declaration: index, syntax: function, attribute: attribute))
        }
    }

    private static func bodyRange(of node: Syntax) -> Range<Int>? {
        let start = node.positionAfterSkippingLeadingTrivia.utf8Offset
        let end = node.endPositionBeforeTrailingTrivia.utf8Offset
        return start < end ? start..<end : nil
    }

    private func contains(_ needle: String, in range: Range<Int>) -> Bool {
        let pattern = Array(needle.utf8)
        guard range.count >= pattern.count, range.upperBound <= self.text.count else { return false }
        return self.text.withUnsafeBufferPointer { buffer in
            var index = range.lowerBound
            let last = range.upperBound - pattern.count
            while index <= last {
                if buffer[index] == pattern[0] {
                    var matched = true
                    for offset in 1..<pattern.count where buffer[index + offset] != pattern[offset] {
                        matched = false
                        break
                    }
                    if matched { return true }
                }
                index += 1
            }
            return false
        }
    }

    /// `name(label:label:)`, `_` for an unlabelled argument: the name the
    /// `@Cached` macro gives a function (`FunctionNames`).
    static func fullName(_ function: FunctionDeclSyntax) -> String {
        FunctionNames.fullName(of: function)
    }
}

/// Finds the `@Cached` functions in a body, at any depth.
private final class LocalCachedFunctionFinder: SyntaxVisitor {
    var found: [(FunctionDeclSyntax, AttributeSyntax)] = []

    override func visit(_ node: FunctionDeclSyntax) -> SyntaxVisitorContinueKind {
        if let attribute = node.cachedAttribute { self.found.append((node, attribute)) }
        return .visitChildren
    }
}

/// A `@Cached` function found in the sources.
struct CachedFunction {
    /// Its declaration (``Declaration``).
    let declaration: Int
    let syntax: FunctionDeclSyntax
    /// The `@Cached` attribute, left out of its own version.
    let attribute: AttributeSyntax
}

/// Names that no declaration spells but that references imply.
enum Names {
    /// What a `subscript(dynamicMember:)` is found under: any member access may call it.
    static let dynamicMember = "subscript(dynamicMember:)"
}

extension FunctionDeclSyntax {
    /// The function's `@Cached` attribute (or `@GatewayClient.Cached`), if it has one.
    var cachedAttribute: AttributeSyntax? {
        for element in self.attributes {
            if case .attribute(let attribute) = element, attribute.isCached { return attribute }
        }
        return nil
    }

    /// Whether the `@Cached` attribute sets `version:` by hand (to anything but `nil`).
    var hasHandWrittenVersion: Bool {
        guard let attribute = self.cachedAttribute, case .argumentList(let arguments) = attribute.arguments else { return false }
        return arguments.contains { $0.label?.text == "version" && !$0.expression.is(NilLiteralExprSyntax.self) }
    }
}

extension TokenSyntax {
    /// The name without backquotes.
    var nameText: String {
        let text = self.text
        if text.count >= 2, text.hasPrefix("`"), text.hasSuffix("`") {
            return String(text.dropFirst().dropLast())
        }
        return text
    }
}

extension TypeSyntax {
    /// The last component of a type's name: `Inner` for `Outer.Inner`, `Array` for `Array<Int>`.
    var lastNameComponent: String {
        if let member = self.as(MemberTypeSyntax.self) { return member.name.nameText }
        if let identifier = self.as(IdentifierTypeSyntax.self) { return identifier.name.nameText }
        if self.is(ArrayTypeSyntax.self) { return "Array" }
        if self.is(DictionaryTypeSyntax.self) { return "Dictionary" }
        if self.is(OptionalTypeSyntax.self) { return "Optional" }
        return self.trimmedDescription
    }
}

extension AttributeSyntax {
    /// Whether this is `@Cached` (or `@GatewayClient.Cached`).
    var isCached: Bool {
        let name = self.attributeName.tokens(viewMode: .sourceAccurate).map(\.text).joined()
        return name == "Cached" || name == "GatewayClient.Cached"
    }
}
