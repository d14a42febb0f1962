import Foundation
import Synchronization

/// A tiny benchmark harness: runs an operation in timed batches and reports
/// the median time per operation with its spread across batches.
///
/// Figures are only meaningful on release builds (`make bench`), and only as
/// ratios against a baseline measured in the same run: the machine is shared
/// and noisy, so absolute numbers move from run to run.
struct Measurement {
    let name: String
    /// Nanoseconds per operation, one figure per batch, sorted.
    let nanosecondsPerOperation: [Double]
    /// Bytes processed by one operation, for throughput.
    let bytesPerOperation: Int

    var median: Double { self.percentile(0.5) }

    /// The same figures under another name, to report them against a second baseline.
    init(renaming measurement: Measurement, to name: String) {
        self.init(name: name, nanosecondsPerOperation: measurement.nanosecondsPerOperation, bytesPerOperation: measurement.bytesPerOperation)
    }

    init(name: String, nanosecondsPerOperation: [Double], bytesPerOperation: Int) {
        self.name = name
        self.nanosecondsPerOperation = nanosecondsPerOperation
        self.bytesPerOperation = bytesPerOperation
    }

    func percentile(_ p: Double) -> Double {
        let values = self.nanosecondsPerOperation
        let index = min(values.count - 1, max(0, Int((Double(values.count - 1) * p).rounded())))
        return values[index]
    }

    /// Throughput at the median, in MB/s (10^6 bytes).
    var megabytesPerSecond: Double { Double(self.bytesPerOperation) / self.median * 1_000 }
}

enum Bench {
    /// Runs `operation` `iterations` times per batch for `batches` batches, after a warm-up batch.
    static func measure(
        _ name: String,
        bytes: Int = 0,
        batches: Int = 25,
        iterations: Int = 20_000,
        _ operation: () throws -> Void
    ) rethrows -> Measurement {
        let clock = ContinuousClock()
        for _ in 0..<iterations { try operation() }
        var perOperation: [Double] = []
        perOperation.reserveCapacity(batches)
        for _ in 0..<batches {
            let start = clock.now
            for _ in 0..<iterations { try operation() }
            let elapsed = clock.now - start
            let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
            perOperation.append(nanoseconds / Double(iterations))
        }
        return Measurement(name: name, nanosecondsPerOperation: perOperation.sorted(), bytesPerOperation: bytes)
    }

    /// Measures several operations in alternating batches (A, B, C, A, B, C, …),
    /// so that the machine's drift during the run affects each of them alike;
    /// this is how every ratio against a baseline is measured.
    static func measureInterleaved(
        _ operations: [(name: String, operation: () throws -> Void)],
        batches: Int = 25,
        iterations: Int = 2_000
    ) throws -> [Measurement] {
        let clock = ContinuousClock()
        for entry in operations {
            for _ in 0..<iterations { try entry.operation() }
        }
        var perOperation = [[Double]](repeating: [], count: operations.count)
        for _ in 0..<batches {
            for (index, entry) in operations.enumerated() {
                let start = clock.now
                for _ in 0..<iterations { try entry.operation() }
                let elapsed = clock.now - start
                let nanoseconds = Double(elapsed.components.seconds) * 1e9 + Double(elapsed.components.attoseconds) / 1e9
                perOperation[index].append(nanoseconds / Double(iterations))
            }
        }
        return operations.indices.map { index in
            Measurement(name: operations[index].name, nanosecondsPerOperation: perOperation[index].sorted(), bytesPerOperation: 0)
        }
    }

    /// Prints a measurement: median, spread (p10–p90) and, when a baseline is
    /// given, the ratio of the medians (measured / baseline).
    static func report(_ measurement: Measurement, against baseline: Measurement? = nil) {
        var line = String(
            format: "%-44@ median %9.1f ns/op  (p10 %8.1f, p90 %8.1f)",
            measurement.name as NSString, measurement.median, measurement.percentile(0.1), measurement.percentile(0.9)
        )
        if measurement.bytesPerOperation > 0 {
            line += String(format: "  %8.1f MB/s", measurement.megabytesPerSecond)
        }
        if let baseline {
            line += String(format: "  ratio %.2f× %@", measurement.median / baseline.median, baseline.name as NSString)
        }
        print(line)
        BenchResults.shared.record(BenchResult(
            case: measurement.name,
            median: measurement.median,
            p10: measurement.percentile(0.1),
            p90: measurement.percentile(0.9),
            unit: "ns/op",
            baseline: baseline?.name,
            ratio: baseline.map { measurement.median / $0.median }
        ))
    }

