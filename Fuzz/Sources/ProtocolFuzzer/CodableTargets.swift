import Foundation
import GatewayProtocol
import NIOCore

// Types that cover what the Codable decoder does: keyed, unkeyed and single
// value containers, optionals, nested and recursive values, dictionaries with
// string and non-string keys, binary data, enums with associated values, and
// a class decoded through `superDecoder`.

struct FuzzAddress: Codable, Hashable {
    var street: String
    var number: Int
    var tags: [String]
}

indirect enum FuzzShape: Codable, Hashable {
    case point
    case rectangle(width: Int, height: UInt16)
    case labelled(String, Int8)
    case group([FuzzShape])
    case maybe(Int32?)
}

struct FuzzRecord: Codable, Hashable {
    var name: String
    var age: UInt8
    var flag: Bool
    var address: FuzzAddress
    var previous: [FuzzAddress]
    var nickname: String?
    var scores: [String: [Int64]]
    var byNumber: [Int: String]
    var avatar: Data
    var checksum: [UInt8]
    var shape: FuzzShape
    var big: UInt64?
}

struct FuzzFloats: Codable {
    var float: Float
    var double: Double
    var doubles: [Double]
    var optional: Float?
}

class FuzzBase: Codable {
    var wheels: Int
    var name: String

    init(wheels: Int, name: String) {
        self.wheels = wheels
        self.name = name
    }
}

final class FuzzDerived: FuzzBase, Hashable {
    var payload: [Int16]

    private enum CodingKeys: String, CodingKey {
        case payload, base
    }

    init(wheels: Int, name: String, payload: [Int16]) {
        self.payload = payload
        super.init(wheels: wheels, name: name)
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.payload = try container.decode([Int16].self, forKey: .payload)
        try super.init(from: container.superDecoder(forKey: .base))
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(self.payload, forKey: .payload)
        try super.encode(to: container.superEncoder(forKey: .base))
    }

    static func == (lhs: FuzzDerived, rhs: FuzzDerived) -> Bool {
        lhs.wheels == rhs.wheels && lhs.name == rhs.name && lhs.payload == rhs.payload
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(self.payload)
    }
}

enum CodableTargets {
    static func decode(_ input: UnsafeRawBufferPointer, type: Int) {
        switch type {
        case 0: self.roundTrip(FuzzRecord.self, input)
        case 1: self.roundTrip([FuzzShape].self, input)
        case 2: self.roundTrip([String: [UInt8]].self, input)
        case 3: self.roundTrip(FuzzDerived.self, input)
        case 4: self.floats(input)
        case 5: self.canonical(input)
        default: self.direct(input)
        }
    }

    /// The decoder's `ByteBuffer` entry point reads a `[UInt8]`, `Data` or
    /// `String` that is one binary or string value straight from the bytes;
    /// for any input it decides as the general path (the raw-bytes entry
    /// point) does: the same value, or a GatewayError with the same code.
    static func direct(_ input: UnsafeRawBufferPointer) {
        func agree<T: Decodable & Equatable>(_ type: T.Type) {
            let general = Result { try MessagePackDecoder().decode(T.self, from: input) }
            let direct = Result { try MessagePackDecoder().decode(T.self, from: ByteBuffer(bytes: input)) }
            switch (general, direct) {
            case (.success(let expected), .success(let value)) where value == expected: return
            case (.failure(let expected as GatewayError), .failure(let error as GatewayError)) where error.code == expected.code: return
            default: violated("\(T.self): the general path gives \(general), the direct path \(direct)")
            }
        }
        agree([UInt8].self)
        agree(Data.self)
        agree(String.self)
    }

    /// If `input` decodes as a `T`, the value encodes (in both modes) and decodes back to itself.
    static func roundTrip<T: Codable & Equatable>(_ type: T.Type, _ input: UnsafeRawBufferPointer) {
        let value: T
        do {
            value = try MessagePackDecoder().decode(T.self, from: input)
        } catch is GatewayError {
            return
        } catch {
            violated("decoding \(T.self) threw a non-GatewayError: \(error)")
        }
        for canonical in [false, true] {
            do {
                let bytes = try MessagePackEncoder(canonical: canonical).encode(value)
                let again = try MessagePackDecoder().decode(T.self, from: bytes)
                guard again == value else { violated("\(value) decodes back as \(again) (canonical: \(canonical))") }
            } catch {
                violated("a decoded \(T.self) does not round-trip (canonical: \(canonical)): \(error)")
            }
        }
    }

    /// Floats decode, and encode back bit for bit (NaN included).
    static func floats(_ input: UnsafeRawBufferPointer) {
        guard let value = try? MessagePackDecoder().decode(FuzzFloats.self, from: input) else { return }
        do {
            let again = try MessagePackDecoder().decode(FuzzFloats.self, from: try MessagePackEncoder().encode(value))
            guard again.float.bitPattern == value.float.bitPattern,
                  again.double.bitPattern == value.double.bitPattern,
                  again.doubles.map(\.bitPattern) == value.doubles.map(\.bitPattern),
                  again.optional?.bitPattern == value.optional?.bitPattern
            else { violated("floats do not round-trip bit for bit: \(value) became \(again)") }
        } catch {
            violated("decoded floats do not round-trip: \(error)")
        }
    }

    /// Key derivation: a decoded value's canonical encoding is a fixed point
    /// (encoding what it decodes to gives the same bytes), and hashing it works.
    static func canonical(_ input: UnsafeRawBufferPointer) {
        guard let value = try? MessagePackDecoder().decode([String: FuzzShape].self, from: input) else { return }
        do {
            let encoder = MessagePackEncoder(canonical: true)
            let bytes = try encoder.encode(value)
            let again = try encoder.encode(try MessagePackDecoder().decode([String: FuzzShape].self, from: bytes))
            guard bytes == again else { violated("canonical encoding is not a fixed point for \(value)") }
            guard try CacheKey(hashing: value) == CacheKey(hashing: try MessagePackDecoder().decode([String: FuzzShape].self, from: bytes)) else {
                violated("equal values hash to different keys: \(value)")
            }
        } catch {
            violated("a decoded value cannot be keyed: \(error)")
        }
    }
}
