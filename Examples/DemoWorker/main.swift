// The demo worker: a process that calls a slow @Cached function through the
// gateway. `make run` runs `DemoWorker demo`; the end-to-end tests drive
// `DemoWorker serve`, which answers one call per line read from stdin.
//
//   DemoWorker demo [--socket PATH] [--lookup-timeout-ms N] [--connect-timeout-ms N]
//   DemoWorker serve [same options]      stdin: "<version> <product>" per line
//                                        stdout: one JSON object per line
//   --lookup-timeout-ms N                how long a lookup may take (default 10 ms);
//                                        tests on a loaded machine raise it so that
//                                        a slow answer is not taken for an absent gateway
//   --connect-timeout-ms N               how long connecting may take (default 100 ms)
import Foundation
import GatewayClient

var arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.isEmpty ? "demo" : arguments.removeFirst()

/// The value after `flag` in `arguments`, if given.
func option(_ flag: String, in arguments: [String]) -> String? {
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}
let socketOption = option("--socket", in: arguments)
let lookupTimeoutOption = option("--lookup-timeout-ms", in: arguments)
let connectTimeoutOption = option("--connect-timeout-ms", in: arguments)
if socketOption != nil || lookupTimeoutOption != nil || connectTimeoutOption != nil {
    var configuration = CacheClient.Configuration(clientName: "DemoWorker")
    if let socket = socketOption { configuration.socketPath = socket }
    // The end-to-end tests pass generous ones: on a loaded machine the defaults
    // (10 ms, 100 ms) can make a call fail open, which is not what they test.
    if let milliseconds = lookupTimeoutOption.flatMap(Int64.init) { configuration.lookupTimeout = .milliseconds(milliseconds) }
    if let milliseconds = connectTimeoutOption.flatMap(Int64.init) { configuration.connectTimeout = .milliseconds(milliseconds) }
    CacheClient.configure(configuration)
}

/// One call, timed, and whether its body ran here.
func timedQuote(_ product: String, version: Int) async -> (Quote, Duration, ranHere: Bool) {
    let runsBefore = bodyRuns.value
    let start = ContinuousClock.now
    let quote = await Pricing.quote(for: product, version: version)
    return (quote, ContinuousClock.now - start, bodyRuns.value > runsBefore)
}

func milliseconds(_ duration: Duration) -> String {
    let value = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
    return String(format: "%7.2f ms", value)
}

switch mode {
case "demo":
    print("Calling Pricing.quote(for: \"espresso\") (version 1) four times:")
    for call in 1...4 {
        let (quote, time, ranHere) = await timedQuote("espresso", version: 1)
        print("  call \(call): \(milliseconds(time))  \(quote.cents) cents, by \(quote.computedBy)  \(ranHere ? "computed (miss)" : "from the gateway (hit)")")
    }
    print("The code changes (version 2: a discount) and is redeployed:")
    for call in 1...2 {
        let (quote, time, ranHere) = await timedQuote("espresso", version: 2)
        print("  call \(call): \(milliseconds(time))  \(quote.cents) cents, by \(quote.computedBy)  \(ranHere ? "computed (miss)" : "from the gateway (hit)")")
    }
    let (old, _, _) = await timedQuote("espresso", version: 1)
    let (new, _, _) = await timedQuote("espresso", version: 2)
    print("Version 1 still gets \(old.computedBy)'s result and version 2 gets \(new.computedBy)'s: they never mix.")
case "serve":
    while let line = readLine() {
        let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
        guard parts.count == 2, let version = Int(parts[0]) else {
            FileHandle.standardOutput.write(Data(#"{"error":"expected: <version> <product>"}"#.utf8 + [10]))
            continue
        }
        let (quote, time, ranHere) = await timedQuote(parts[1], version: version)
        let reply: [String: Any] = [
            "product": quote.product, "cents": quote.cents, "computedBy": quote.computedBy,
            "computedInProcess": quote.computedInProcess, "ranHere": ranHere,
            "microseconds": time.components.seconds * 1_000_000 + time.components.attoseconds / 1_000_000_000_000,
        ]
        // Written straight to the file descriptor: print() buffers when stdout is a pipe.
        let data = try JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
default:
    print("usage: DemoWorker [demo|serve] [--socket PATH] [--lookup-timeout-ms N] [--connect-timeout-ms N]")
    exit(2)
}
