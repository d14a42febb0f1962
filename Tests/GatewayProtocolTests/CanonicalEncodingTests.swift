import CanonicalFixture
import Foundation
import GatewayDigest
import GatewayProtocol
import Testing

// MARK: - Tests

@Suite("Canonical encoding")
struct CanonicalEncodingTests {
    let canonical = MessagePackEncoder(canonical: true)
    let compact = MessagePackEncoder()

    /// The indices 0..<count in an order that is neither ascending nor descending.
    static func scrambled(_ count: Int) -> [Int] {
        (0..<count).map { ($0 * 7 + 3) % count }  // 7 is coprime to every count used here
    }

    @Test("[String: Int] filled in different orders gives the same canonical bytes")
    func stringKeyedDictionary() throws {
        var ascending: [String: Int] = [:]
        var descending: [String: Int] = [:]
        descending.reserveCapacity(1000)
        var scrambled: [String: Int] = [:]
        for index in 0..<200 { ascending["key \(index)"] = index }
        for index in (0..<200).reversed() { descending["key \(index)"] = index }
        for index in Self.scrambled(200) { scrambled["key \(index)"] = index }
        // Premise: the three dictionaries iterate in different orders (each table has its own seed).
        #expect(try compact.encode(ascending) != compact.encode(descending))
        let bytes = try canonical.encode(ascending)
        #expect(try canonical.encode(descending) == bytes)
        #expect(try canonical.encode(scrambled) == bytes)
        #expect(try MessagePackDecoder().decode([String: Int].self, from: bytes) == ascending)
    }

    @Test("[Int: String] filled in different orders gives the same canonical bytes")
    func intKeyedDictionary() throws {
        var ascending: [Int: String] = [:]
        var descending: [Int: String] = [:]
        descending.reserveCapacity(1000)
        for index in -100..<100 { ascending[index * 1000] = "v\(index)" }
        for index in (-100..<100).reversed() { descending[index * 1000] = "v\(index)" }
        #expect(try compact.encode(ascending) != compact.encode(descending))
        let bytes = try canonical.encode(ascending)
        #expect(try canonical.encode(descending) == bytes)
        #expect(try MessagePackDecoder().decode([Int: String].self, from: bytes) == ascending)
    }

    @Test("nested dictionaries filled in different orders give the same canonical bytes")
    func nestedDictionary() throws {
        var first: [String: [Int: [String: Bool]]] = [:]
        var second: [String: [Int: [String: Bool]]] = [:]
        for outer in 0..<15 {
            for middle in 0..<10 {
                for inner in 0..<5 {
                    first["o\(outer)", default: [:]][middle, default: [:]]["i\(inner)"] = (outer + inner) % 2 == 0
                }
            }
        }
        for outer in Self.scrambled(15) {
            for middle in (0..<10).reversed() {
                for inner in Self.scrambled(5) {
                    second["o\(outer)", default: [:]][middle, default: [:]]["i\(inner)"] = (outer + inner) % 2 == 0
                }
            }
        }
        #expect(first == second)
        #expect(try compact.encode(first) != compact.encode(second))
        let bytes = try canonical.encode(first)
        #expect(try canonical.encode(second) == bytes)
        #expect(try MessagePackDecoder().decode([String: [Int: [String: Bool]]].self, from: bytes) == first)
    }

    @Test("Set<String> filled in different orders gives the same canonical bytes")
    func setOfStrings() throws {
        var ascending = Set<String>()
        var descending = Set<String>(minimumCapacity: 1000)
        for index in 0..<300 { ascending.insert("element \(index)") }
        for index in (0..<300).reversed() { descending.insert("element \(index)") }
        #expect(try compact.encode(ascending) != compact.encode(descending))
        let bytes = try canonical.encode(ascending)
        #expect(try canonical.encode(descending) == bytes)
        #expect(try MessagePackDecoder().decode(Set<String>.self, from: bytes) == ascending)
    }

