@testable import Gateway
import Testing

/// The listener's policy when descriptors run out, without I/O.
@Suite struct AcceptGateTests {
    @Test func readsPassWhileDescriptorsLast() {
        var gate = AcceptGate()
        var passes = gate.readRequested()
        #expect(passes)
        gate.accepted()
        gate.accepted()
        #expect(gate.open == 2)
        let takeReserve = gate.closed()
        #expect(!takeReserve, "nothing to take back while accepting")
        #expect(gate.open == 1)
        passes = gate.readRequested()
        #expect(passes)
    }

    @Test func exhaustionLetsTheReserveGoOnceAndHoldsReadsUntilItIsBack() {
        var gate = AcceptGate()
        gate.accepted()
        var letGo = gate.descriptorsExhausted()
        #expect(letGo, "the reserve goes, so that the next accept succeeds")
        #expect(gate.isPaused)
        letGo = gate.descriptorsExhausted()
        #expect(!letGo, "it is gone already")
        // The accept that the reserve made room for; reads are held from now on.
        gate.accepted()
        var passes = gate.readRequested()
        #expect(!passes)
        // A connection closes: try to take the reserve back, which fails here.
        let takeReserve = gate.closed()
        #expect(takeReserve)
        var readNow = gate.reserveTaken(false)
        #expect(!readNow)
        #expect(gate.isPaused)
        #expect(gate.wantsReserve)
        // The retry takes it: the held read passes, once.
        readNow = gate.reserveTaken(true)
        #expect(readNow)
        #expect(!gate.isPaused)
        #expect(gate.holdsReserve)
        #expect(!gate.wantsReserve)
        readNow = gate.reserveTaken(true)
        #expect(!readNow, "nothing held any more")
        passes = gate.readRequested()
        #expect(passes)
    }

    @Test func aResumptionWithoutAHeldReadReadsNothing() {
        var gate = AcceptGate()
        _ = gate.descriptorsExhausted()
        let readNow = gate.reserveTaken(true)
        #expect(!readNow)
        #expect(!gate.isPaused)
    }
}
