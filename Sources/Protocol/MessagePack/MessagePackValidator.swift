/// Limits that every MessagePack value in cache-gateway respects.
public enum MessagePack {
    /// The deepest nesting of arrays and maps that is accepted.
    ///
    /// msgpack-c's unpacker keeps its parse stack in a fixed array of
    /// `MSGPACK_EMBED_STACK_SIZE` (32) entries, compiled into libmsgpackc, and
    /// refuses to open any container, empty or not, past it. The encoder
    /// enforces the same limit, so that nothing it writes is unreadable.
    public static let maximumDepth = 32
}

/// A structural check of MessagePack bytes, done before msgpack-c sees them.
///
/// It walks the headers without allocating values and rejects, with a precise
/// error: a value that ends early, bytes after the value, the reserved byte
/// 0xc1, a container that declares more elements than bytes remain (each element
/// takes at least one byte), and nesting deeper than the limit. After it passes,
/// msgpack-c's allocations are bounded by one 24-byte `msgpack_object`
/// per input byte, plus its zone's chunk overhead.
enum MessagePackValidator {
    /// The error for a value that needs `count` more bytes at `offset`, kept out of line.
    @inline(never)
    static func shortOf(_ count: Int, at offset: Int, end: Int) -> GatewayError {
        GatewayError(.malformedMessage, "value at offset \(offset) needs \(count) more bytes, \(end - offset) remain")
    }

    static func validate(_ bytes: UnsafeRawBufferPointer, maximumDepth: Int) throws {
        let end = bytes.count
        guard end > 0 else { throw GatewayError(.malformedMessage, "empty input: expected one MessagePack value") }
        var offset = 0

        // Inlined: it runs for every value, and not inlined (a call with the
        // error's construction in it) it takes a third of the validator's time.
        @inline(__always) func need(_ count: Int, at offset: Int) throws {
            guard count <= end - offset else { throw Self.shortOf(count, at: offset, end: end) }
        }
        @inline(__always) func bigEndian(_ width: Int, at offset: Int) throws -> Int {
            try need(width, at: offset)
            var value = 0
            for index in 0..<width { value = value << 8 | Int(bytes[offset + index]) }
            return value
        }

        // Values still to read in each open container, the bottom entry being
        // the root: at most `maximumDepth + 1` entries, kept on the stack (a
        // heap array cost an allocation on every decode of a cached result).
        try withUnsafeTemporaryAllocation(of: Int.self, capacity: max(0, maximumDepth) + 2) { pending in
            var depth = 1
            pending[0] = 1
            while depth > 0 {
                try need(1, at: offset)
                let start = offset
                let byte = bytes[offset]
                offset += 1
                // Either a scalar with `payload` bytes after the header, or a container of `elements` values.
                var payload = 0
                var elements = 0
                var isContainer = false
                switch byte {
                case 0x00...0x7f, 0xe0...0xff, 0xc0, 0xc2, 0xc3: break
                case 0x80...0x8f: elements = Int(byte & 0x0f) * 2; isContainer = true
                case 0x90...0x9f: elements = Int(byte & 0x0f); isContainer = true
                case 0xa0...0xbf: payload = Int(byte & 0x1f)
                case 0xc1: throw GatewayError(.malformedMessage, "reserved byte 0xc1 at offset \(start)")
                case 0xc4, 0xd9: payload = try bigEndian(1, at: offset); offset += 1
                case 0xc5, 0xda: payload = try bigEndian(2, at: offset); offset += 2
                case 0xc6, 0xdb: payload = try bigEndian(4, at: offset); offset += 4
                case 0xc7: payload = try bigEndian(1, at: offset) + 1; offset += 1
                case 0xc8: payload = try bigEndian(2, at: offset) + 1; offset += 2
                case 0xc9: payload = try bigEndian(4, at: offset) + 1; offset += 4
                case 0xca, 0xce, 0xd2: payload = 4
                case 0xcb, 0xcf, 0xd3: payload = 8
                case 0xcc, 0xd0: payload = 1
                case 0xcd, 0xd1: payload = 2
                case 0xd4: payload = 2
                case 0xd5: payload = 3
                case 0xd6: payload = 5
                case 0xd7: payload = 9
                case 0xd8: payload = 17
                case 0xdc: elements = try bigEndian(2, at: offset); offset += 2; isContainer = true
                case 0xdd: elements = try bigEndian(4, at: offset); offset += 4; isContainer = true
                case 0xde: elements = try bigEndian(2, at: offset) * 2; offset += 2; isContainer = true
                case 0xdf: elements = try bigEndian(4, at: offset) * 2; offset += 4; isContainer = true
                default: preconditionFailure("unreachable: every byte value is covered")
                }
                try need(payload, at: offset)
                offset += payload
                pending[depth - 1] -= 1
                // msgpack-c checks its stack before it looks at the count, so an
                // empty container at the limit is refused as well.
                if isContainer {
                    guard depth <= maximumDepth else {
                        throw GatewayError(
                            .nestingTooDeep,
                            "containers nest deeper than \(maximumDepth) levels (at offset \(start))"
                        )
                    }
                }
                if elements > 0 {
                    try need(elements, at: offset)
                    pending[depth] = elements
                    depth += 1
                }
                while depth > 0 && pending[depth - 1] == 0 { depth -= 1 }
            }
        }
        guard offset == end else {
            throw GatewayError(.malformedMessage, "\(end - offset) bytes follow the MessagePack value")
        }
    }
}