    @Test("map entries and set elements sort by their encoded bytes (docs/PROTOCOL.md section 4)")
    func sortOrderMatchesSpec() throws {
        // "a" = a1 61, "b" = a1 62, "aa" = a2 61 61: the header byte sorts "aa" after "b".
        #expect(try canonical.encode(["b": 1, "aa": 3, "a": 2]) == [0x83, 0xa1, 0x61, 0x02, 0xa1, 0x62, 0x01, 0xa2, 0x61, 0x61, 0x03])
        // 1 = 01, 200 = cc c8, -1 = ff.
        #expect(try canonical.encode([-1: "y", 200: "z", 1: "x"]) == [0x83, 0x01, 0xa1, 0x78, 0xcc, 0xc8, 0xa1, 0x7a, 0xff, 0xa1, 0x79])
        #expect(try canonical.encode(Set(["ab", "b", "a"])) == [0x93, 0xa1, 0x61, 0xa1, 0x62, 0xa2, 0x61, 0x62])
        // Struct fields sort by name too: "a" (a1 61) before "b" (a1 62) whatever the declaration order.
        struct Reversed: Encodable {
            var b = 2
            var a = 1
        }
        #expect(try canonical.encode(Reversed()) == [0x82, 0xa1, 0x61, 0x01, 0xa1, 0x62, 0x02])
        #expect(try compact.encode(Reversed()) == [0x82, 0xa1, 0x62, 0x02, 0xa1, 0x61, 0x01])
    }

    @Test("-0.0 and 0.0 give the same canonical bytes")
    func negativeZero() throws {
        let zero64: [UInt8] = [0xcb, 0, 0, 0, 0, 0, 0, 0, 0]
        let zero32: [UInt8] = [0xca, 0, 0, 0, 0]
        #expect(try canonical.encode(-0.0) == zero64)
        #expect(try canonical.encode(0.0) == zero64)
        #expect(try canonical.encode(Float(-0.0)) == zero32)
        #expect(try canonical.encode(Float(0.0)) == zero32)
        #expect(try canonical.encode([-0.0, 0.0]) == [0x92] + zero64 + zero64)
        #expect(try canonical.encode(["x": Float(-0.0)]) == [0x81, 0xa1, 0x78] + zero32)
        #expect(try CacheKey(hashing: -0.0) == CacheKey(hashing: 0.0))
    }

    @Test("every NaN gives the same canonical bytes")
    func everyNaN() throws {
        let quiet64: [UInt8] = [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0]
        let doubles: [Double] = [
            .nan, -.nan, .signalingNaN, -.signalingNaN,
            Double(nan: 0x1234, signaling: false), Double(nan: 0x1234, signaling: true),
            Double(bitPattern: 0x7ff0_0000_0000_0001), Double(bitPattern: 0xfff8_0000_0000_0001),
            Double(bitPattern: 0x7fff_ffff_ffff_ffff), Double(bitPattern: 0xffff_ffff_ffff_ffff),
        ]
        for value in doubles {
            #expect(value.isNaN)
            #expect(try canonical.encode(value) == quiet64, "bit pattern \(String(value.bitPattern, radix: 16))")
        }
        let quiet32: [UInt8] = [0xca, 0x7f, 0xc0, 0, 0]
        let floats: [Float] = [
            .nan, -.nan, .signalingNaN, Float(nan: 0x55, signaling: false),
            Float(bitPattern: 0x7f80_0001), Float(bitPattern: 0xffc0_0001), Float(bitPattern: 0xffff_ffff),
        ]
        for value in floats {
            #expect(value.isNaN)
            #expect(try canonical.encode(value) == quiet32, "bit pattern \(String(value.bitPattern, radix: 16))")
        }
        #expect(try CacheKey(hashing: [Double.nan]) == CacheKey(hashing: [-Double.signalingNaN]))
    }

    @Test("compact mode keeps -0.0")
    func compactKeepsNegativeZero() throws {
        #expect(try compact.encode(-0.0) == [0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0])
        #expect(try compact.encode(Float(-0.0)) == [0xca, 0x80, 0, 0, 0])
        let decoded = try MessagePackDecoder().decode(Double.self, from: try compact.encode(-0.0))
        #expect(decoded == 0 && decoded.sign == .minus)
        let decodedFloat = try MessagePackDecoder().decode(Float.self, from: try compact.encode(Float(-0.0)))
        #expect(decodedFloat == 0 && decodedFloat.sign == .minus)
    }

