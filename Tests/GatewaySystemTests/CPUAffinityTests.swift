#if os(Linux)
import Foundation
import GatewaySystem
import Testing

/// The affinity count agrees with what the kernel reports in /proc.
@Suite struct CPUAffinityTests {
    @Test func countsTheCPUsOfTheAffinityMaskAsProcReportsThem() throws {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let list = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        // "0-3,6": ranges and single CPUs.
        let expected = list.split(separator: ",").reduce(0) { count, item in
            let bounds = item.split(separator: "-").compactMap { Int($0) }
            return count + (bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 1)
        }
        #expect(try CPUAffinity.count() == expected)
        #expect(expected >= 1)
    }
}
#endif
