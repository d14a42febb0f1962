import Foundation
import GatewayProtocol
import Testing

// MARK: - Types under test

struct Address: Codable, Equatable {
    var street: String
    var number: Int
    var tags: [String]
}

struct Person: Codable, Equatable {
    var name: String
    var age: UInt8
    var address: Address
    var previous: [Address]
    var nickname: String?
    var manager: Address?
    var scores: [String: [Int]]
    var avatar: Data
    var checksum: [UInt8]
}

enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case rectangle(width: Int, height: Int)
    case labelled(String, Int)
    case point
    case group([Shape])
    case maybe(Int?)
}

struct Extremes: Codable, Equatable {
    var int8Min = Int8.min, int8Max = Int8.max
    var int16Min = Int16.min, int16Max = Int16.max
    var int32Min = Int32.min, int32Max = Int32.max
    var int64Min = Int64.min, int64Max = Int64.max
    var intMin = Int.min, intMax = Int.max
    var uint8Max = UInt8.max, uint16Max = UInt16.max, uint32Max = UInt32.max, uint64Max = UInt64.max, uintMax = UInt.max
    var uint8Min = UInt8.min, uint64Min = UInt64.min
}

struct Floats: Codable, Equatable {
    var float: Float
    var double: Double
    var floats: [Float]
    var doubles: [Double]
}

/// A base class and a subclass that stores the base's fields under an explicit key.
class Vehicle: Codable {
    var wheels: Int
    var name: String

    init(wheels: Int, name: String) {
        self.wheels = wheels
        self.name = name
    }
}

final class Truck: Vehicle, Equatable {
    var payloadKilograms: Double

    private enum CodingKeys: String, CodingKey {
        case payloadKilograms, base
    }

    init(wheels: Int, name: String, payloadKilograms: Double) {
        self.payloadKilograms = payloadKilograms
        super.init(wheels: wheels, name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.payloadKilograms = try container.decode(Double.self, forKey: .payloadKilograms)
        try super.init(from: container.superDecoder(forKey: .base))
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.payloadKilograms, forKey: .payloadKilograms)
        try super.encode(to: container.superEncoder(forKey: .base))
    }

    static func == (lhs: Truck, rhs: Truck) -> Bool {
        lhs.wheels == rhs.wheels && lhs.name == rhs.name && lhs.payloadKilograms == rhs.payloadKilograms
    }
}

/// The usual Codable subclass pattern: the base's fields under the default "super" key,
/// with a `CodingKeys` enum that has no `super` case.
final class Bus: Vehicle, Equatable {
    var seats: Int

    private enum CodingKeys: String, CodingKey {
        case seats
    }

    init(wheels: Int, name: String, seats: Int) {
        self.seats = seats
        super.init(wheels: wheels, name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.seats = try container.decode(Int.self, forKey: .seats)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.seats, forKey: .seats)
        try super.encode(to: container.superEncoder())
    }

    static func == (lhs: Bus, rhs: Bus) -> Bool {
        lhs.wheels == rhs.wheels && lhs.name == rhs.name && lhs.seats == rhs.seats
    }
}

/// Writes the base through an unkeyed container's `superEncoder()`.
final class Trailer: Vehicle, Equatable {
    var axles: Int

    init(wheels: Int, name: String, axles: Int) {
        self.axles = axles
        super.init(wheels: wheels, name: name)
    }

    required init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        self.axles = try container.decode(Int.self)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(self.axles)
        try super.encode(to: container.superEncoder())
    }

    static func == (lhs: Trailer, rhs: Trailer) -> Bool {
        lhs.wheels == rhs.wheels && lhs.name == rhs.name && lhs.axles == rhs.axles
    }
}

// MARK: - Tests