    @Test("CacheKey is SHA-256 of the canonical encoding")
    func cacheKeyIsSHA256OfCanonicalBytes() throws {
        let value = makeProbeValue(reversed: false)
        let bytes = try canonical.encode(value)
        let key = try CacheKey(hashing: value)
        #expect(key.digest == (try SHA256.hash(bytes)))
        #expect(key == (try CacheKey(hashing: makeProbeValue(reversed: true))))
        #expect(key != (try CacheKey(hashing: ["other": 1])))
        // A spec-derived case: the key of `true` (c3) is SHA-256 of the single byte c3.
        #expect(try CacheKey(hashing: true).digest == SHA256.hash([0xc3]))
    }

    @Test("the probe value has the same canonical bytes however it is built, in this process")
    func probeValueInProcess() throws {
        let forward = try canonical.encode(makeProbeValue(reversed: false))
        let reverse = try canonical.encode(makeProbeValue(reversed: true))
        #expect(forward == reverse)
    }

    @Test("two CanonicalProbe processes print the same canonical bytes and key as this process")
    func acrossProcesses() throws {
        let probe = try #require(Self.probeExecutable(), "CanonicalProbe not found: build with `swift build --build-tests`")
        let first = try Self.runProbe(probe, mode: "forward")
        let second = try Self.runProbe(probe, mode: "reverse")

        let value = makeProbeValue(reversed: false)
        let expectedCanonical = hex(try canonical.encode(value))
        let expectedKey = try CacheKey(hashing: value).description

        #expect(first["canonical"] == second["canonical"])
        #expect(first["key"] == second["key"])
        #expect(first["canonical"] == expectedCanonical)
        #expect(first["key"] == expectedKey)
        #expect(second["canonical"] == expectedCanonical)
        #expect(second["key"] == expectedKey)
        // The premise of this test: each process iterates its dictionaries and sets in its own
        // order (per-process hash seed), which the compact encoding exposes.
        let firstCompact = try #require(first["compact"])
        #expect(firstCompact != second["compact"], "the probes iterated in the same order: the cross-process check proves nothing")
        #expect(firstCompact.count == expectedCanonical.count, "compact and canonical differ only in order and float normalisation")
    }

    // MARK: Running the probe

    /// Finds the CanonicalProbe executable built next to this test bundle.
    static func probeExecutable() -> URL? {
        let fileManager = FileManager.default
        var directories: [URL] = []
        // The products directory holds both the test bundle and the probe. On Linux the
        // test bundle is an executable in that directory; on macOS it is a `.xctest`
        // bundle inside it.
        #if os(Linux)
        if let executable = try? fileManager.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        #endif
        if let executable = Bundle.main.executableURL {
            directories.append(executable.resolvingSymlinksInPath().deletingLastPathComponent())
        }
        for bundle in [Bundle.main] + Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            directories.append(bundle.bundleURL.deletingLastPathComponent())
        }
        directories.append(Bundle.main.bundleURL)
        // Fallback: the package's own build directory, found from this file's path.
        let packageRoot = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // GatewayProtocolTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()
        let buildDirectory = packageRoot.appendingPathComponent(".build")
        directories.append(buildDirectory.appendingPathComponent("debug"))
        let triples = (try? fileManager.contentsOfDirectory(atPath: buildDirectory.path)) ?? []
        for triple in triples.sorted() {
            directories.append(buildDirectory.appendingPathComponent(triple).appendingPathComponent("debug"))
        }

        for directory in directories {
            let candidate = directory.appendingPathComponent("CanonicalProbe")
            var isDirectory: ObjCBool = false
            if fileManager.fileExists(atPath: candidate.path, isDirectory: &isDirectory), !isDirectory.boolValue,
                fileManager.isExecutableFile(atPath: candidate.path)
            {
                return candidate
            }
        }
        return nil
    }

    /// Runs the probe with a fresh, random hash seed and returns its `name=value` lines.
    static func runProbe(_ executable: URL, mode: String) throws -> [String: String] {
        let process = Process()
        process.executableURL = executable
        process.arguments = [mode]
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_DETERMINISTIC_HASHING"] = nil
        process.environment = environment
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        // Read to the end before waiting, so a full pipe cannot block the probe.
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "CanonicalProbe \(mode): \(text)")
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let separator = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<separator])] = String(line[line.index(after: separator)...])
        }
        return fields
    }
}
