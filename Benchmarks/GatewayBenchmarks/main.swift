import Foundation

// Release-build benchmarks for cache-gateway. Run through `make bench`, which
// builds in release mode and pins the process to one CPU with taskset.
//   GatewayBenchmarks [protocol]
let selected = Set(CommandLine.arguments.dropFirst())

do {
    if selected.isEmpty || selected.contains("protocol") {
        try ProtocolBenchmarks.run()
    }
} catch {
    print("benchmark failed: \(error)")
    exit(1)
}