@Suite("Codable round trips")
struct CodableRoundTripTests {
    /// Encodes `value` in both modes and decodes each encoding back; a thrown error is
    /// recorded as an issue at the caller, so the remaining values are still checked.
    func roundTrip<T: Codable & Equatable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation) {
        for canonical in [false, true] {
            var bytes: [UInt8] = []
            do {
                bytes = try MessagePackEncoder(canonical: canonical).encode(value)
                let decoded = try MessagePackDecoder().decode(T.self, from: bytes)
                #expect(decoded == value, "canonical: \(canonical), bytes \(hex(bytes))", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(T.self) \(value), canonical: \(canonical), bytes \(hex(bytes)): \(error)", sourceLocation: sourceLocation)
            }
        }
    }

    static let home = Address(street: "Rue de l'Église", number: 12, tags: ["home", ""])

    @Test("nested structs with optionals, dictionaries of arrays, Data and [UInt8]")
    func nestedStructs() {
        let person = Person(
            name: "Ada", age: 36, address: Self.home,
            previous: [Address(street: "A", number: -1, tags: ["old"]), Self.home],
            nickname: nil, manager: Self.home,
            scores: ["maths": [100, -3, 0], "art": [7]],
            avatar: Data([0x00, 0xff, 0x10]), checksum: [0xde, 0xad, 0xbe, 0xef]
        )
        roundTrip(person)
        var other = person
        other.nickname = "Countess"
        other.manager = nil
        other.avatar = Data()
        other.checksum = []
        roundTrip(other)
    }

    @Test("empty arrays of non-byte elements are fixarray 90 and round-trip")
    func emptyArrays() throws {
        // Spec: an array of 0 elements is fixarray 0x90; only Data and [UInt8] are bin.
        #expect(try MessagePackEncoder().encode([Int]()) == [0x90])
        #expect(try MessagePackEncoder().encode([String]()) == [0x90])
        #expect(try MessagePackEncoder().encode([Shape]()) == [0x90])
        #expect(try MessagePackEncoder(canonical: true).encode([[Int]]([[]])) == [0x91, 0x90])
        #expect(try CacheKey(hashing: [Int]()) != CacheKey(hashing: [UInt8]()), "[Int]() must not hash like empty bytes")
        roundTrip([Int]())
        roundTrip([[1, 2], [], [3]])
        roundTrip(Address(street: "s", number: 1, tags: []))
        roundTrip(Shape.group([]))
        roundTrip(["empty": [Int]()])
        roundTrip([0: [String]()])
    }

    @Test("Data and [UInt8] are MessagePack bin, not arrays")
    func bytesAreBinary() throws {
        #expect(try MessagePackEncoder().encode(Data([1, 2])) == [0xc4, 0x02, 0x01, 0x02])
        #expect(try MessagePackEncoder().encode([UInt8]([1, 2])) == [0xc4, 0x02, 0x01, 0x02])
        #expect(try MessagePackDecoder().decode(Data.self, from: [0xc4, 0x02, 0x01, 0x02]) == Data([1, 2]))
        // [UInt8] also decodes from an array of small integers.
        #expect(try MessagePackDecoder().decode([UInt8].self, from: [0x92, 0x01, 0xcc, 0xff]) == [1, 255])
    }

    @Test("optionals: nil and present, at top level, in arrays and in structs")
    func optionals() throws {
        roundTrip(Int?.none)
        roundTrip(Int?.some(5))
        roundTrip(String?.some(""))
        roundTrip([1, nil, 3] as [Int?])
        roundTrip([nil, nil] as [String?])
        roundTrip(["a": nil, "b": 2] as [String: Int?])
        // A nil property is left out of the map (synthesised Codable uses encodeIfPresent).
        struct Holder: Codable, Equatable {
            var value: Int?
        }
        #expect(try MessagePackEncoder().encode(Holder(value: nil)) == [0x80])
        #expect(try MessagePackDecoder().decode(Holder.self, from: [0x81, 0xa5, 0x76, 0x61, 0x6c, 0x75, 0x65, 0xc0]) == Holder(value: nil))
        roundTrip(Holder(value: nil))
        roundTrip(Holder(value: -7))
    }

    @Test("enums with associated values")
    func enumsWithAssociatedValues() {
        let shapes: [Shape] = [
            .circle(radius: 2.5), .rectangle(width: 3, height: -4), .labelled("x", 9), .point,
            .group([.point, .circle(radius: 0), .group([.point])]), .maybe(nil), .maybe(1),
        ]
        for shape in shapes { roundTrip(shape) }
        roundTrip(shapes)
    }

    @Test("arrays, nested arrays and sets")
    func arrays() {
        roundTrip([[1, 2], [4], [3]])
        roundTrip([["a": [true, false]], [:]])
        roundTrip(Set(["x", "y", "z"]))
        roundTrip(Set<Int>())
    }

    @Test("[String: [Int]] and dictionaries with non-string keys")
    func dictionaries() {
        roundTrip(["a": [1, 2, 3], "b": [0], "c": [Int.min, Int.max]])
        roundTrip([Int8(-1): "minus one", 0: "zero", 127: "max"])
        roundTrip([UInt64.max: [1.5], 0: [-1.5]])
        roundTrip([true: "yes", false: "no"])
        roundTrip([AddressKey(street: "s", number: 1, tags: ["w"]): 1, AddressKey(street: "t", number: 2, tags: ["x"]): 2])
    }

    @Test("integer extremes of Int8 through UInt64")
    func integerExtremes() {
        roundTrip(Extremes())
        roundTrip([Int64.min, -1, 0, Int64.max])
        roundTrip([UInt64.min, UInt64.max])
        roundTrip(Int8.min)
        roundTrip(UInt16.max)
        roundTrip(UInt.max)
    }

    @Test("Float and Double, including infinities, subnormals and NaN")
    func floatingPoint() throws {
        let value = Floats(
            float: .leastNonzeroMagnitude,
            double: .greatestFiniteMagnitude,
            floats: [0, -0.0, 1.5, -.infinity, .infinity, .greatestFiniteMagnitude, .ulpOfOne, 0.1],
            doubles: [0, 1e-300, -.infinity, .leastNonzeroMagnitude, 0.1, .pi]
        )
        roundTrip(value)
        let nanBytes = try MessagePackEncoder().encode([Double.nan])
        #expect(try MessagePackDecoder().decode([Double].self, from: nanBytes).first?.isNaN == true)
        let floatNaNBytes = try MessagePackEncoder().encode(Float.nan)
        #expect(try MessagePackDecoder().decode(Float.self, from: floatNaNBytes).isNaN)
    }

    @Test("a class whose subclass uses superEncoder(forKey:) and superDecoder(forKey:)")
    func classWithKeyedSuperEncoder() throws {
        let truck = Truck(wheels: 6, name: "hauler", payloadKilograms: 12_000.5)
        roundTrip(truck)
        // {"payloadKilograms": …, "base": {"wheels": 6, "name": "hauler"}}
        let decoded = try MessagePackDecoder().decode([String: AnyField].self, from: try MessagePackEncoder().encode(truck))
        #expect(decoded["base"] == .map(["wheels": .int(6), "name": .string("hauler")]))
    }

    @Test("a class whose subclass uses unkeyed superEncoder() and superDecoder()")
    func classWithUnkeyedSuperEncoder() {
        roundTrip(Trailer(wheels: 8, name: "flatbed", axles: 4))
    }

    @Test("a class whose subclass uses keyed superEncoder() and superDecoder() (default \"super\" key)")
    func classWithDefaultSuperKey() async throws {
        let bus = Bus(wheels: 4, name: "city", seats: 40)
        // The encoding puts the base under "super" as documented for `superEncoder()`.
        let bytes = try MessagePackEncoder().encode(bus)
        let fields = try MessagePackDecoder().decode([String: AnyField].self, from: bytes)
        #expect(fields["super"] == .map(["wheels": .int(4), "name": .string("city")]))
        #expect(fields["seats"] == .int(40))
        // Decoding it back runs in a child process: if superDecoder() traps, only the child dies.
        // (A trap here is the failure "MessagePackDecoder.swift: Unexpectedly found nil".)
        await #expect(processExitsWith: .success) {
            let bus = Bus(wheels: 4, name: "city", seats: 40)
            let bytes = try MessagePackEncoder().encode(bus)
            let decoded = try MessagePackDecoder().decode(Bus.self, from: bytes)
            guard decoded == bus else { exit(3) }
        }
    }

    /// Remembers, weakly, the encoder that `superEncoder()` handed out.
    final class SuperEncoderWitness: Encodable, @unchecked Sendable {
        weak var handedOut: AnyObject?
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: MessagePackTestKey.self)
            let superEncoder = container.superEncoder()
            self.handedOut = superEncoder as AnyObject
            var single = superEncoder.singleValueContainer()
            try single.encode(1)
        }
    }

    struct MessagePackTestKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    @Test("the encoder superEncoder() hands out is freed with the rest (no reference cycle)")
    func superEncoderIsFreed() throws {
        let witness = SuperEncoderWitness()
        let bytes = try MessagePackEncoder().encode(witness)
        #expect(try MessagePackDecoder().decode([String: Int].self, from: bytes) == ["super": 1])
        // The deferred node held it in its parent's tree; a path linked back to
        // the parent made a cycle that outlived the encoding.
        #expect(witness.handedOut == nil)
    }

    @Test("userInfo reaches encode(to:) and init(from:)")
    func userInfo() throws {
        let key = try #require(CodingUserInfoKey(rawValue: "scale"))
        struct Scaled: Codable, Equatable {
            var value: Int
            init(value: Int) { self.value = value }
            init(from decoder: any Decoder) throws {
                let scale = decoder.userInfo[CodingUserInfoKey(rawValue: "scale")!] as? Int ?? 1
                self.value = try decoder.singleValueContainer().decode(Int.self) / scale
            }
            func encode(to encoder: any Encoder) throws {
                let scale = encoder.userInfo[CodingUserInfoKey(rawValue: "scale")!] as? Int ?? 1
                var container = encoder.singleValueContainer()
                try container.encode(self.value * scale)
            }
        }
        let bytes = try MessagePackEncoder(userInfo: [key: 10]).encode(Scaled(value: 3))
        #expect(bytes == [0x1e])
        #expect(try MessagePackDecoder(userInfo: [key: 10]).decode(Scaled.self, from: bytes) == Scaled(value: 3))
    }
}

/// A hashable struct used as a dictionary key (encoded as a map key).
struct AddressKey: Codable, Hashable {
    var street: String
    var number: Int
    var tags: [String]
}

/// Just enough of a dynamic MessagePack value to look inside encodings.
enum AnyField: Decodable, Equatable {
    case int(Int)
    case string(String)
    case double(Double)
    case map([String: AnyField])

    init(from decoder: any Decoder) throws {
        let single = try decoder.singleValueContainer()
        if let value = try? single.decode(Int.self) {
            self = .int(value)
        } else if let value = try? single.decode(String.self) {
            self = .string(value)
        } else if let value = try? single.decode(Double.self) {
            self = .double(value)
        } else {
            self = .map(try single.decode([String: AnyField].self))
        }
    }
}
