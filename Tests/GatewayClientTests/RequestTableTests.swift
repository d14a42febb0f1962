@testable import GatewayClientRuntime
import GatewayProtocol
import NIOCore
import Testing

/// The request table hands replies to their waiters, fails requests past
/// their deadline, and drops replies nobody awaits, without any I/O.
@Suite struct RequestTableTests {
    static func reply(_ id: UInt64) -> GatewayMessage {
        GatewayMessage(id: id, .pong)
    }

    @Test func aCallersReplyWaitsForItAndABlockedThreadIsWoken() {
        let table = RequestTable()
        let now = NIODeadline.now()
        let thread = BlockedThread()
        table.insert(1, PendingRequest(waiter: .caller, deadline: now + .seconds(10)))
        table.insert(2, PendingRequest(waiter: .thread(thread), deadline: now + .seconds(10)))
        let completions = table.dispatch([Self.reply(2), Self.reply(1), Self.reply(99)], now: now)
        #expect(completions.count == 1, "the thread; the caller reads its own reply")
        #expect(table.count == 1)
        guard case .arrived(.success(let message)) = table[1]?.waiter else {
            Issue.record("the caller's reply did not arrive")
            return
        }
        #expect(message.id == 1)
        for completion in completions { completion.run() }
        thread.semaphore.wait()
        #expect((try? thread.reply?.get())?.id == 2)
    }

    @Test func requestsPastTheirDeadlineFailWithATimeout() {
        let table = RequestTable()
        let now = NIODeadline.now()
        table.insert(1, PendingRequest(waiter: .caller, deadline: now - .milliseconds(1)))
        table.insert(2, PendingRequest(waiter: .caller, deadline: now + .seconds(10)))
        #expect(table.earliestUnansweredDeadline() == now - .milliseconds(1))
        #expect(table.earliestDeadline(before: now + .seconds(1)) == now - .milliseconds(1))
        _ = table.dispatch([], now: now)
        guard case .arrived(.failure(let error)) = table[1]?.waiter else {
            Issue.record("the late request did not fail")
            return
        }
        #expect(error.code == .timeout)
        if case .caller = table[2]?.waiter {} else { Issue.record("the other request changed") }
        #expect(table.earliestUnansweredDeadline() == now + .seconds(10), "an arrived reply needs no reading")
    }

    @Test func aConnectionLevelErrorFailsEveryRequest() {
        let table = RequestTable()
        let now = NIODeadline.now()
        table.insert(1, PendingRequest(waiter: .caller, deadline: now + .seconds(10)))
        table.insert(2, PendingRequest(waiter: .caller, deadline: now + .seconds(10)))
        _ = table.dispatch([GatewayMessage(id: 0, .error(ErrorReply(code: .malformedFrame, message: "frame too large")))], now: now)
        for id: UInt64 in [1, 2] {
            guard case .arrived(.failure(let error)) = table[id]?.waiter else {
                Issue.record("request \(id) did not fail")
                continue
            }
            #expect(error.code == .remote)
        }
    }
}
