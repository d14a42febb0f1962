import SwiftCompilerPlugin
import SwiftSyntaxMacros

/// The compiler plugin that provides cache-gateway's macros.
@main
struct GatewayClientMacrosPlugin: CompilerPlugin {
    let providingMacros: [any Macro.Type] = [
        CachedMacro.self
    ]
}
