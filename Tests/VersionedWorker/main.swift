// A worker built with the CacheVersions plugin, for the end-to-end test of
// versions that follow the code a function calls.
//
//   VersionedWorker serve --socket PATH     stdin: one product per line
//                                           stdout: one JSON object per line:
//                                           product, cents, computedInProcess, ranHere
import Foundation
import GatewayClient

var arguments = Array(CommandLine.arguments.dropFirst())
let mode = arguments.isEmpty ? "serve" : arguments.removeFirst()

switch mode {
case "serve":
    var configuration = CacheClient.Configuration(clientName: "VersionedWorker")
    if let index = arguments.firstIndex(of: "--socket"), index + 1 < arguments.count {
        configuration.socketPath = arguments[index + 1]
    }
    // Generous: the test is about versions, not about a loaded machine's timeouts.
    configuration.lookupTimeout = .seconds(2)
    configuration.connectTimeout = .seconds(2)
    CacheClient.configure(configuration)
    while let product = readLine() {
        let runsBefore = bodyRuns.value
        let quote = await Pricing.quote(for: product)
        let reply: [String: Any] = [
            "product": quote.product, "cents": quote.cents,
            "computedInProcess": quote.computedInProcess, "ranHere": bodyRuns.value > runsBefore,
        ]
        let data = try JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])
        FileHandle.standardOutput.write(data + Data("\n".utf8))
    }
default:
    FileHandle.standardError.write(Data("usage: VersionedWorker serve --socket PATH\n".utf8))
    exit(2)
}
