import GatewayProtocol
import NIOCore

/// Reads the gateway's frames from a link's socket and decodes them: lookup
/// replies (the hit path) by `LookupFrames`, everything else by `MessageCodec`.
///
/// Owned by whoever holds a link's reader role (see `GatewayLink`): one thread
/// at a time, so it needs no lock of its own. No knowledge of requests or
/// waiters; tested on its own over a socket pair (`FrameIOTests`).
final class FrameReader {
    /// The bytes read from the socket at a time (more when a frame is larger).
    static let readSize = 16 * 1024

    private var inbox: ByteBuffer
    private let decoder: MessageCodec
    private let frames = FrameDecoder(maxFrameSize: Int(UInt32.max))
    /// The messages decoded and not yet handed over.
    var messages: [GatewayMessage] = []

    /// A reader with an empty inbox.
    init() throws(GatewayError) {
        do {
            self.decoder = try MessageCodec()
        } catch {
            throw (error as? GatewayError) ?? GatewayError(.libraryFailure, "\(error)")
        }
        // Assigned whole, not reserved in place (see `read` for why).
        self.inbox = ByteBufferAllocator().buffer(capacity: Self.readSize)
    }

    /// Reads what has arrived on `fd` (with `waiting`, first waiting up to
    /// `UnixSocket.receiveSlice` for it) and decodes the complete frames into
    /// `messages`; returns whether anything arrived and the error that ends
    /// the connection, if any.
    func read(from fd: Int32, waiting: Bool = false) -> (received: Bool, error: GatewayError?) {
        // The buffer is worked on as a local and put back at the end, so that
        // no access to the stored property spans a call (here, the receive and
        // the frame decoder). One that did would make the compiler check every
        // access to the property at run time (exclusivity enforcement, a
        // thread-local lookup each time); in a profile of the synchronous
        // hit loop, such checks were 8% of the client's own time.
        var inbox = self.inbox
        self.inbox = ByteBuffer()
        defer { self.inbox = inbox }
        var messages = self.messages
        self.messages = []
        defer { self.messages = messages }
        if inbox.readableBytes == 0 {
            // Reuses the storage, unless a reply handed out earlier still
            // refers to it (then it takes a fresh one; nothing is copied).
            inbox.clear()
        }
        var receivedAny = false
        do {
            var more = true
            // Only the first receive may wait; the rest take what is there.
            var wait = waiting
            while more {
                let received = try inbox.writeWithUnsafeMutableBytes(minimumWritableBytes: Self.readSize) { (buffer) throws(GatewayError) in
                    try UnixSocket.receive(fd, into: buffer, waiting: wait) ?? 0
                }
                wait = false
                receivedAny = receivedAny || received > 0
                // A full buffer may mean that more is waiting.
                more = received > 0 && inbox.writableBytes == 0
                while let payload = try self.frames.readPayload(from: &inbox) {
                    messages.append(try LookupFrames.lookupReply(payload) ?? self.decoder.decode(payload: payload))
                }
            }
            if inbox.readableBytes > 0 && inbox.readerIndex > Self.readSize {
                inbox.discardReadBytes()
            }
            return (receivedAny, nil)
        } catch let error as GatewayError {
            return (receivedAny, error)
        } catch {
            return (receivedAny, GatewayError(.malformedMessage, "the gateway sent an unreadable frame: \(error)"))
        }
    }
}
