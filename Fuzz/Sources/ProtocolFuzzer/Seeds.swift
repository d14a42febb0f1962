import Foundation
import GatewayProtocol
import NIOCore

/// The seed corpus: valid inputs for every target, made by the real encoders
/// (so they follow the code, not a copy of the format). scripts/fuzz.sh writes
/// them afresh before each run.
enum Seeds {
    /// One message of every type, with fields of typical sizes.
    static func messages() throws -> [GatewayMessage] {
        let function = FunctionVersion(function: "InvoiceService.total(for:currency:)", version: "9f2c4e1a")
        let key = try CacheKey(hashing: ["customer-42", "EUR"])
        let value = ByteBuffer(bytes: (0..<40).map { UInt8(truncatingIfNeeded: $0 &* 37) })
        let bodies: [GatewayMessage.Body] = [
            .hello(Hello(clientName: "worker", pid: 4242)),
            .ping,
            .lookup(Lookup(function: function, key: key)),
            .store(Store(function: function, key: key, ttlMilliseconds: 300_000, computeMicroseconds: 12_345, value: value)),
            .register(function),
            .invalidate(Invalidate(function: function.function)),
            .invalidate(Invalidate(function: function.function, version: function.version)),
            .invalidate(Invalidate(function: function.function, version: function.version, key: key)),
            .stats,
            .helloReply(HelloReply(protocolVersion: 1, gatewayVersion: "0.1.0", maxFrameSize: 8 << 20, maxValueSize: 4 << 20)),
            .pong,
            .lookupReply(.hit(value)),
            .lookupReply(.miss),
            .lookupReply(.missDoNotStore),
            .storeReply(stored: true),
            .registerReply,
            .invalidateReply(deleted: 3),
            .statsReply(Stats(values: ["hits": .count(10), "backend": .text("redis")])),
            .error(ErrorReply(code: .invalidField, message: "message type 3, field 4 (key): must be 32 bytes, is 3")),
        ]
        return bodies.enumerated().map { GatewayMessage(id: UInt64($0.offset + 1), $0.element) }
    }

    /// Every seed: a selector byte (see main.swift), then the target's input.
    static func all() throws -> [[UInt8]] {
        var seeds: [[UInt8]] = []
        let frames = try self.messages().map { Array(try $0.encodedFrame().readableBytesView) }
        for frame in frames {
            seeds.append([0] + frame)  // a stream of one frame, read at once
            seeds.append([2] + frame)  // the same through the NIO pipeline
        }
        let stream = frames.prefix(6).flatMap { $0 }
        seeds.append([0 | 3 << 2] + stream)  // several frames, read 3 bytes at a time
        seeds.append([2 | 3 << 2] + stream)  // the same through the pipeline, in 4 reads
        seeds.append([1 | 3 << 2] + frames[3])  // a store frame above a 64-byte limit
        seeds.append([2] + stream.dropLast(7))  // a truncated stream

        let record = FuzzRecord(
            name: "Ada", age: 36, flag: true,
            address: FuzzAddress(street: "Rue de la Paix", number: 7, tags: ["home", "é"]),
            previous: [FuzzAddress(street: "Main", number: -1, tags: [])],
            nickname: nil, scores: ["math": [1, -2, .max]], byNumber: [1: "one", -7: "minus seven"],
            avatar: Data([0, 1, 2, 255]), checksum: [9, 8, 7],
            shape: .group([.point, .rectangle(width: 3, height: 4), .labelled("x", -1), .maybe(nil), .maybe(5)]),
            big: .max
        )
        let shapes: [FuzzShape] = [.point, .group([.group([.labelled("deep", 1)])]), .rectangle(width: Int.min, height: 0)]
        let bytes: [String: [UInt8]] = ["a": [1, 2, 3], "": []]
        let derived = FuzzDerived(wheels: 6, name: "truck", payload: [1, -1, .max, .min])
        let floats = FuzzFloats(float: -0.0, double: .pi, doubles: [.nan, .infinity, -.leastNonzeroMagnitude], optional: 1.5)
        let keyed: [String: FuzzShape] = ["b": .point, "a": .maybe(-3), "é": .group([])]
        for canonical in [false, true] {
            let encoder = MessagePackEncoder(canonical: canonical)
            seeds.append([3 | 0 << 2] + (try encoder.encode(record)))
            seeds.append([3 | 1 << 2] + (try encoder.encode(shapes)))
            seeds.append([3 | 2 << 2] + (try encoder.encode(bytes)))
            seeds.append([3 | 3 << 2] + (try encoder.encode(derived)))
            seeds.append([3 | 4 << 2] + (try encoder.encode(floats)))
            seeds.append([3 | 5 << 2] + (try encoder.encode(keyed)))
        }
        return seeds
    }

    /// With CACHE_GATEWAY_FUZZ_WRITE_SEEDS=DIR, writes the seeds to DIR and
    /// returns the exit status; otherwise nil.
    static func writeIfAsked() -> CInt? {
        guard let raw = getenv("CACHE_GATEWAY_FUZZ_WRITE_SEEDS") else { return nil }
        let directory = String(cString: raw)
        do {
            let count = try self.write(to: directory)
            print("wrote \(count) seeds to \(directory)")
            return 0
        } catch {
            print("cannot write seeds to \(directory): \(error)")
            return 1
        }
    }

    /// Writes every seed to `directory` (created if needed); returns how many.
    static func write(to directory: String) throws -> Int {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let seeds = try self.all()
        for (index, seed) in seeds.enumerated() {
            let path = (directory as NSString).appendingPathComponent(String(format: "seed-%03d", index))
            try Data(seed).write(to: URL(fileURLWithPath: path))
        }
        return seeds.count
    }
}
