import GatewayProtocol
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// The link's background thread: it takes the reader role when replies are
/// awaited and no call reads, flushes what the socket did not take, and ends
/// when the link closes.
extension GatewayLink {
    /// The background thread's loop (started by `init`; returns once the link closes).
    func runBackgroundReader() {
        var pollers = [
            pollfd(fd: self.fd, events: 0, revents: 0),
            pollfd(fd: self.wakePipe.readEnd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            let now = NIODeadline.now()
            let (reading, writing, timeout, closed) = self.lock.withLock { () -> (Bool, Bool, Int32, Bool) in
                if self.failure != nil { return (false, false, 0, true) }
                // Replies that arrived and wait for their caller need no reading.
                let earliest = self.isReading ? nil : self.pending.earliestUnansweredDeadline()
                if earliest != nil { self.isReading = true }
                self.backgroundReadsUntil = earliest
                let timeout = earliest.map { $0 > now ? Self.milliseconds($0 - now) : 0 } ?? -1
                return (earliest != nil, self.writer.hasPendingBytes, timeout, false)
            }
            if closed { return }
            // The socket is watched only for what this thread does with it: a
            // socket left readable while another thread reads would wake it in a loop.
            pollers[0].fd = reading || writing ? self.fd : -1
            pollers[0].events = (reading ? Int16(POLLIN) : 0) | (writing ? Int16(POLLOUT) : 0)
            pollers[0].revents = 0
            pollers[1].revents = 0
            pollers.withUnsafeMutableBufferPointer { UnixSocket.poll($0, milliseconds: timeout) }
            if pollers[1].revents != 0 {
                self.wakePipe.drain()
            }
            var failed: GatewayError?
            if writing && pollers[0].revents & Int16(POLLOUT | POLLERR | POLLHUP) != 0 {
                failed = self.lock.withLock { () -> GatewayError? in
                    do throws(GatewayError) {
                        try self.writer.flush(to: self.fd)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            if reading && failed == nil && pollers[0].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                failed = self.reader.read(from: self.fd).error
            }
            if let failed { self.close(failed) }
            guard reading else { continue }
            let after = NIODeadline.now()
            let completions = self.lock.withLock { () -> [Completion] in
                self.isReading = false
                self.backgroundReadsUntil = nil
                guard failed == nil else { return [] }
                defer { self.reader.messages.removeAll(keepingCapacity: true) }
                return self.pending.dispatch(self.reader.messages, now: after)
            }
            for completion in completions { completion.run() }
        }
    }

    /// `amount` as a poll timeout, rounded up so that a wait never ends early;
    /// zero for a negative amount, `Int32.max` (about 25 days, after which the
    /// background thread looks again) for a longer one.
    static func milliseconds(_ amount: TimeAmount) -> Int32 {
        let nanoseconds = max(0, amount.nanoseconds)
        let (whole, fraction) = nanoseconds.quotientAndRemainder(dividingBy: 1_000_000)
        return Int32(clamping: whole + (fraction > 0 ? 1 : 0))
    }
}
