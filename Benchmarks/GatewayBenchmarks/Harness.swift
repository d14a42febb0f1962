import Foundation

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
    }
}

/// Keeps a value alive and opaque to the optimiser, so that measured work is not removed.
@inline(never)
func blackHole<T>(_ value: T) {
    withExtendedLifetime(value) {}
}
