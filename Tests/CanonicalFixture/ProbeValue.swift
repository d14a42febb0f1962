// The value that the cross-process canonical-encoding test builds twice: once
// in the test process and once in each CanonicalProbe process. Dictionaries and
// sets are filled in a chosen order; each process has its own random hash seed,
// so their iteration orders differ, and only canonical encoding makes the bytes agree.

/// A value made of many dictionaries and sets, plus floats that canonical
/// encoding normalises (-0.0 and NaN).
public struct ProbeValue: Codable, Sendable {
    public var counts: [String: Int]
    public var names: [Int: String]
    public var nested: [String: [String: Double]]
    public var tags: Set<String>
    public var numbers: Set<Int>
    public var groups: [Int: Set<String>]
    public var floats: [Float]
    public var negativeZero: Double
    public var notANumber: Double
}

/// Builds the probe value, filling every dictionary and set in ascending or
/// descending order.
public func makeProbeValue(reversed: Bool) -> ProbeValue {
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

/// Lowercase hexadecimal, two digits per byte, no separators.
public func hex(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef")
    var result = ""
    for byte in bytes {
        result.append(digits[Int(byte >> 4)])
        result.append(digits[Int(byte & 0x0f)])
    }
    return result
}
