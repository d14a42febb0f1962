import NIOCore

/// What a `WorkerSession` needs from the connection under it: writing,
/// pausing reads, closing, and the event loop that everything runs on.
///
/// A transport delivers the connection's events to its session (`activate`,
/// `receive` for each frame's payload, `readComplete` after the frames of
/// one read, `writabilityChanged`, `transportFailed`, `deactivate`), all on
/// `eventLoop`, and its methods are called on `eventLoop` only.
protocol WorkerTransport: AnyObject {
    /// The loop that the connection's events, its session and the futures
    /// the session waits on run on.
    var eventLoop: any EventLoop { get }
    /// Whether the connection is open.
    var isActive: Bool { get }
    /// Whether the peer takes its replies: false while more than the
    /// high-water mark of written bytes waits to be sent.
    var isWritable: Bool { get }
    /// An empty buffer of at least `capacity` bytes for a reply.
    func makeBuffer(capacity: Int) -> ByteBuffer
    /// Queues `buffer`, to be sent by the next `flush` at the latest.
    func write(_ buffer: ByteBuffer)
    /// Sends everything queued.
    func flush()
    /// Queues `buffer` and sends everything queued.
    func writeAndFlush(_ buffer: ByteBuffer)
    /// Sends everything queued and then `buffer`, and closes the connection
    /// once they are written (or could not be).
    func writeThenClose(_ buffer: ByteBuffer)
    /// Stops reading from the peer.
    func pauseReading()
    /// Reads from the peer again.
    func resumeReading()
    /// Closes the connection; anything not yet sent is dropped.
    func close()
}