    /// Records a figure that is printed by its own code (a rate, a time, a
    /// mean), with the baseline it is compared with, if any.
    static func record(_ name: String, _ value: Double, unit: String, against baseline: (name: String, value: Double)? = nil) {
        BenchResults.shared.record(BenchResult(
            case: name,
            median: value,
            p10: nil,
            p90: nil,
            unit: unit,
            baseline: baseline?.name,
            ratio: baseline.map { value / $0.value }
        ))
    }
}

/// One figure of a run, as the results file holds it. `median`, `p10` and
/// `p90` are over the batches (a figure that is a single value, such as a
/// rate or a mean, has only `median`); `ratio` is `median` over the median of
/// `baseline`, a case of the same group measured in the same run.
struct BenchResult: Codable, Sendable {
    var group = ""
    var `case`: String
    var median: Double
    var p10: Double?
    var p90: Double?
    var unit: String
    var baseline: String?
    var ratio: Double?
}

/// The machine-readable results of a run (`BENCH_RESULTS`, which
/// scripts/bench.sh sets to `.build/bench-results.json` unless given), for
/// `scripts/bench-compare.py OLD.json NEW.json`.
struct BenchResultsFile: Codable {
    /// The version of this layout.
    var schema = 1
    /// The commit measured (`BENCH_COMMIT`, which scripts/bench.sh sets from git).
    var commit: String
    /// When the run ended, ISO 8601 in UTC.
    var date: String
    /// The machine (`BENCH_MACHINE`, which scripts/bench.sh sets from lscpu, nproc and uname).
    var machine: String
    /// The run's `BENCH_*` settings (CPUs, profile, …), without the three above.
    var settings: [String: String]
    var results: [BenchResult]
}

/// The figures of this run, by group, written out at the end.
final class BenchResults: Sendable {
    static let shared = BenchResults()

    private let state = Mutex<(group: String, results: [BenchResult])>(("", []))

    /// The group that the next figures belong to.
    func begin(group: String) {
        self.state.withLock { $0.group = group }
    }

    func record(_ result: BenchResult) {
        self.state.withLock { state in
            var result = result
            result.group = state.group
            state.results.append(result)
        }
    }

    /// Writes the figures as JSON to `BENCH_RESULTS`, if it is set.
    func writeIfRequested(environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        guard let path = environment["BENCH_RESULTS"], !path.isEmpty else { return }
        let own: Set = ["BENCH_RESULTS", "BENCH_COMMIT", "BENCH_MACHINE"]
        let file = BenchResultsFile(
            commit: environment["BENCH_COMMIT"] ?? "unknown",
            date: ISO8601DateFormatter().string(from: Date()),
            machine: environment["BENCH_MACHINE"] ?? "unknown",
            settings: environment.filter { $0.key.hasPrefix("BENCH_") && !own.contains($0.key) },
            results: self.state.withLock { $0.results }
        )
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try encoder.encode(file).write(to: URL(fileURLWithPath: path))
        print("results: \(path)")
    }
}

/// Keeps a value alive and opaque to the optimiser, so that measured work is not removed.
@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}

/// What scripts/bench.sh hands every group: its private redis-server, and
/// the CPU the benchmark's client runs on (`BENCH_CPU`, default 1).
struct BenchEnvironment {
    let redisSocket: String
    let redisPID: Int32
    let clientCPU: Int
    /// The other of the two CPUs, for servers in throughput runs.
    var otherCPU: Int { self.clientCPU == 0 ? 1 : 0 }

    /// Reads it; throws when the benchmark was not started by scripts/bench.sh.
    static func current() throws -> BenchEnvironment {
        let environment = ProcessInfo.processInfo.environment
        guard let socket = environment["CACHE_GATEWAY_TEST_REDIS_SOCKET"], let pid = environment["CACHE_GATEWAY_TEST_REDIS_PID"].flatMap(Int32.init) else {
            throw BenchmarkFailure("run through scripts/bench.sh, which starts a private redis-server")
        }
        return BenchEnvironment(redisSocket: socket, redisPID: pid, clientCPU: environment["BENCH_CPU"].flatMap(Int.init) ?? 1)
    }
}
