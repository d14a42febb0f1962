// Prints the canonical MessagePack encoding and the CacheKey of a fixed logical
// value, so that a test can compare two processes (each with its own random
// hash seed, hence its own dictionary and set iteration order).
//
// Usage: CanonicalProbe [forward|reverse]
//   forward/reverse: the order in which the dictionaries and sets are filled.
//
// Output, one `name=value` per line:
//   canonical=<hex of the canonical encoding>
//   key=<hex of CacheKey(hashing:)>
//   compact=<hex of the compact encoding> (its order follows this process's hash seed)
//
// `ProbeValue` and `makeProbeValue(reversed:)` are repeated verbatim in
// Tests/GatewayProtocolTests/CanonicalEncodingTests.swift; the test checks that the
// in-process result equals the probe's, so the two copies cannot drift apart silently.
import GatewayProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct ProbeValue: Codable {
    var counts: [String: Int]
    var names: [Int: String]
    var nested: [String: [String: Double]]
    var tags: Set<String>
    var numbers: Set<Int>
    var groups: [Int: Set<String>]
    var floats: [Float]
    var negativeZero: Double
    var notANumber: Double
}

func makeProbeValue(reversed: Bool) -> ProbeValue {
    func order(_ range: Range<Int>) -> [Int] { reversed ? range.reversed() : Array(range) }
    var value = ProbeValue(
        counts: [:], names: [:], nested: [:], tags: [], numbers: [], groups: [:],
        floats: [-0.0, .nan, 1.5, -.nan],
        negativeZero: -0.0,
        notANumber: -Double.nan
    )
    for index in order(0..<300) {
        value.counts["count-\(index)"] = index * index - 40_000
        value.names[index * 37 - 5_000] = "name \(index)"
    }
    for outer in order(0..<20) {
        var inner: [String: Double] = [:]
        for column in order(0..<20) { inner["c\(column)"] = Double(outer) / Double(column + 1) }
        value.nested["row-\(outer)"] = inner
    }
    for index in order(0..<250) {
        value.tags.insert("tag/\(index * 7919 % 1000)")
        value.numbers.insert(index * 104_729 - 1_000_000)
    }
    for group in order(0..<40) {
        var members: Set<String> = []
        for member in order(0..<12) { members.insert("m\(group * 12 + member)") }
        value.groups[group - 20] = members
    }
    return value
}

func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef")
    var result = ""
    for byte in bytes {
        result.append(digits[Int(byte >> 4)])
        result.append(digits[Int(byte & 0x0f)])
    }
    return result
}

let arguments = CommandLine.arguments.dropFirst()
let mode = arguments.first ?? "forward"
guard arguments.count <= 1, mode == "forward" || mode == "reverse" else {
    print("usage: CanonicalProbe [forward|reverse]")
    exit(2)
}

do {
    let value = makeProbeValue(reversed: mode == "reverse")
    print("canonical=\(hex(try MessagePackEncoder(canonical: true).encode(value)))")
    print("key=\(try CacheKey(hashing: value))")
    print("compact=\(hex(try MessagePackEncoder().encode(value)))")
} catch {
    print("error=\(error)")
    exit(1)
}
