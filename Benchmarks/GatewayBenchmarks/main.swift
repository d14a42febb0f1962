import Foundation

// Release-build benchmarks for cache-gateway. Run through `make bench`, which
// builds in release mode and starts a private redis-server; each group pins
// itself (and the servers it measures) to CPUs.
//   GatewayBenchmarks [protocol] [gateway] [staleness] [client] [purge] [tls] [metrics] [cluster]
//   GatewayBenchmarks serve-ping nio|poll|hit PATH | cold PATH REDIS (a floor server, started by the gateway group)
// With BENCH_RESULTS set it also writes the figures there as JSON.
let selected = Set(CommandLine.arguments.dropFirst())

// The gateway group's ping floors run as children of this binary.
if CommandLine.arguments.count >= 4, CommandLine.arguments[1] == "serve-ping" {
    do {
        switch CommandLine.arguments[2] {
        case "nio": try PingFloorServer.runNIO(path: CommandLine.arguments[3])
        case "hit": try HitFloorServer.run(path: CommandLine.arguments[3])
        case "cold" where CommandLine.arguments.count == 5:
            try ColdFloorServer.run(path: CommandLine.arguments[3], redisPath: CommandLine.arguments[4])
        default: try PingFloorServer.runPoll(path: CommandLine.arguments[3])
        }
    } catch {
        print("ping server failed: \(error)")
        exit(1)
    }
}

do {
    if selected.isEmpty || selected.contains("protocol") {
        BenchResults.shared.begin(group: "protocol")
        try ProtocolBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("gateway") {
        BenchResults.shared.begin(group: "gateway")
        try GatewayLookupBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("staleness") {
        BenchResults.shared.begin(group: "staleness")
        try StalenessBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("client") {
        BenchResults.shared.begin(group: "client")
        try await ClientBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("purge") {
        BenchResults.shared.begin(group: "purge")
        try await PurgeBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("tls") {
        BenchResults.shared.begin(group: "tls")
        try TLSBenchmarks.run()
    }
    // Not in the default set: it needs the test cluster (scripts/bench.sh cluster).
    if selected.contains("cluster") {
        BenchResults.shared.begin(group: "cluster")
        try await ClusterBenchmarks.run()
    }
    if selected.isEmpty || selected.contains("metrics") {
        BenchResults.shared.begin(group: "metrics")
        try MetricsBenchmarks.run()
    }
    // For scripts/bench-compare.py; see Harness.swift for the layout.
    try BenchResults.shared.writeIfRequested()
} catch {
    print("benchmark failed: \(error)")
    exit(1)
}
