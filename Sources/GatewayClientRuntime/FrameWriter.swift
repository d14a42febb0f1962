import GatewayProtocol
import NIOCore

/// Frames a link's requests and writes them on its socket: request ids, the
/// `register` frame before the first request that names a function version,
/// and the bytes the socket did not take yet (`outbox`).
///
/// Guarded by the link's lock (see `GatewayLink`): ids, the registered set and
/// the byte stream change together, so frames are never reordered or
/// interleaved. No knowledge of waiters; tested on its own over a socket
/// pair (`FrameIOTests`).
final class FrameWriter {
    /// A request to write.
    enum Outgoing {
        /// A lookup of `key` for the call site, framed by `LookupFrames`;
        /// `refresh` announces that the caller can refresh the entry.
        case lookup(CallSite, CacheKey, refresh: Bool = false)
        /// Any other message, framed by `MessageCodec`, after registering
        /// the call site's version when given and not yet registered here.
        case message(GatewayMessage.Body, registering: CallSite?)
    }

    private var nextID: UInt64 = 0
    /// The function versions registered on this connection, by identity
    /// (held, so that an identity is not reused while it is here).
    private var registered: [ObjectIdentifier: CallSite] = [:]
    /// Past this many, `registered` starts afresh (registering again is
    /// harmless: the gateway counts a version once per connection).
    private static let registeredLimit = 4_096
    /// Bytes written after the socket stopped taking them, oldest first.
    private var outbox = ByteBuffer()
    private var scratch: ByteBuffer
    private let encoder: MessageCodec

    /// A writer that has written nothing.
    init() throws(GatewayError) {
        do {
            self.encoder = try MessageCodec()
        } catch {
            throw (error as? GatewayError) ?? GatewayError(.libraryFailure, "\(error)")
        }
        // Assigned whole, not reserved in place (see `FrameReader.read` for why).
        self.scratch = ByteBufferAllocator().buffer(capacity: 256)
    }

    /// Whether bytes wait in `outbox` for the socket.
    var hasPendingBytes: Bool { self.outbox.readableBytes > 0 }

    /// Frames `outgoing` (after a `register` frame for its call site's
    /// version if needed) and writes it on `fd`; returns its request id and
    /// whether bytes now wait in `outbox`. It throws the encoder's error
    /// (nothing written) or the socket's (the connection is then unusable).
    func write(_ outgoing: Outgoing, to fd: Int32) throws(GatewayError) -> (id: UInt64, leftBytes: Bool) {
        let site: CallSite?
        switch outgoing {
        case .lookup(let lookupSite, _, _): site = lookupSite
        case .message(_, let registering): site = registering
        }
        // Worked on as a local and put back (see `FrameReader.read` for why).
        var scratch = self.scratch
        self.scratch = ByteBuffer()
        defer { self.scratch = scratch }
        scratch.clear()
        let needsRegister = site.map { !self.isRegistered($0) } ?? false
        var id = self.takeID()
        do {
            if needsRegister, let site {
                try self.encoder.encodeFrame(GatewayMessage(id: id, .register(site.function)), into: &scratch)
                id = self.takeID()
            }
            switch outgoing {
            case .lookup(let lookupSite, let key, let refresh):
                LookupFrames.appendLookup(id: id, fields: lookupSite.fields, key: key, refresh: refresh, to: &scratch)
            case .message(let body, _):
                try self.encoder.encodeFrame(GatewayMessage(id: id, body), into: &scratch)
            }
        } catch {
            throw (error as? GatewayError) ?? GatewayError(.unencodable, "\(error)")
        }
        let leftBytes = try self.send(&scratch, to: fd)
        if needsRegister, let site {
            // Changed as a local and put back (see `FrameReader.read` for why).
            var registered = self.registered
            self.registered = [:]
            if registered.count >= Self.registeredLimit { registered.removeAll() }
            registered[ObjectIdentifier(site)] = site
            self.registered = registered
        }
        // A large store leaves the scratch buffer large: let it go.
        if scratch.capacity > 64 * 1024 { scratch = ByteBuffer() }
        return (id, leftBytes)
    }

    /// The next request id (never 0, which is reserved).
    private func takeID() -> UInt64 {
        self.nextID &+= 1
        if self.nextID == 0 { self.nextID = 1 }
        return self.nextID
    }

    /// Whether `site`'s version was registered on this connection.
    private func isRegistered(_ site: CallSite) -> Bool {
        // Loaded, then looked up: the lookup's hashing is a call, and an
        // access spanning it would be checked at run time (see `FrameReader.read`).
        // The copy ends here, so a later change of the set does not copy it.
        let registered = self.registered
        return registered[ObjectIdentifier(site)] != nil
    }

    /// Writes `frames` after whatever `outbox` holds; what the socket does not
    /// take waits in `outbox`. Returns whether bytes wait there.
    private func send(_ frames: inout ByteBuffer, to fd: Int32) throws(GatewayError) -> Bool {
        if self.outbox.readableBytes > 0 {
            self.outbox.writeBuffer(&frames)
            try self.flush(to: fd)
            return self.outbox.readableBytes > 0
        }
        let sent = try frames.withUnsafeReadableBytes { (bytes) throws(GatewayError) in try UnixSocket.send(fd, bytes) }
        frames.moveReaderIndex(forwardBy: sent)
        if frames.readableBytes > 0 {
            self.outbox.writeBuffer(&frames)
            return true
        }
        return false
    }

    /// Writes what `outbox` holds on `fd`, as far as the socket takes it.
    func flush(to fd: Int32) throws(GatewayError) {
        // Worked on as a local and put back (see `FrameReader.read` for why).
        var outbox = self.outbox
        self.outbox = ByteBuffer()
        let sent = try outbox.withUnsafeReadableBytes { (bytes) throws(GatewayError) in try UnixSocket.send(fd, bytes) }
        outbox.moveReaderIndex(forwardBy: sent)
        // Emptied, it lets its storage go.
        if outbox.readableBytes > 0 { self.outbox = outbox }
    }

    /// Drops the bytes waiting in `outbox` (the connection failed).
    func discardPendingBytes() {
        self.outbox = ByteBuffer()
    }
}
