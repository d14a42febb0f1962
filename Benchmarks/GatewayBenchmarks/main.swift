import Foundation

// Release-build benchmarks for cache-gateway. Run through `make bench`, which
// builds in release mode and starts a private redis-server; each group pins
// itself (and the servers it measures) to CPUs.
//   GatewayBenchmarks [protocol] [gateway] [client] [purge] [metrics]
let selected = Set(CommandLine.arguments.dropFirst())

do {
    if selected.isEmpty || selected.contains("protocol") {
        try ProtocolBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("gateway") {
        try GatewayLookupBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("client") {
        try await ClientBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("purge") {
        try await PurgeBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("metrics") {
        try MetricsBenchmarks.run()
    }
} catch {
    print("benchmark failed: \(error)")
    exit(1)
}
