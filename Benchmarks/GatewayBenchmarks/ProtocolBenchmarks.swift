import Foundation
import GatewayProtocol
import NIOCore

/// A representative cached result: an invoice of about 1 KiB once encoded.
struct Invoice: Codable, Equatable, Sendable {
    struct Line: Codable, Equatable, Sendable {
        var sku: String
        var description: String
        var quantity: Int
        var unitPrice: Double
    }

    var id: Int
    var customer: String
    var currency: String
    var issued: Double
    var lines: [Line]
    var total: Double
    var paid: Bool

    static let sample = Invoice(
        id: 90_210_001,
        customer: "ACME Industrial Supplies, Ltd.",
        currency: "EUR",
        issued: 1_764_230_400,
        lines: (0..<10).map { index in
            Line(sku: "SKU-\(100_000 + index)", description: "Widget, model \(index), stainless steel", quantity: index + 1, unitPrice: 19.99 + Double(index))
        },
        total: 1_234.56,
        paid: false
    )
}

/// Encode and decode throughput of a lookup request and of a 1 KiB result,
/// so that later changes can see regressions (issue 2).
enum ProtocolBenchmarks {
    static func run() throws {
        let cpu = ProcessInfo.processInfo.environment["BENCH_CPU"].flatMap(Int.init) ?? 1
        pinProcess(toCPU: cpu)
        print("== Protocol: encode/decode (release build, pinned to CPU \(cpu)) ==")
        let allocator = ByteBufferAllocator()

        // A lookup as the client sends it: function name, a SHA-256 version, a key.
        let lookup = GatewayMessage(id: 123_456, .lookup(Lookup(
            function: FunctionVersion(
                function: "Billing.InvoiceService.total(for:currency:)",
                version: "9f2c6a7d4e1b0c8a7f6e5d4c3b2a19080706050403020100f0e0d0c0b0a09080"
            ),
            key: try CacheKey(hashing: ["customer": "c-42", "month": "2026-11"])
        )))
        let lookupFrame = try lookup.encodedFrame()
        let frameBytes = lookupFrame.readableBytes
        let decoder = FrameDecoder()

        // Baseline: copying the frame's bytes into a new buffer, the least any encoder must do.
        let copyLookup = Bench.measure("baseline: copy lookup frame", bytes: frameBytes) {
            var buffer = allocator.buffer(capacity: 128)
            buffer.writeImmutableBuffer(lookupFrame)
            blackHole(buffer)
        }
        let encodeLookup = try Bench.measure("encode lookup frame", bytes: frameBytes) {
            var buffer = allocator.buffer(capacity: 128)
            try lookup.encodeFrame(into: &buffer)
            blackHole(buffer)
        }
        let decodeLookup = try Bench.measure("decode lookup frame", bytes: frameBytes) {
            var input = lookupFrame
            let payload = try decoder.readPayload(from: &input)!
            blackHole(try GatewayMessage(payload: payload))
        }
        print("lookup frame: \(frameBytes) bytes")
        Bench.report(copyLookup)
        Bench.report(encodeLookup, against: copyLookup)
        Bench.report(decodeLookup, against: copyLookup)

        // A 1 KiB result: Codable through MessagePack, beside Foundation's JSON.
        let invoice = Invoice.sample
        let encoder = MessagePackEncoder()
        let messagePack = try encoder.encode(invoice)
        let json = try JSONEncoder().encode(invoice)
        print("1 KiB result: \(messagePack.count) bytes as MessagePack, \(json.count) as JSON")

        let jsonEncode = try Bench.measure("baseline: JSONEncoder 1 KiB result", bytes: json.count, iterations: 2_000) {
            blackHole(try JSONEncoder().encode(invoice))
        }
        let packEncode = try Bench.measure("encode 1 KiB result (MessagePack)", bytes: messagePack.count, iterations: 2_000) {
            blackHole(try encoder.encode(invoice))
        }
        let jsonDecode = try Bench.measure("baseline: JSONDecoder 1 KiB result", bytes: json.count, iterations: 2_000) {
            blackHole(try JSONDecoder().decode(Invoice.self, from: json))
        }
        let messagePackDecoder = MessagePackDecoder()
        let packDecode = try Bench.measure("decode 1 KiB result (MessagePack)", bytes: messagePack.count, iterations: 2_000) {
            blackHole(try messagePackDecoder.decode(Invoice.self, from: messagePack))
        }
        Bench.report(jsonEncode)
        Bench.report(packEncode, against: jsonEncode)
        Bench.report(jsonDecode)
        Bench.report(packDecode, against: jsonDecode)

        // The same result inside a hit reply frame: the gateway's answer to a lookup.
        let hit = GatewayMessage(id: 123_456, .lookupReply(.hit(ByteBuffer(bytes: messagePack))))
        let hitFrame = try hit.encodedFrame()
        let copyHit = Bench.measure("baseline: copy hit frame", bytes: hitFrame.readableBytes) {
            var buffer = allocator.buffer(capacity: 1_200)
            buffer.writeImmutableBuffer(hitFrame)
            blackHole(buffer)
        }
        let encodeHit = try Bench.measure("encode hit frame with 1 KiB value", bytes: hitFrame.readableBytes) {
            var buffer = allocator.buffer(capacity: 1_200)
            try hit.encodeFrame(into: &buffer)
            blackHole(buffer)
        }
        let decodeHit = try Bench.measure("decode hit frame with 1 KiB value", bytes: hitFrame.readableBytes) {
            var input = hitFrame
            let payload = try decoder.readPayload(from: &input)!
            blackHole(try GatewayMessage(payload: payload))
        }
        Bench.report(copyHit)
        Bench.report(encodeHit, against: copyHit)
        Bench.report(decodeHit, against: copyHit)

        // Deriving a key: canonical MessagePack of the arguments, then SHA-256.
        let arguments = ["customer": "c-42", "month": "2026-11"]
        let keyDerivation = try Bench.measure("key: canonical encode + SHA-256 (2 args)") {
            blackHole(try CacheKey(hashing: arguments))
        }
        Bench.report(keyDerivation, against: encodeLookup)
    }
}
