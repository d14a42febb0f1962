@testable import Gateway
import GatewayProtocol
import NIOCore
import Testing

/// The frame reader's rules, without I/O or a clock: what is delivered, what
/// waits, and what the frame timer does.
@Suite struct FrameAssemblerTests {
    let start = NIODeadline.uptimeNanoseconds(1_000_000_000)
    let timeout = TimeAmount.milliseconds(500)

    static func frame(_ payload: [UInt8]) -> [UInt8] {
        withUnsafeBytes(of: UInt32(payload.count).bigEndian) { Array($0) } + payload
    }

    /// One read: the payloads delivered and the timer action.
    static func read(_ assembler: inout FrameAssembler, _ bytes: [UInt8], open: Bool = true) throws -> ([[UInt8]], FrameAssembler.TimerAction) {
        var input = assembler.take(ByteBuffer(bytes: bytes))
        var payloads: [[UInt8]] = []
        while let payload = try assembler.nextPayload(from: &input) { payloads.append(Array(payload.readableBytesView)) }
        return (payloads, assembler.keep(input, completedAFrame: !payloads.isEmpty, isOpen: open))
    }

    @Test func wholeFramesAreDeliveredAndStopTheTimer() throws {
        var assembler = FrameAssembler(maxFrameSize: 1_024)
        let (payloads, action) = try Self.read(&assembler, Self.frame([1, 2]) + Self.frame([3]))
        #expect(payloads == [[1, 2], [3]])
        #expect(action == .stop)
    }

    @Test func aFrameSplitAcrossReadsKeepsItsTimerAndANewOneRestartsIt() throws {
        var assembler = FrameAssembler(maxFrameSize: 1_024)
        let whole = Self.frame([9, 8, 7, 6])
        var (payloads, action) = try Self.read(&assembler, Array(whole.prefix(3)))
        #expect(payloads.isEmpty && action == .keep)
        (payloads, action) = try Self.read(&assembler, Array(whole[3..<6]))
        #expect(payloads.isEmpty && action == .keep)
        // The rest, and the start of the next frame: a new frame, a new timer.
        (payloads, action) = try Self.read(&assembler, Array(whole[6...]) + [0, 0])
        #expect(payloads == [[9, 8, 7, 6]] && action == .restart)
        (payloads, action) = try Self.read(&assembler, [0, 1, 5])
        #expect(payloads == [[5]] && action == .stop)
    }

    @Test func whatIsLeftIsDroppedWhenTheConnectionClosed() throws {
        var assembler = FrameAssembler(maxFrameSize: 1_024)
        let (_, action) = try Self.read(&assembler, [0, 0, 0, 9, 1], open: false)
        #expect(action == .stop)
        #expect(assembler.deadlinePassed(armedAt: self.start, now: self.start + self.timeout, timeout: self.timeout, reading: ReadingState()) == .nothing)
    }

    @Test func aFrameTooLargeFailsTheAssemblerForGood() throws {
        var assembler = FrameAssembler(maxFrameSize: 16)
        #expect(throws: GatewayError.self) { try Self.read(&assembler, [0, 0, 1, 0]) }
        #expect(assembler.failed)
        let (payloads, action) = try Self.read(&assembler, Self.frame([1]))
        #expect(payloads.isEmpty && action == .stop)
    }

    @Test func anIncompleteFrameExpiresUnlessTheGatewayHeldItBack() throws {
        let reading = ReadingState()
        var assembler = FrameAssembler(maxFrameSize: 1_024)
        _ = try Self.read(&assembler, [0, 0, 0, 9, 1])
        // Reading paused by the gateway: a whole timeout more.
        reading.pause()
        #expect(assembler.deadlinePassed(armedAt: self.start, now: self.start + self.timeout, timeout: self.timeout, reading: reading) == .wait(self.timeout))
        // Resumed after the timer was armed: a whole timeout from the resumption.
        reading.resume(at: self.start + .milliseconds(800))
        #expect(assembler.deadlinePassed(armedAt: self.start, now: self.start + .milliseconds(1_000), timeout: self.timeout, reading: reading) == .wait(.milliseconds(300)))
        #expect(assembler.deadlinePassed(armedAt: self.start, now: self.start + .milliseconds(1_300), timeout: self.timeout, reading: reading) == .expired)
        #expect(assembler.failed)
        #expect(assembler.deadlinePassed(armedAt: self.start, now: self.start + .seconds(9), timeout: self.timeout, reading: reading) == .nothing)
    }
}
