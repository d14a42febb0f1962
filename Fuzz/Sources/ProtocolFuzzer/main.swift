// libFuzzer entry points for cache-gateway's decoders. Built only with
// `-sanitize=fuzzer,address` (scripts/fuzz.sh); libFuzzer provides `main`.
//
// The first byte of an input chooses what the rest is fed to (its low two
// bits) and a parameter (its high six bits):
//   0  a byte stream through FrameDecoder (the default 8 MiB limit), read in
//      chunks of `parameter` bytes (0: all at once); every frame's payload is
//      decoded as a message;
//   1  the same with a limit of 16 × (parameter + 1) bytes, so that
//      `frameTooLarge` is reached;
//   2  the stream through a real NIO pipeline (ByteToMessageHandler around
//      FrameDecoder in an EmbeddedChannel) in (parameter % 4) + 1 reads,
//      ending with EOF, so that `decodeLast` and `truncatedFrame` run too
//      (few reads: a read through a pipeline costs as much as the rest of an
//      input, and chunking itself is covered by target 0);
//   3  the bytes as one MessagePack value, through the Codable
//      MessagePackDecoder into one of several types (parameter % 7; 6 holds
//      the direct path for binaries and strings to the general one).
//
// Besides crashes, memory errors and leaks, which the sanitizers catch, every
// target checks properties that must hold for any input, and stops with a
// message when one does not: a decoded message encodes and decodes back to
// itself; the request-only decoder agrees with the general one, and so do the
// hit path's hand-written readers (LookupFrames) where they read; the frame
// decoder accounts for every byte; a decoded Codable value round-trips, and
// canonical encoding is idempotent.
//
// With CACHE_GATEWAY_FUZZ_WRITE_SEEDS=DIR the binary writes its seed corpus
// (valid messages made by the real encoders, see Seeds.swift) to DIR and exits.
import Foundation
import GatewayProtocol
import NIOCore
import NIOEmbedded

/// libFuzzer's start-up hook: writes the seeds and exits when asked to.
@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    // The work is done in a function that has returned (and released
    // everything it made) before `exit`, which LeakSanitizer would otherwise
    // take for leaks.
    if let status = Seeds.writeIfAsked() { exit(status) }
    return 0
}

/// libFuzzer's entry point: runs one input through the target its first byte picks.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let selector = data[0]
    let parameter = Int(selector >> 2)
    let input = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    switch selector & 3 {
    case 0: FrameTargets.stream(input, maxFrameSize: FrameLimits.defaultMaxFrameSize, chunk: parameter)
    case 1: FrameTargets.stream(input, maxFrameSize: 16 * (parameter + 1), chunk: 0)
    case 2: FrameTargets.pipeline(input, reads: parameter % 4 + 1)
    default: CodableTargets.decode(input, type: parameter % 7)
    }
    return 0
}

/// Stops the fuzzer with a message: an input broke a property that must hold.
func violated(_ message: String, file: StaticString = #file, line: UInt = #line) -> Never {
    fatalError("property violated: \(message)", file: file, line: line)
}

// MARK: - Frames

enum FrameTargets {
    /// Feeds `input` to a FrameDecoder `chunk` bytes at a time (0: at once) and
    /// checks every payload it yields.
    static func stream(_ input: UnsafeRawBufferPointer, maxFrameSize: Int, chunk: Int) {
        let decoder = FrameDecoder(maxFrameSize: maxFrameSize)
        var buffer = ByteBuffer()
        var consumed = 0
        var offset = 0
        let step = chunk == 0 ? max(1, input.count) : chunk
        while offset < input.count {
            let end = min(input.count, offset + step)
            buffer.writeBytes(UnsafeRawBufferPointer(rebasing: input[offset..<end]))
            offset = end
            while true {
                let before = buffer.readableBytes
                let payload: ByteBuffer?
                do {
                    payload = try decoder.readPayload(from: &buffer)
                } catch let error as GatewayError {
                    // The only error: a length above the limit, found in the first 4 bytes.
                    guard error.code == .frameTooLarge,
                          let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), Int(length) > maxFrameSize
                    else { violated("readPayload threw \(error) for \(buffer.readableBytes) readable bytes") }
                    return
                } catch {
                    violated("readPayload threw a non-GatewayError: \(error)")
                }
                guard let payload else {
                    // More bytes are needed: fewer than a prefix, or fewer than the frame.
                    if let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self), buffer.readableBytes >= 4 + Int(length) {
                        violated("a complete \(length)-byte frame was not returned")
                    }
                    break
                }
                guard payload.readableBytes <= maxFrameSize, before - buffer.readableBytes == 4 + payload.readableBytes else {
                    violated("a \(payload.readableBytes)-byte payload consumed \(before - buffer.readableBytes) bytes")
                }
                consumed += 4 + payload.readableBytes
                MessageTargets.check(payload)
            }
        }
        guard consumed + buffer.readableBytes == input.count else {
            violated("\(consumed) bytes in frames and \(buffer.readableBytes) left over from \(input.count)")
        }
    }

    /// The stream through ByteToMessageHandler(FrameDecoder) in an
    /// EmbeddedChannel, in `reads` reads of about equal size, then EOF.
    static func pipeline(_ input: UnsafeRawBufferPointer, reads: Int) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maxFrameSize: 4096)))
        var payloadBytes = 0
        var failed = false
        let step = max(1, (input.count + reads - 1) / reads)
        var offset = 0
        func drain() {
            while let payload = try? channel.readInbound(as: ByteBuffer.self) {
                payloadBytes += 4 + payload.readableBytes
                MessageTargets.check(payload)
            }
        }
        while offset < input.count, !failed {
            let end = min(input.count, offset + step)
            do {
                try channel.writeInbound(ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: input[offset..<end])))
            } catch let error as GatewayError where error.code == .frameTooLarge {
                failed = true
            } catch {
                violated("the pipeline raised \(error)")
            }
            offset = end
            drain()
        }
        // EOF: a partial frame left over is `truncatedFrame`.
        var truncated = false
        if !failed {
            channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            do {
                try channel.throwIfErrorCaught()
            } catch let error as GatewayError where error.code == .truncatedFrame {
                truncated = true
            } catch {
                violated("EOF raised \(error)")
            }
            drain()
        }
        // Always torn down: an EmbeddedChannel left open is a leak.
        _ = try? channel.finish(acceptAlreadyClosed: true)
        if !failed {
            // Every byte is in a frame, or in the truncated tail that was reported.
            guard truncated ? payloadBytes < input.count : payloadBytes == input.count else {
                violated("\(payloadBytes) of \(input.count) bytes in frames, truncation reported: \(truncated)")
            }
        }
    }
}

