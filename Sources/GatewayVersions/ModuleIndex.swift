import GatewayDigest
import SwiftParser
import SwiftSyntax

/// The declarations of a module's source files, found by name, with what
/// each one refers to and its hash, both worked out on first use.
///
/// Names are numbered: the closures look names up millions of times on a
/// large module, and comparing numbers is much cheaper than hashing strings.
/// A reference to a name that the module does not declare (a standard
/// library function, a local variable) is dropped when it is first read.
final class ModuleIndex {
    let files: [SourceFile]
    private(set) var declarations: [Declaration] = []
    private(set) var cached: [CachedFunction] = []
    /// The number of each name that a declaration of the module is found under.
    private var nameNumbers: [String: Int] = [:]
    /// The declarations (members, type and extension headers) by the number of a name they are found under.
    private(set) var byName: [[Int]] = []
    /// The numbers of each declaration's own names.
    private(set) var ownNames: [[Int]] = []
    /// Each declaration's ``Declaration/parent``, its kind (whether it is a
    /// member), ``Declaration/isRequirement`` and ``Declaration/contents``, in
    /// arrays of their own: the closures read them millions of times, and
    /// reading a field of a `Declaration` in an array copies all of it in a
    /// debug build.
    private(set) var parents: [Int?] = []
    private(set) var isMember: [Bool] = []
    private(set) var isRequirement: [Bool] = []
    private(set) var contents: [[Int]] = []
    private var referenceCache: [[Int]?] = []
    private var hashCache: [Int: SHA256Digest] = [:]
    private var trees: [SourceFileSyntax] = []
    private var converters: [Int: SourceLocationConverter] = [:]

    init(files: [SourceFile]) {
        self.files = files
        for (number, file) in files.enumerated() {
            var text = file.text
            let tree = text.withUTF8 { Parser.parse(source: $0) }
            self.trees.append(tree)
            let collector = DeclarationCollector(file: number, text: Array(text.utf8), declarations: self.declarations)
            collector.walk(tree)
            self.declarations = collector.declarations
            self.cached += collector.cached
        }
        for (index, declaration) in self.declarations.enumerated() {
            var own: [Int] = []
            for name in declaration.names {
                let number: Int
                if let known = self.nameNumbers[name] {
                    number = known
                } else {
                    number = self.byName.count
                    self.nameNumbers[name] = number
                    self.byName.append([])
                }
                self.byName[number].append(index)
                own.append(number)
            }
            self.ownNames.append(own)
            self.parents.append(declaration.parent)
            self.isMember.append(declaration.kind == .member)
            self.isRequirement.append(declaration.isRequirement)
            self.contents.append(declaration.contents)
        }
        self.referenceCache = Array(repeating: nil, count: self.declarations.count)
    }

    /// How many different names the module's declarations are found under.
    var nameCount: Int { self.byName.count }

    /// The line on which declaration `index` starts.
    func line(of index: Int) -> Int {
        let declaration = self.declarations[index]
        let converter: SourceLocationConverter
        if let known = self.converters[declaration.file] {
            converter = known
        } else {
            converter = SourceLocationConverter(fileName: self.files[declaration.file].path, tree: self.trees[declaration.file])
            self.converters[declaration.file] = converter
        }
        return converter.location(for: declaration.position).line
    }

    // MARK: Tokens

    /// The tokens that make up declaration `index`: all of a member's but its
    /// `@Cached` attributes (so that a callee's TTL is not part of its
    /// callers' versions), a header's without its members.
    func tokens(of index: Int) -> [TokenSyntax] {
        let declaration = self.declarations[index]
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
        return Self.tokens(of: declaration.node, excluding: excluded)
    }

    /// The tokens of `node` outside the `excluded` nodes.
    private static func tokens(of node: Syntax, excluding excluded: [Syntax]) -> [TokenSyntax] {
        guard !excluded.isEmpty else { return Array(node.tokens(viewMode: .sourceAccurate)) }
        let ranges = excluded.map { $0.position..<$0.endPosition }
        return node.tokens(viewMode: .sourceAccurate).filter { token in
            let position = token.positionAfterSkippingLeadingTrivia
            return !ranges.contains { $0.contains(position) }
        }
    }

    // MARK: References

    /// The names that declaration `index` mentions, and those its code implies:
    /// `subscript` for a `[`, `callAsFunction` for a call, a dynamic member
    /// subscript for a member access, the enclosing type for `Self`. The names
    /// it declares itself (and an extension's extended type) are left out: a
    /// declaration does not refer to itself by being declared.
    func references(of index: Int) -> [Int] {
        if let known = self.referenceCache[index] { return known }
        let declaration = self.declarations[index]
        let declared = Set(self.declaredNameTokens(of: declaration.node).map(\.positionAfterSkippingLeadingTrivia))
        var names = Set<String>()
        for token in self.tokens(of: index) where !declared.contains(token.positionAfterSkippingLeadingTrivia) {
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
                if let type = self.enclosingTypeName(of: declaration) { names.insert(type) }
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
        let result = names.compactMap { self.nameNumbers[$0] }.sorted()
        self.referenceCache[index] = result
        return result
    }

    /// The type `Self` means in `declaration`: the type or extension it is in,
    /// or that it is.
    private func enclosingTypeName(of declaration: Declaration) -> String? {
        if declaration.kind != .member { return declaration.names.first }
        return declaration.parent.flatMap { self.declarations[$0].names.first }
    }

    /// The tokens that name what `node` declares.
    private func declaredNameTokens(of node: Syntax) -> [TokenSyntax] {
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
    func hash(of index: Int) throws -> SHA256Digest {
        if let known = self.hashCache[index] { return known }
        let declaration = self.declarations[index]
        var bytes = Array("declaration\n".utf8)
        OwnVersion.append("\(declaration.kind)", to: &bytes)
        var path: [String] = []
        var parent = declaration.parent
        while let current = parent {
            path.append(self.declarations[current].display)
            parent = self.declarations[current].parent
        }
        OwnVersion.append("in", to: &bytes)
        for component in path.reversed() { OwnVersion.append(component, to: &bytes) }
        OwnVersion.append("if", to: &bytes)
        for condition in declaration.conditions { OwnVersion.append(condition, to: &bytes) }
        OwnVersion.append("tokens", to: &bytes)
        for token in self.tokens(of: index) { OwnVersion.append(token.text, to: &bytes) }
        let digest = try SHA256.hash(bytes)
        self.hashCache[index] = digest
        return digest
    }
}

extension AttributeSyntax {
    /// Whether this is `@Cached` (or `@GatewayClient.Cached`).
    var isCached: Bool {
        let name = self.attributeName.tokens(viewMode: .sourceAccurate).map(\.text).joined()
        return name == "Cached" || name == "GatewayClient.Cached"
    }
}
