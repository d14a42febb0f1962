#if os(Linux)
import Dispatch
import GatewayProtocol
import GatewaySystem
import NIOConcurrencyHelpers
import NIOCore

/// The gateway's own event loops (`IOLoop`), one per CPU by default: they
/// serve the worker connections and the Redis data connections, so that a
/// lookup, its Redis command and the reply stay on one thread.
///
/// It is a SwiftNIO `EventLoopGroup`: parts that take a group (the Redis pool,
/// the cluster router, the server) run on it unchanged. What needs SwiftNIO's
/// channels (TLS, the subscriptions, the metrics endpoint) runs on SwiftNIO's
/// loops instead.
public final class IOLoopGroup: EventLoopGroup, Sendable {
    let loops: [IOLoop]
    private let nextIndex = NIOLockedValueBox(0)

    private init(loops: [IOLoop]) {
        self.loops = loops
    }

    /// One loop per CPU the process may use: the fewer of its cgroup's CPUs
    /// (`System.coreCount`) and its affinity's (`taskset`).
    public static var defaultCount: Int {
        let affinity = (try? CPUAffinity.count()).flatMap { $0 > 0 ? $0 : nil } ?? System.coreCount
        return max(1, min(System.coreCount, affinity))
    }

    /// Starts `count` loops, each on a thread of its own.
    public static func start(count: Int = IOLoopGroup.defaultCount) throws -> IOLoopGroup {
        precondition(count > 0, "an IOLoopGroup needs at least one loop")
        var loops: [IOLoop] = []
        for index in 0..<count {
            loops.append(try IOLoop.start(name: "gateway-io-\(index)"))
        }
        return IOLoopGroup(loops: loops)
    }

    /// The next loop, in turn.
    public func next() -> any EventLoop {
        let index = self.nextIndex.withLockedValue { index -> Int in
            defer { index = (index + 1) % self.loops.count }
            return index
        }
        return self.loops[index]
    }

    /// The loop of the calling thread when it is one of these, else the next.
    public func any() -> any EventLoop {
        self.loops.first { $0.inEventLoop } ?? self.next()
    }

    /// Every loop.
    public func makeIterator() -> EventLoopIterator {
        EventLoopIterator(self.loops)
    }

    /// Stops every loop once the tasks queued on it have run.
    public func shutdownGracefully(queue: DispatchQueue, _ callback: @escaping @Sendable ((any Error)?) -> Void) {
        let remaining = NIOLockedValueBox(self.loops.count)
        for loop in self.loops {
            loop.shutdownGracefully(queue: queue) { _ in
                if remaining.withLockedValue({ count -> Int in
                    count -= 1
                    return count
                }) == 0 {
                    callback(nil)
                }
            }
        }
    }
}
#endif