// MARK: - Messages

enum MessageTargets {
    /// One codec for the whole run, as a connection keeps one (its unpacking
    /// zone is reused, which is what production does).
    nonisolated(unsafe) static let codec = try! MessageCodec()
    /// The lookup reader's memo, carried across inputs.
    nonisolated(unsafe) static var memo = LookupFunctionMemo()

    /// Decodes `payload` as a message in every way the gateway and its
    /// clients do, and checks that they agree and that a message round-trips.
    static func check(_ payload: ByteBuffer) {
        let id = GatewayMessage.requestID(inPayload: payload)
        // The hit path's hand-written readers: whatever they read, the codec
        // reads the same way (they leave everything else to it).
        let fastRequest = LookupFrames.lookupRequest(payload)
        let fastReply = LookupFrames.lookupReply(payload)
        if let fast = fastRequest ?? fastReply, (try? self.codec.decode(payload: payload)) != fast {
            violated("LookupFrames read \(fast), the codec \(String(describing: try? self.codec.decode(payload: payload)))")
        }
        // The gateway reads with a memo of the last function, carried from
        // frame to frame as a connection carries it: it reads the same, and
        // what it does not read leaves the memo as it was.
        let memoBefore = self.memo
        if let (id, key) = LookupFrames.lookupRequest(payload, memo: &self.memo) {
            guard let function = self.memo.function, fastRequest == GatewayMessage(id: id, .lookup(Lookup(function: function, key: key))) else {
                violated("with a memo, lookupRequest read \(id), \(String(describing: self.memo.function)), \(key); without, \(String(describing: fastRequest))")
            }
        } else if fastRequest != nil || self.memo.generation != memoBefore.generation || self.memo.function != memoBefore.function {
            violated("with a memo, lookupRequest refused what it reads without one, or changed the memo")
        }
        if let fastReply, case .lookupReply(let reply) = fastReply.body, let value = reply.value {
            // And the hit frame writer writes what the codec writes (status 0 or 4).
            var fast = ByteBuffer()
            var expected = ByteBuffer()
            let refresh = reply.status == 4
            guard LookupFrames.appendHit(id: fastReply.id, value: value, refresh: refresh, to: &fast), (try? fastReply.encodeFrame(into: &expected)) != nil, fast == expected else {
                violated("appendHit and the codec wrote different frames for \(fastReply)")
            }
        }
        let message: GatewayMessage
        do {
            message = try self.codec.decode(payload: payload)
        } catch is GatewayError {
            if (try? self.codec.decodeRequest(payload: payload)) != nil {
                violated("decodeRequest accepted what decode refused")
            }
            if (try? GatewayMessage(payload: payload)) != nil {
                violated("GatewayMessage(payload:) accepted what the codec refused")
            }
            return
        } catch {
            violated("decode threw a non-GatewayError: \(error)")
        }
        guard id == message.id else { violated("requestID \(String(describing: id)) for a message with id \(message.id)") }
        do {
            let request = try self.codec.decodeRequest(payload: payload)
            guard message.body.type.isRequest, request == message else {
                violated("decodeRequest gave \(request) for \(message)")
            }
        } catch let error as GatewayError {
            guard !message.body.type.isRequest, error.code == .unknownMessageType else {
                violated("decodeRequest refused \(message): \(error)")
            }
        } catch {
            violated("decodeRequest threw a non-GatewayError: \(error)")
        }
        guard (try? GatewayMessage(payload: payload)) == message else {
            violated("GatewayMessage(payload:) and the codec disagree on \(message)")
        }
        // Encoded again, the message decodes to itself.
        var frame = ByteBuffer()
        do {
            try self.codec.encodeFrame(message, into: &frame)
        } catch {
            violated("a decoded message does not encode: \(error)")
        }
        guard let length = frame.readInteger(as: UInt32.self), Int(length) == frame.readableBytes else {
            violated("the re-encoded frame's prefix does not match its payload")
        }
        guard let again = try? GatewayMessage(payload: frame), again == message else {
            violated("\(message) does not survive encoding and decoding")
        }
    }
}
