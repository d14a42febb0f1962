@testable import GatewayClientRuntime
import GatewayProtocol
import Testing

/// `CallSite.resolve` works out a call site's function version once and
/// finds it again from the three strings; its front cache only chooses where
/// to look, so every answer must be the function those strings name.
@Suite struct CallSiteTests {
    @Test func aCallSiteResolvesToOneSharedFunctionVersion() {
        let first = CallSite.resolve(function: "total(for:)", version: "v1", fileID: "Billing/Invoice.swift")
        let second = CallSite.resolve(function: "total(for:)", version: "v1", fileID: "Billing/Invoice.swift")
        #expect(first === second)
        #expect(first.function == FunctionVersion(function: "Billing.total(for:)", version: "v1"))
        #expect(first.fields == LookupFrames.fields(of: first.function))
    }

    @Test func stringsBuiltAtRunTimeFindTheSameFunctionVersion() {
        let literal = CallSite.resolve(function: "total(for:)", version: "v2", fileID: "Billing/Invoice.swift")
        // Equal characters in other storage: another representation, same function.
        let parts = ["total", "(for:)"]
        let built = CallSite.resolve(function: parts.joined(), version: String("v2".reversed().reversed()), fileID: ["Billing", "Invoice.swift"].joined(separator: "/"))
        #expect(built === literal)
    }

    @Test func versionsModulesAndNamesAreKeptApart() {
        let base = CallSite.resolve(function: "f(x:)", version: "a", fileID: "M/File.swift")
        let otherVersion = CallSite.resolve(function: "f(x:)", version: "b", fileID: "M/File.swift")
        let otherModule = CallSite.resolve(function: "f(x:)", version: "a", fileID: "N/File.swift")
        let otherFile = CallSite.resolve(function: "f(x:)", version: "a", fileID: "M/Other.swift")
        let otherName = CallSite.resolve(function: "f(y:)", version: "a", fileID: "M/File.swift")
        #expect(otherVersion.function == FunctionVersion(function: "M.f(x:)", version: "b"))
        #expect(otherModule.function == FunctionVersion(function: "N.f(x:)", version: "a"))
        #expect(otherName.function == FunctionVersion(function: "M.f(y:)", version: "a"))
        // Another file of the same module names the same function version.
        #expect(otherFile.function == base.function)
        #expect(base !== otherVersion && base !== otherModule && base !== otherName)
    }

    /// Far more sites than the front cache has slots, resolved in turns, so
    /// that slots are shared and overwritten: each answer is still its own.
    @Test func manySitesSharingFrontCacheSlotsEachGetTheirOwn() async {
        let names = (0..<300).map { "function\($0)(x:)" }
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<4 {
                group.addTask {
                    for round in 0..<5 {
                        for (index, name) in names.enumerated() where (index + worker + round).isMultiple(of: 2) {
                            let resolved = CallSite.resolve(function: name, version: "v\(index % 3)", fileID: "Many/Sites.swift")
                            #expect(resolved.function == FunctionVersion(function: "Many.\(name)", version: "v\(index % 3)"))
                        }
                    }
                }
            }
        }
    }
}
