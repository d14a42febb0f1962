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
// The value comes from the CanonicalFixture target, which the test uses too.
import CanonicalFixture
import GatewayProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
