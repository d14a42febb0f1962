#if os(Linux)
import CLinux
import GatewayProtocol

/// The CPUs this process may run on.
public enum CPUAffinity {
    /// How many CPUs the calling thread may run on: its affinity mask, as
    /// `taskset` or systemd's `CPUAffinity=` set it (SwiftNIO's
    /// `System.coreCount` counts cgroup limits but not this mask).
    public static func count() throws(GatewayError) -> Int {
        var mask = [UInt8](repeating: 0, count: 1024)
        let length = try mask.withUnsafeMutableBufferPointer { buffer throws(GatewayError) in
            try systemCall("sched_getaffinity") { cache_gateway_sched_getaffinity(buffer.baseAddress, UInt(buffer.count)) }
        }
        return mask.prefix(Int(length)).reduce(0) { $0 + $1.nonzeroBitCount }
    }
}
#endif
