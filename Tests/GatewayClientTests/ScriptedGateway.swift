import Foundation
import GatewayProtocol
import GatewaySystem
import GatewayTestSupport
import NIOConcurrencyHelpers
import NIOCore
#if canImport(Glibc)
import Glibc
#endif

/// A stand-in for the gateway that records every frame the client writes, in
/// the order it arrives, and answers as its script says.
///
/// The client's tests use it where a real gateway cannot show what is being
/// checked: the exact order of the frames on the wire, or replies held back
/// and sent in an order chosen by the test. Everything else is tested against
/// a real gateway process.
final class ScriptedGateway: @unchecked Sendable {
    /// What to do with the requests read so far: return the replies to send
    /// now (in this order), or nothing to wait for more requests.
    typealias Script = @Sendable (_ unanswered: [GatewayMessage]) -> [GatewayMessage]?

    let socketPath: String
    private let directory: String
    private let listener: Int32
    private let script: Script
    private let received = NIOLockedValueBox<[GatewayMessage]>([])
    private let done = DispatchSemaphore(value: 0)

    /// Listens on a fresh socket and serves one connection on a thread of its own.
    init(script: @escaping Script) throws {
        self.directory = NSTemporaryDirectory() + "cg-scripted-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true)
        self.socketPath = self.directory + "/gateway.sock"
        self.script = script
        self.listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        let address = try UnixSocketAddress(path: self.socketPath)
        let bound = address.withSocketAddress { bind(self.listener, $0, $1) }
        guard bound == 0, listen(self.listener, 4) == 0 else { throw TestFailure("cannot listen on \(self.socketPath): errno \(errno)") }
        Thread { self.serve() }.start()
    }

    deinit {
        close(self.listener)
        try? FileManager.default.removeItem(atPath: self.directory)
    }

    /// Every request read so far, in the order the client wrote them.
    var requests: [GatewayMessage] { self.received.withLockedValue { $0 } }

    /// Waits until the client has closed its connection.
    func waitUntilClosed(timeout: Duration = .seconds(10)) -> Bool {
        self.done.wait(timeout: .now() + .milliseconds(Int(timeout.components.seconds * 1000))) == .success
    }

    /// Answers hello, and everything else as `script` says.
    private func serve() {
        defer { self.done.signal() }
        let fd = accept(self.listener, nil, nil)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var inbox = ByteBuffer()
        var unanswered: [GatewayMessage] = []
        let frames = FrameDecoder()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return }
            inbox.writeBytes(chunk[..<count])
            var replies: [GatewayMessage] = []
            while let payload = try? frames.readPayload(from: &inbox), let message = try? GatewayMessage(payload: payload) {
                self.received.withLockedValue { $0.append(message) }
                if case .hello = message.body {
                    replies.append(GatewayMessage(id: message.id, .helloReply(HelloReply(protocolVersion: 1, gatewayVersion: "scripted", maxFrameSize: 1 << 20, maxValueSize: 1 << 19))))
                } else {
                    unanswered.append(message)
                    if let answers = self.script(unanswered) {
                        replies += answers
                        unanswered = []
                    }
                }
            }
            var out = ByteBuffer()
            for reply in replies { try? reply.encodeFrame(into: &out) }
            let bytes = Array(out.readableBytesView)
            var offset = 0
            while offset < bytes.count {
                let sent = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard sent > 0 else { return }
                offset += sent
            }
        }
    }

    /// The usual answer to each request: register acknowledged, lookups miss, stores stored, ping pong.
    static func answer(_ request: GatewayMessage) -> GatewayMessage {
        switch request.body {
        case .register: GatewayMessage(id: request.id, .registerReply)
        case .lookup: GatewayMessage(id: request.id, .lookupReply(.miss))
        case .store: GatewayMessage(id: request.id, .storeReply(stored: true))
        case .ping: GatewayMessage(id: request.id, .pong)
        default: GatewayMessage(id: request.id, .error(ErrorReply(code: .unknownMessageType, message: "not scripted")))
        }
    }
}
