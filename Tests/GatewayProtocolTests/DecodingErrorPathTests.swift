import Foundation
import GatewayProtocol
import Testing

/// The decoder names where a value does not fit (and the encoder where a
/// value nests too deeply): the error's code, and its
/// message with the coding path (dotted keys, "Index n" for array elements).
/// The path is put together only when an error is thrown, so these hold it
/// to the path of every kind of nesting.
@Suite("Decoding and encoding errors name the path")
struct DecodingErrorPathTests {
    // Encoded shapes that resemble `Person` (CodableRoundTripTests) but differ somewhere.
    struct Named: Encodable { var name = "Ada" }
    struct WrongAge: Encodable { var name = "Ada"; var age = 300 }
    struct LooseAddress: Encodable { var street = "s"; var number = 1; var tags: [Int] = [] }
    struct WithAddress: Encodable { var name = "Ada"; var age = 36; var address = LooseAddress(tags: [1, 2]) }
    struct WithPrevious: Encodable {
        var name = "Ada"
        var age = 36
        var address = Address(street: "s", number: 1, tags: [])
        var previous: [[String: String]] = [["street": "x", "number": "1", "tags": ""]]
    }
    struct WithScores: Encodable {
        var name = "Ada"
        var age = 36
        var address = Address(street: "s", number: 1, tags: [])
        var previous: [Address] = []
        var nickname: String? = nil
        var manager: Address? = nil
        var scores: [String: [String]] = ["maths": ["high"]]
    }

    /// Two integers read in order from an unkeyed container.
    struct Pair: Decodable, Equatable {
        var first: Int
        var second: Int
        init(from decoder: any Decoder) throws {
            var container = try decoder.unkeyedContainer()
            self.first = try container.decode(Int.self)
            self.second = try container.decode(Int.self)
        }
    }

    struct Pairs: Decodable { var pairs: [Pair] }

    /// An integer or a real, for arrays that mix them.
    enum Number: Encodable, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral {
        case integer(Int)
        case real(Double)
        init(integerLiteral value: Int) { self = .integer(value) }
        init(floatLiteral value: Double) { self = .real(value) }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .integer(let value): try container.encode(value)
            case .real(let value): try container.encode(value)
            }
        }
    }

    func error<T: Decodable>(_ type: T.Type, decoding value: some Encodable) throws -> GatewayError? {
        // Canonical: a dictionary's keys in sorted order, so its indices are known.
        let bytes = try MessagePackEncoder(canonical: true).encode(value)
        return #expect(throws: GatewayError.self) { try MessagePackDecoder().decode(T.self, from: bytes) }
    }

    @Test func eachKindOfNestingIsNamed() throws {
        let cases: [(GatewayError?, GatewayError.Code, String)] = [
            (try self.error(Person.self, decoding: Named()), .missingValue, "no value for key 'age' at <root>"),
            (try self.error(Person.self, decoding: WrongAge()), .valueOutOfRange, "300 at age does not fit UInt8"),
            (try self.error(Person.self, decoding: WithAddress()), .typeMismatch, "expected string at address.tags.Index 0, found unsigned"),
            (try self.error(Person.self, decoding: WithPrevious()), .typeMismatch, "expected Int at previous.Index 0.number, found string"),
            (try self.error(Person.self, decoding: WithScores()), .typeMismatch, "expected Int at scores.Index 0.Index 0, found string"),
            (try self.error(Pair.self, decoding: [1]), .missingValue, "the array at <root> has only 1 elements"),
            (try self.error(Pairs.self, decoding: ["pairs": [[1, 2], [3, -4], [5, 6, 7], [8, 1.5]] as [[Number]]]), .typeMismatch, "expected Int at pairs.Index 3.Index 1, found float64"),
            (try self.error([String: Pair].self, decoding: ["a": [1, 2], "b": [3]]), .missingValue, "the array at Index 1 has only 1 elements"),
        ]
        for (index, (error, code, message)) in cases.enumerated() {
            #expect(error?.code == code, "case \(index)")
            #expect(error?.message == message, "case \(index)")
        }
    }

    /// A value `depth` levels deep: arrays in a keyed wrapper, then a dictionary.
    indirect enum Deep: Encodable {
        case leaf
        case array(Deep)
        case keyed(Deep)
        case dictionary(Deep)

        static func nested(_ depth: Int) -> Deep {
            (0..<depth).reduce(Deep.leaf) { inner, level in
                switch level % 3 {
                case 0: .array(inner)
                case 1: .keyed(inner)
                default: .dictionary(inner)
                }
            }
        }

        enum CodingKeys: String, CodingKey { case inner }

        func encode(to encoder: any Encoder) throws {
            switch self {
            case .leaf:
                var container = encoder.singleValueContainer()
                try container.encode(1)
            case .array(let inner):
                var container = encoder.unkeyedContainer()
                try container.encode(inner)
            case .keyed(let inner):
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(inner, forKey: .inner)
            case .dictionary(let inner):
                var container = encoder.singleValueContainer()
                try container.encode([7: inner])
            }
        }
    }

    @Test func theEncoderNamesThePathOfAValueNestedTooDeeply() throws {
        let error = #expect(throws: GatewayError.self) { try MessagePackEncoder().encode(Deep.nested(40)) }
        #expect(error?.code == .nestingTooDeep)
        // From the outside in: an array (level 39), a dictionary (key 7), a keyed wrapper, and so on.
        let path = "Index 0" + String(repeating: ".7.inner.Index 0", count: 10) + ".7.inner"
        #expect(error?.message == "value at \(path) nests deeper than 32 containers")
    }
}
