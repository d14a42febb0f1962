@testable import GatewayClientMacros
import SwiftDiagnostics
import SwiftParser
import SwiftSyntax
import SwiftSyntaxMacroExpansion
import SwiftSyntaxMacrosGenericTestSupport
import Testing

/// The macros under test, by the name the sources use.
func cachedMacroSpecs() -> [String: MacroSpec] {
    ["Cached": MacroSpec(type: CachedMacro.self)]
}

/// `assertMacroExpansion` reporting to Swift Testing.
func assertCached(
    _ source: String,
    expandedSource: String,
    diagnostics: [DiagnosticSpec] = [],
    applyFixIts: [String]? = nil,
    fixedSource: String? = nil,
    sourceLocation: Testing.SourceLocation = #_sourceLocation
) {
    assertMacroExpansion(
        source,
        expandedSource: expandedSource,
        diagnostics: diagnostics,
        macroSpecs: cachedMacroSpecs(),
        applyFixIts: applyFixIts,
        fixedSource: fixedSource,
        indentationWidth: .spaces(4),
        failureHandler: { failure in
            Issue.record(Comment(rawValue: failure.message), sourceLocation: sourceLocation)
        }
    )
}

/// Expands `source` and returns the expanded text and the diagnostics.
func expand(_ source: String) -> (source: String, diagnostics: [Diagnostic]) {
    let file = Parser.parse(source: source)
    let context = BasicMacroExpansionContext(
        sourceFiles: [file: .init(moduleName: "TestModule", fullFilePath: "test.swift")]
    )
    let expanded = file.expand(
        macroSpecs: cachedMacroSpecs(),
        contextGenerator: { syntax in
            BasicMacroExpansionContext(sharingWith: context, lexicalContext: syntax.allMacroLexicalContexts())
        },
        indentationWidth: .spaces(4)
    )
    return (expanded.description, context.diagnostics)
}

/// The version that the one `@Cached` expansion in `source` passes when the
/// module has no table of versions (the function's own hash), found by
/// expanding it: the expansion is `version: __cacheGatewayVersion(0xKEY, "VERSION")`,
/// and KEY must be the first 16 hex digits of VERSION.
func expandedVersion(_ source: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> String {
    let (expanded, diagnostics) = expand(source)
    #expect(diagnostics.isEmpty, "\(diagnostics.map(\.message))", sourceLocation: sourceLocation)
    let marker = "version: __cacheGatewayVersion(0x"
    let start = try #require(expanded.firstRange(of: marker), "no version in \(expanded)", sourceLocation: sourceLocation)
    let rest = expanded[start.upperBound...]
    let key = rest.prefix(16)
    let afterKey = rest.dropFirst(16)
    try #require(afterKey.hasPrefix(", \""), "no version after the key in \(expanded)", sourceLocation: sourceLocation)
    let versionText = afterKey.dropFirst(3)
    let end = try #require(versionText.firstIndex(of: "\""), sourceLocation: sourceLocation)
    let version = String(versionText[..<end])
    #expect(version.hasPrefix(key), "the key is not the version's first 16 digits", sourceLocation: sourceLocation)
    return version
}

/// The version of the first function in `source`, computed directly.
func directVersion(_ source: String, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> String {
    let function = try #require(firstFunction(in: source), sourceLocation: sourceLocation)
    return try CachedVersion.version(of: function, excluding: cachedAttribute(of: function))
}

/// The first function declaration in `source`, at any depth.
func firstFunction(in source: String) -> FunctionDeclSyntax? {
    final class Finder: SyntaxVisitor {
        var found: FunctionDeclSyntax?
        override func visit(_ node: FunctionDeclSyntax) -> SyntaxVisitorContinueKind {
            if self.found == nil { self.found = node }
            return .skipChildren
        }
    }
    let finder = Finder(viewMode: .sourceAccurate)
    finder.walk(Parser.parse(source: source))
    return finder.found
}

/// The `@Cached` attribute of `function`, if it has one.
func cachedAttribute(of function: FunctionDeclSyntax) -> AttributeSyntax? {
    for element in function.attributes {
        if case .attribute(let attribute) = element, attribute.attributeName.trimmedDescription == "Cached" {
            return attribute
        }
    }
    return nil
}
