import Foundation
@testable import GatewayClientRuntime
import GatewayProtocol
import Testing

/// `KeyBuilder` assembles the canonical bytes of `KeyMaterial` from parts; the
/// keys must be exactly those of encoding `KeyMaterial`, or entries written by
/// other clients (and by earlier builds) would no longer be found.
@Suite struct KeyBuilderTests {
    /// The key by definition: `KeyMaterial` through the canonical encoder.
    func reference<Result, each Argument: Encodable>(_ result: Result.Type, _ arguments: repeat each Argument) throws -> CacheKey {
        var values: [any Encodable] = []
        var types: [String] = []
        for argument in repeat each arguments {
            values.append(argument)
            types.append(String(reflecting: type(of: argument)))
        }
        return try CacheKey(hashing: KeyMaterial(result: String(reflecting: Result.self), argumentTypes: types, arguments: values))
    }

    func expectSameKey<Result, each Argument: Encodable>(_ result: Result.Type, _ arguments: repeat each Argument, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let expected = try self.reference(Result.self, repeat each arguments)
        // Twice: the second time the type names come from the cache.
        #expect(KeyBuilder.key(result: Result.self, arguments: repeat each arguments) == expected, sourceLocation: sourceLocation)
        #expect(KeyBuilder.key(result: Result.self, arguments: repeat each arguments) == expected, sourceLocation: sourceLocation)
    }

    struct Invoice: Codable {
        var customer: String
        var lines: [Int]
        var discount: Double?
    }

    final class Customer: Codable {
        var id = 7
        var tags: Set<String> = ["b", "a"]
    }

    enum Plan: String, Codable { case basic, pro }

    @Test func integersAtEveryBoundaryOfTheirEncoding() throws {
        let values: [Int] = [
            0, 1, 127, 128, 255, 256, 65_535, 65_536, 4_294_967_295, 4_294_967_296, .max,
            -1, -32, -33, -128, -129, -32_768, -32_769, Int(Int32.min), Int(Int32.min) - 1, .min,
        ]
        for value in values {
            try self.expectSameKey(Int.self, value)
        }
    }

    @Test func stringsAtEveryBoundaryOfTheirEncoding() throws {
        for length in [0, 1, 31, 32, 255, 256, 65_535, 65_536] {
            try self.expectSameKey(String.self, String(repeating: "x", count: length))
        }
        try self.expectSameKey(String.self, "é and 東京")
    }

    @Test func otherArgumentsGoThroughTheEncoder() throws {
        try self.expectSameKey([UInt8].self)
        try self.expectSameKey(Bool.self, true, false)
        try self.expectSameKey(Int.self, Int?.some(5), Int?.none, String?.some("s"))
        try self.expectSameKey(Data.self, [UInt8](repeating: 9, count: 300), 2.5, Float(-0.0), Int8(-3), UInt64.max)
        try self.expectSameKey(Invoice.self, Invoice(customer: "c-42", lines: [1, 2, 3], discount: nil), ["b": 2, "a": 1], Plan.pro)
        try self.expectSameKey(Customer.self, Customer(), [[1], [2, 3]], Set(["z", "y"]))
    }

    /// One call site of a generic function called with other types in turn:
    /// the site remembers the type names of its first call, and must use them
    /// only when a call's types are the same.
    @Test func aSiteRemembersItsTypeNamesOnlyForTheSameTypes() throws {
        class Animal: Encodable { var name = "a" }
        final class Dog: Animal {}
        let site = CallSite.resolve(function: "generic(_:_:)", version: "t", fileID: "Keys/Generic.swift")
        func check<Result, each Argument: Encodable>(_ result: Result.Type, _ arguments: repeat each Argument, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let expected = try self.reference(Result.self, repeat each arguments)
            #expect(KeyBuilder.key(site: site, result: Result.self, arguments: repeat each arguments) == expected, sourceLocation: sourceLocation)
        }
        try check(Int.self, 1, "x")
        #expect(site.typeNames != nil)
        try check(Int.self, 1, "x")
        try check(String.self, 1, "x")  // another result type
        try check(Int.self, "x", 1)  // the same types in another order
        try check(Int.self, 1)  // fewer arguments
        try check(Int.self, 1, "x", true)  // more
        try check(Int.self, 1, Int?.some(2))
        try check(Int.self, Animal(), Dog() as Animal)  // the dynamic type of a class argument counts
        try check(Int.self, 1, "x")
    }

    @Test func sixteenArgumentsTakeTheLongerArrayHeader() throws {
        try self.expectSameKey(Int.self, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16)
        try self.expectSameKey(Int.self, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
    }

    @Test func argumentsThatCannotBeEncodedGiveNoKey() throws {
        struct Deep: Encodable {
            func encode(to encoder: any Encoder) throws {
                throw EncodingError.invalidValue(0, .init(codingPath: [], debugDescription: "no"))
            }
        }
        #expect(KeyBuilder.key(result: Int.self, arguments: 1, Deep()) == nil)
    }

    @Test func theModuleComesFromTheFileID() {
        #expect(KeyBuilder.qualified("f(x:)", fileID: "Billing/Invoice.swift") == "Billing.f(x:)")
        #expect(KeyBuilder.qualified("f(x:)", fileID: "Billing") == "Billing.f(x:)")
        #expect(KeyBuilder.qualified("f(x:)", fileID: "") == "f(x:)")
        #expect(KeyBuilder.qualified("f(x:)", fileID: "/Billing/x") == "Billing.f(x:)")
    }
}
