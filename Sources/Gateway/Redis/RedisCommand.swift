import NIOCore

/// One Redis command: its name and arguments as binary-safe byte strings.
///
/// The command is sent as a RESP array of bulk strings (`RESPCommandEncoder`,
/// the bytes of hiredis's `redisFormatCommandArgv`), so keys and values may
/// hold any bytes, including CR, LF and NUL. The description shows the name
/// and the number of arguments only: arguments can be passwords or cached values, which must
/// not reach logs.
///
/// Commands that change the reply stream's shape (`SUBSCRIBE`, `MONITOR`,
/// `CLIENT REPLY OFF`) are not supported: every command must be answered by
/// exactly one reply, in order.
public struct RedisCommand: Sendable, Hashable {
    /// The command name followed by its arguments: the argv sent to Redis.
    /// Never empty.
    public private(set) var argv: [ByteBuffer]

    /// A command with binary arguments.
    public init(_ name: String, arguments: [ByteBuffer]) {
        var argv: [ByteBuffer] = []
        argv.reserveCapacity(arguments.count + 1)
        argv.append(ByteBuffer(string: name))
        argv.append(contentsOf: arguments)
        self.argv = argv
    }

    /// A command with text arguments, each sent as its UTF-8 bytes.
    public init(_ name: String, _ arguments: String...) {
        self.init(name, arguments: arguments.map { ByteBuffer(string: $0) })
    }

    /// A command with arguments given as byte arrays.
    public init(_ name: String, bytes arguments: [[UInt8]]) {
        self.init(name, arguments: arguments.map { ByteBuffer(bytes: $0) })
    }

    /// The command's name as given (for example `GET`).
    public var name: String { String(buffer: self.argv[0]) }

    /// The number of argument bytes, name included (not counting RESP framing).
    public var payloadSize: Int { self.argv.reduce(0) { $0 + $1.readableBytes } }
}

extension RedisCommand: CustomStringConvertible {
    /// The name and the argument count, never the arguments themselves.
    public var description: String { "\(self.name) (\(self.argv.count - 1) arguments)" }
}

extension RedisCommand {
    /// `PING`.
    public static var ping: RedisCommand { RedisCommand("PING") }

    /// `GET key`.
    public static func get(_ key: ByteBuffer) -> RedisCommand {
        RedisCommand(argv: [Self.getName, key])
    }

    /// `GET`'s name, shared by every lookup's command rather than built for each.
    private static let getName = ByteBuffer(string: "GET")

    /// A command of `argv` as given (name first).
    private init(argv: [ByteBuffer]) {
        self.argv = argv
    }

    /// `SET key value`, with `PX milliseconds` when `expiration` is given.
    ///
    /// Redis counts expirations in whole milliseconds and rejects `PX 0`, so
    /// the expiration is truncated to milliseconds and raised to at least one:
    /// a tiny (or non-positive) expiration means "almost at once", never
    /// "forever" and never an error. It is capped at 10^15 seconds.
    public static func set(_ key: ByteBuffer, _ value: ByteBuffer, expiration: Duration? = nil) -> RedisCommand {
        guard let expiration else { return RedisCommand("SET", arguments: [key, value]) }
        let (seconds, attoseconds) = expiration.components
        let cappedSeconds = max(-1, min(seconds, 1_000_000_000_000_000))
        let millis = max(1, cappedSeconds * 1000 + attoseconds / 1_000_000_000_000_000)
        return RedisCommand("SET", arguments: [key, value, ByteBuffer(string: "PX"), ByteBuffer(string: String(millis))])
    }

    /// `DEL key [key ...]`.
    public static func del(_ keys: [ByteBuffer]) -> RedisCommand {
        RedisCommand("DEL", arguments: keys)
    }

    /// `AUTH [username] password`; only ever sent by the connection handshake.
    static func auth(username: String?, password: String) -> RedisCommand {
        if let username {
            return RedisCommand("AUTH", username, password)
        }
        return RedisCommand("AUTH", password)
    }

    /// `SELECT index`.
    static func select(_ database: Int) -> RedisCommand {
        RedisCommand("SELECT", String(database))
    }
}
