import GatewayDigest
import SwiftParser
import SwiftSyntax

/// Turns one source file into its ``FileSummary``: parses it, collects its
/// declarations (``DeclarationCollector``), and works out for each one the
/// names it mentions and its hash, and for each `@Cached` function its own
/// version and name.
enum FileSummarizer {
    static func summarize(_ file: SourceFile) throws -> FileSummary {
        var text = file.text
        let tree = text.withUTF8 { Parser.parse(source: $0) }
        let collector = DeclarationCollector(file: 0, text: Array(file.text.utf8), declarations: [])
        collector.walk(tree)
        let declarations = collector.declarations
        let converter = SourceLocationConverter(fileName: file.path, tree: tree)

        var entries: [FileSummary.Entry] = []
        entries.reserveCapacity(declarations.count)
        for index in declarations.indices {
            let declaration = declarations[index]
            let tokens = self.tokens(of: declaration)
            entries.append(
                FileSummary.Entry(
                    kind: declaration.kind,
                    names: declaration.names,
                    display: declaration.display,
                    parent: declaration.parent,
                    isRequirement: declaration.isRequirement,
                    contents: declaration.contents,
                    line: converter.location(for: declaration.position).line,
                    references: self.references(of: index, in: declarations, tokens: tokens),
                    hash: try self.hash(of: index, in: declarations, tokens: tokens).hexString
                )
            )
        }
        let cached = try collector.cached.map { function in
            FileSummary.Cached(
                declaration: function.declaration,
                name: ModuleVersions.qualifiedName(of: function.syntax),
                ownVersion: try OwnVersion.version(of: function.syntax, excluding: function.attribute),
                hasHandWrittenVersion: function.syntax.hasHandWrittenVersion
            )
        }
        return FileSummary(path: file.path, entries: entries, cached: cached)
    }

    // MARK: Tokens

    /// The tokens that make up `declaration`: all of a member's but its
    /// `@Cached` attributes (so that a callee's TTL is not part of its
    /// callers' versions), a header's without its members.
    static func tokens(of declaration: Declaration) -> [TokenSyntax] {
        var excluded: [Syntax] = []
        switch declaration.kind {
        case .member:
            if let attributes = declaration.node.asProtocol(WithAttributesSyntax.self)?.attributes {
                for element in attributes {
                    if case .attribute(let attribute) = element, attribute.isCached { excluded.append(Syntax(attribute)) }
                }
            }
        case .type, .extension:
            if let members = declaration.node.asProtocol(DeclGroupSyntax.self)?.memberBlock.members {
                excluded.append(Syntax(members))
            }
        }
        guard !excluded.isEmpty else { return Array(declaration.node.tokens(viewMode: .sourceAccurate)) }
        let ranges = excluded.map { $0.position..<$0.endPosition }
        return declaration.node.tokens(viewMode: .sourceAccurate).filter { token in
            let position = token.positionAfterSkippingLeadingTrivia
            return !ranges.contains { $0.contains(position) }
        }
    }

    // MARK: References

    /// The names that declaration `index` mentions, and those its code implies:
    /// `subscript` for a `[`, `callAsFunction` for a call, a dynamic member
    /// subscript for a member access, the enclosing type for `Self`. The names
    /// it declares itself (and an extension's extended type) are left out: a
    /// declaration does not refer to itself by being declared. Sorted; names
    /// the module does not declare are dropped later, by ``ModuleIndex``.
    static func references(of index: Int, in declarations: [Declaration], tokens: [TokenSyntax]) -> [String] {
        let declaration = declarations[index]
        let declared = Set(self.declaredNameTokens(of: declaration.node).map(\.positionAfterSkippingLeadingTrivia))
        var names = Set<String>()
        for token in tokens where !declared.contains(token.positionAfterSkippingLeadingTrivia) {
            switch token.tokenKind {
            case .identifier:
                names.insert(token.nameText)
            case .dollarIdentifier(let text):
                names.insert(String(text.dropFirst()))
            case .binaryOperator(let text), .prefixOperator(let text), .postfixOperator(let text):
                names.insert(text)
            case .keyword(.`init`):
                names.insert("init")
            case .keyword(.Self):
                if let type = self.enclosingTypeName(of: declaration, in: declarations) { names.insert(type) }
            case .leftSquare:
                names.insert("subscript")
            case .leftParen:
                names.insert("callAsFunction")
            case .period:
                names.insert(Names.dynamicMember)
            default:
                break
            }
        }
        return names.sorted()
    }

    /// The type `Self` means in `declaration`: the type or extension it is in,
    /// or that it is.
    private static func enclosingTypeName(of declaration: Declaration, in declarations: [Declaration]) -> String? {
        if declaration.kind != .member { return declaration.names.first }
        return declaration.parent.flatMap { declarations[$0].names.first }
    }

    /// The tokens that name what `node` declares.
    private static func declaredNameTokens(of node: Syntax) -> [TokenSyntax] {
        if let decl = node.as(FunctionDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(StructDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(ClassDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(EnumDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(ActorDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(ProtocolDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(ExtensionDeclSyntax.self) { return Array(decl.extendedType.tokens(viewMode: .sourceAccurate)) }
        if let decl = node.as(TypeAliasDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(AssociatedTypeDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(MacroDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(OperatorDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(PrecedenceGroupDeclSyntax.self) { return [decl.name] }
        if let decl = node.as(EnumCaseDeclSyntax.self) { return decl.elements.map(\.name) }
        if let decl = node.as(VariableDeclSyntax.self) {
            return decl.bindings.flatMap { binding in
                binding.pattern.tokens(viewMode: .sourceAccurate).filter { if case .identifier = $0.tokenKind { true } else { false } }
            }
        }
        return []
    }

    // MARK: Hashes

    /// The SHA-256 of declaration `index`: its kind, where it is (the headers
    /// around it and its `#if` conditions) and its tokens, length-prefixed and
    /// without trivia, so that comments and whitespace never count and the same
    /// text in two places hashes differently.
    static func hash(of index: Int, in declarations: [Declaration], tokens: [TokenSyntax]) throws -> SHA256Digest {
        let declaration = declarations[index]
        var bytes = Array("declaration\n".utf8)
        OwnVersion.append(declaration.kind.rawValue, to: &bytes)
        var path: [String] = []
        var parent = declaration.parent
        while let current = parent {
            path.append(declarations[current].display)
            parent = declarations[current].parent
        }
        OwnVersion.append("in", to: &bytes)
        for component in path.reversed() { OwnVersion.append(component, to: &bytes) }
        OwnVersion.append("if", to: &bytes)
        for condition in declaration.conditions { OwnVersion.append(condition, to: &bytes) }
        OwnVersion.append("tokens", to: &bytes)
        for token in tokens { OwnVersion.append(token.text, to: &bytes) }
        return try SHA256.hash(bytes)
    }
}
