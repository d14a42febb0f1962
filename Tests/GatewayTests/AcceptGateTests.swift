@testable import Gateway
import Testing

/// The listener's policy when descriptors run out, without I/O.
@Suite struct AcceptGateTests {
    @Test func readsPassWhileDescriptorsLast() {
        var gate = AcceptGate()
        let r1 = gate.readRequested()
        #expect(r1)
        gate.accepted()
        gate.accepted()
        #expect(gate.open == 2)
        let r2 = gate.closed()
        #expect(!r2, "nothing to take back while accepting")
        #expect(gate.open == 1)
        let r3 = gate.readRequested()
        #expect(r3)
    }

    @Test func exhaustionLetsTheReserveGoOnceAndHoldsReadsUntilItIsBack() {
        var gate = AcceptGate()
        gate.accepted()
        let r4 = gate.descriptorsExhausted()
        #expect(r4, "the reserve goes, so that the next accept succeeds")
        #expect(gate.isPaused)
        let r5 = gate.descriptorsExhausted()
        #expect(!r5, "it is gone already")
        // The accept that the reserve made room for; reads are held from now on.
        gate.accepted()
        let r6 = gate.readRequested()
        #expect(!r6)
        // A connection closes: try to take the reserve back, which fails here.
        let r7 = gate.closed()
        #expect(r7)
        let r8 = gate.reserveTaken(false)
        #expect(!r8)
        #expect(gate.isPaused)
        #expect(gate.wantsReserve)
        // The retry takes it: the held read passes, once.
        let r9 = gate.reserveTaken(true)
        #expect(r9)
        #expect(!gate.isPaused)
        #expect(gate.holdsReserve)
        #expect(!gate.wantsReserve)
        let r10 = gate.reserveTaken(true)
        #expect(!r10, "nothing held any more")
        let r11 = gate.readRequested()
        #expect(r11)
    }

    @Test func aResumptionWithoutAHeldReadReadsNothing() {
        var gate = AcceptGate()
        _ = gate.descriptorsExhausted()
        let r12 = gate.reserveTaken(true)
        #expect(!r12)
        #expect(!gate.isPaused)
    }
}
