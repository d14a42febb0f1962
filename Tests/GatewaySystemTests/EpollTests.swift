#if os(Linux)
import GatewayProtocol
import GatewaySystem
import Glibc
import Testing

/// The epoll and eventfd wrappers, on real descriptors.
@Suite struct EpollTests {
    /// A connected pair of Unix stream sockets.
    static func socketPair() throws -> [Int32] {
        var pair: [Int32] = [0, 0]
        try systemCall("socketpair") { socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) }
        return pair
    }

    @Test func reportsAReadableSocketWithItsTokenAndNothingOnceRead() throws {
        let pair = try Self.socketPair()
        defer { close(pair[0]); close(pair[1]) }
        let epoll = try Epoll(capacity: 4)
        try epoll.register(pair[0], for: .readable, token: 42)
        var seen: [EpollReadiness] = []
        #expect(try epoll.wait(timeoutMilliseconds: 0) { seen.append($0) } == 0)
        var byte: UInt8 = 7
        try systemCall("write") { write(pair[1], &byte, 1) }
        #expect(try epoll.wait(timeoutMilliseconds: -1) { seen.append($0) } == 1)
        #expect(seen == [EpollReadiness(token: 42, events: .readable)])
        try systemCall("read") { read(pair[0], &byte, 1) }
        #expect(try epoll.wait(timeoutMilliseconds: 0) { _ in } == 0)
    }

    /// `woke` runs once per wait, after it returns and before any readiness,
    /// also when nothing is ready.
    @Test func wokeRunsOnceBeforeTheReadinesses() throws {
        let pair = try Self.socketPair()
        defer { close(pair[0]); close(pair[1]) }
        let epoll = try Epoll()
        try epoll.register(pair[0], for: .writable, token: 1)
        try epoll.register(pair[1], for: .writable, token: 2)
        var calls: [String] = []
        try epoll.wait(timeoutMilliseconds: -1, woke: { calls.append("woke") }) { calls.append("ready \($0.token)") }
        #expect(calls.first == "woke")
        #expect(calls.dropFirst().sorted() == ["ready 1", "ready 2"])
        try epoll.remove(pair[0])
        try epoll.remove(pair[1])
        calls = []
        #expect(try epoll.wait(timeoutMilliseconds: 0, woke: { calls.append("woke") }) { _ in calls.append("ready") } == 0)
        #expect(calls == ["woke"])
    }

    @Test func modifyAndRemoveChangeWhatIsReported() throws {
        let pair = try Self.socketPair()
        defer { close(pair[0]); close(pair[1]) }
        let epoll = try Epoll()
        try epoll.register(pair[0], for: .readable, token: 1)
        // An empty socket is not readable, but it is writable.
        try epoll.modify(pair[0], for: [.readable, .writable], token: 2)
        var seen: [EpollReadiness] = []
        try epoll.wait(timeoutMilliseconds: -1) { seen.append($0) }
        #expect(seen == [EpollReadiness(token: 2, events: .writable)])
        try epoll.remove(pair[0])
        #expect(try epoll.wait(timeoutMilliseconds: 0) { _ in } == 0)
        #expect(throws: GatewayError.self) { try epoll.remove(pair[0]) }
    }

    @Test func aPeerThatClosesIsReported() throws {
        let pair = try Self.socketPair()
        defer { close(pair[0]) }
        let epoll = try Epoll()
        try epoll.register(pair[0], for: [.readable, .peerClosed], token: 9)
        close(pair[1])
        var seen: EpollEvents = []
        try epoll.wait(timeoutMilliseconds: -1) { seen = $0.events }
        #expect(seen.contains(.readable))
        #expect(seen.contains(.peerClosed))
    }

    @Test func aWakerWakesAWaitFromAnotherThreadUntilReset() async throws {
        let epoll = try Epoll()
        let waker = try EventWaker()
        try epoll.register(waker.descriptor, for: .readable, token: 3)
        #expect(try epoll.wait(timeoutMilliseconds: 0) { _ in } == 0)
        let woken = Task.detached { waker.wake(); waker.wake() }
        await woken.value
        var tokens: [UInt64] = []
        try epoll.wait(timeoutMilliseconds: -1) { tokens.append($0.token) }
        #expect(tokens == [3])
        waker.reset()
        #expect(try epoll.wait(timeoutMilliseconds: 0) { _ in } == 0)
    }

    @Test func aWaitReportsAtMostItsCapacity() throws {
        let epoll = try Epoll(capacity: 2)
        let wakers = try (0..<5).map { _ in try EventWaker() }
        for (index, waker) in wakers.enumerated() {
            try epoll.register(waker.descriptor, for: .readable, token: UInt64(index))
            waker.wake()
        }
        #expect(try epoll.wait(timeoutMilliseconds: 0) { _ in } == 2)
    }
}
#endif
