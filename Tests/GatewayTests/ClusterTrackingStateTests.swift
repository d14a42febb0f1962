@testable import Gateway
import Testing

/// `ClusterTrackingState` and `ClusterSlotMap.hasSameOwners`: when the
/// near-cache on a Redis Cluster may fill, without I/O.
struct ClusterTrackingStateTests {
    typealias State = ClusterTrackingState<String, Int>

    /// Masters a and b, each with connections (a: 1, 2; b: 3), all tracked.
    static func complete() -> State {
        var state = State()
        _ = state.mastersChanged(["a", "b"])
        for (node, connection) in [("a", 1), ("a", 2), ("b", 3)] { _ = state.connectionOpened(node: node, connection) }
        for action in state.listenerSubscribed(node: "a", id: 10) + state.listenerSubscribed(node: "b", id: 20) {
            guard case .enableTracking(let node, let connection, let redirect) = action else { continue }
            state.trackingEnabled(node: node, connection, redirect: redirect)
        }
        return state
    }

    @Test func eachConnectionRedirectsToItsOwnNodesListenerAndFillsWaitForEveryMaster() {
        var state = State()
        let (added, removed) = state.mastersChanged(["a", "b"])
        #expect(Set(added) == ["a", "b"] && removed.isEmpty)
        #expect(state.connectionOpened(node: "a", 1) == ([], false), "no listener yet: nothing to send")
        _ = state.connectionOpened(node: "b", 3)
        #expect(state.listenerSubscribed(node: "a", id: 10) == [.enableTracking("a", 1, redirect: 10)])
        state.trackingEnabled(node: "a", 1, redirect: 10)
        #expect(!state.isComplete, "b's listener is not subscribed yet")
        #expect(state.listenerSubscribed(node: "b", id: 20) == [.enableTracking("b", 3, redirect: 20)])
        // A confirmation naming another node's listener does not count.
        state.trackingEnabled(node: "b", 3, redirect: 10)
        #expect(!state.isComplete)
        state.trackingEnabled(node: "b", 3, redirect: 20)
        #expect(state.isComplete)
        #expect(state.listenerIDs == ["a": 10, "b": 20])
        // A new connection to b enables tracking to b's listener, and fills wait for it.
        #expect(state.connectionOpened(node: "b", 4) == ([.enableTracking("b", 4, redirect: 20)], false))
        #expect(!state.isComplete)
        state.trackingEnabled(node: "b", 4, redirect: 20)
        #expect(state.isComplete)
    }

    @Test func oneNodesListenerLostOrConnectionRefusedStopsFillsUntilThatNodeTracksAgain() {
        var state = Self.complete()
        #expect(state.isComplete)
        state.listenerLost(node: "b")
        #expect(!state.isComplete)
        #expect(state.listenerSubscribed(node: "b", id: 21) == [.enableTracking("b", 3, redirect: 21)])
        #expect(!state.isComplete)
        state.trackingFailed(node: "b", 3, redirect: 21)
        #expect(!state.isComplete, "refused: b stays off until the connection is replaced")
        #expect(state.connectionClosed(node: "b", 3) == false, "a master is kept")
        #expect(!state.isComplete, "a master without a connection does not track")
        #expect(state.connectionOpened(node: "b", 5) == ([.enableTracking("b", 5, redirect: 21)], false))
        state.trackingEnabled(node: "b", 5, redirect: 21)
        #expect(state.isComplete)
    }

    @Test func aNewMasterMustTrackBeforeFillsResumeAndAFormerOneIsForgottenOnceItsConnectionsClose() {
        var state = Self.complete()
        // A failover: b's replica c is promoted; b's pool still has its connection.
        let (added, removed) = state.mastersChanged(["a", "c"])
        #expect(added == ["c"] && removed.isEmpty)
        #expect(!state.isComplete, "c has no listener nor connection yet")
        _ = state.connectionOpened(node: "c", 6)
        for action in state.listenerSubscribed(node: "c", id: 30) {
            guard case .enableTracking(let node, let connection, let redirect) = action else { continue }
            state.trackingEnabled(node: node, connection, redirect: redirect)
        }
        #expect(state.isComplete, "b's connection still tracks, to b's listener")
        state.listenerLost(node: "b")
        #expect(!state.isComplete, "b is still known while a connection to it is open")
        #expect(state.connectionClosed(node: "b", 3) == true, "b is forgotten: its listener stops")
        #expect(!state.knows("b"))
        #expect(state.isComplete)
        // An ASK target outside the map gets a listener of its own before fills resume.
        #expect(state.connectionOpened(node: "d", 7) == ([], true))
        #expect(!state.isComplete)
        #expect(state.connectionClosed(node: "d", 7) == true)
        #expect(state.isComplete)
        // No master at all: no fills (a and c are kept while connected).
        #expect(state.mastersChanged([String]()).removed.isEmpty)
        #expect(!state.isComplete)
    }

    @Test func slotMapsCompareByEachSlotsMasterOnly() {
        var one = ClusterSlotMap()
        var two = ClusterSlotMap()
        // The same owners, the masters learned in another order.
        one.move(ClusterSlot(1), to: .tcp(host: "a", port: 1))
        one.move(ClusterSlot(2), to: .tcp(host: "b", port: 2))
        two.move(ClusterSlot(2), to: .tcp(host: "b", port: 2))
        two.move(ClusterSlot(1), to: .tcp(host: "a", port: 1))
        #expect(one.hasSameOwners(as: two))
        two.move(ClusterSlot(1), to: .tcp(host: "b", port: 2))
        #expect(!one.hasSameOwners(as: two))
        #expect(!one.hasSameOwners(as: ClusterSlotMap()))
    }
}
