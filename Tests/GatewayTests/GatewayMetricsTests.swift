import Foundation
import GatewayConnection
import GatewayProtocol
import GatewaySystem
import GatewayTestSupport
import NIOCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A scrape of a metrics endpoint: the HTTP status, the body, and the samples
/// of the Prometheus text exposition by series (`name{labels}`).
struct Scrape {
    let status: Int
    let headers: [String: String]
    let body: String

    /// The value of every sample line, keyed by the text before the value.
    var samples: [String: Double] {
        var samples: [String: Double] = [:]
        for line in self.body.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    /// The value of one series, 0 when it is absent (a series appears when first recorded).
    func value(_ series: String) -> Double { self.samples[series] ?? 0 }

    /// Sends `request` over a connected socket `fd`, reads the response until
    /// the server closes the connection, and closes `fd`.
    static func exchange(fd: Int32, request: String, timeout: Duration = .seconds(10)) throws -> Scrape {
        defer { close(fd) }
        let bytes = Array(request.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw TestFailure("send: errno \(errno)") }
            offset += written
        }
        var response: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        while true {
            let remaining = deadline - ContinuousClock.now
            guard remaining > .zero else { throw TestFailure("no complete response within \(timeout)") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000)))
            var buffer = [UInt8](repeating: 0, count: 65_536)
            let received = recv(fd, &buffer, buffer.count, 0)
            if received == 0 { break }
            if received < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw TestFailure("recv: errno \(errno)")
            }
            response += buffer[..<received]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw TestFailure("not an HTTP response: \(text)") }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.1 "), let status = Int(statusLine.dropFirst(9).prefix(3)) else {
            throw TestFailure("bad status line in \(text)")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Scrape(status: status, headers: headers, body: String(text[split.upperBound...]))
    }

    /// `request` (by default `GET /metrics`) to a TCP address `127.0.0.1:PORT`.
    static func tcp(_ address: String, request: String = "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n") throws -> Scrape {
        guard let colon = address.lastIndex(of: ":"), let port = UInt16(address[address.index(after: colon)...]) else {
            throw TestFailure("not host:port: \(address)")
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        var socketAddress = sockaddr_in()
        socketAddress.sin_family = sa_family_t(AF_INET)
        socketAddress.sin_port = port.bigEndian
        guard inet_pton(AF_INET, String(address[..<colon]), &socketAddress.sin_addr) == 1 else {
            close(fd)
            throw TestFailure("not an IPv4 address: \(address)")
        }
        let status = withUnsafePointer(to: &socketAddress) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard status == 0 else {
            close(fd)
            throw TestFailure("connect \(address): errno \(errno)")
        }
        return try self.exchange(fd: fd, request: request)
    }

    /// `GET /metrics` over the Unix socket at `path`.
    static func unixSocket(_ path: String) throws -> Scrape {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestFailure("socket: errno \(errno)") }
        let address = try UnixSocketAddress(path: path)
        let status = address.withSocketAddress { connect(fd, $0, $1) }
        guard status == 0 else {
            close(fd)
            throw TestFailure("connect \(path): errno \(errno)")
        }
        return try self.exchange(fd: fd, request: "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    }
}

extension GatewayProcess {
    /// The metrics address the gateway logged when it bound (with the port it
    /// chose for port 0); it logs it before READY=1.
    func metricsAddress() throws -> String {
        guard let range = self.log.range(of: #"metrics\.address=\S+"#, options: .regularExpression) else {
            throw TestFailure("the gateway did not log a metrics address; log:\n\(self.log)")
        }
        return String(self.log[range].dropFirst("metrics.address=".count))
    }
}

extension IntegrationTests {
    /// `serve --metrics`: a real gateway, scraped over HTTP while it serves.
    @Suite(.serialized) struct GatewayMetricsTests {
        @Test(arguments: TestBackend.allCases)
        func countersMoveWithLookupsStoresHitsAndPurges(backend: TestBackend) async throws {
            let gateway = try GatewayProcess(arguments: try backend.arguments() + ["--metrics", "127.0.0.1:0"])
            let address = try gateway.metricsAddress()
            let before = try Scrape.tcp(address)
            #expect(before.status == 200)
            #expect(before.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")

            let name = "Tests.metered(x:)"
            let function = FunctionVersion(function: name, version: "v1")
            let label = #"function="Tests.metered(x:)""#
            let key = try CacheKey(hashing: 1)
            let value = ByteBuffer(string: "forty-two")
            let connection = try await gateway.connect()
            #expect(try await connection.request(.lookup(Lookup(function: function, key: key))) == .lookupReply(.miss))
            #expect(try await connection.request(.store(Store(function: function, key: key, ttlMilliseconds: 60_000, computeMicroseconds: 12_345, value: value))) == .storeReply(stored: true))
            for _ in 0..<2 {
                #expect(try await connection.request(.lookup(Lookup(function: function, key: key))) == .lookupReply(.hit(value)))
            }
            // Another function between two lookups of this one: each is
            // counted as its own (a connection remembers its last function).
            let other = FunctionVersion(function: "Tests.other(y:)", version: "v1")
            #expect(try await connection.request(.lookup(Lookup(function: other, key: key))) == .lookupReply(.miss))
            #expect(try await connection.request(.lookup(Lookup(function: function, key: key))) == .lookupReply(.hit(value)))
            #expect(try await connection.request(.invalidate(Invalidate(function: name, version: "v1", key: key))) == .invalidateReply(deleted: 1))
            _ = try? await connection.request(.lookup(Lookup(function: FunctionVersion(function: "", version: "v1"), key: key)))

            let after = try Scrape.tcp(address)
            #expect(after.status == 200)
            func delta(_ series: String) -> Double { after.value(series) - before.value(series) }
            #expect(delta(#"cache_gateway_requests_total{type="lookup"}"#) == 5)
            #expect(delta(#"cache_gateway_requests_total{type="store"}"#) == 1)
            #expect(delta(#"cache_gateway_requests_total{type="invalidate"}"#) == 1)
            #expect(delta(#"cache_gateway_requests_total{type="hello"}"#) == 1)
            // The lookup with an empty function name does not decode.
            #expect(delta(#"cache_gateway_requests_total{type="invalid"}"#) == 1)
            #expect(delta(#"cache_gateway_errors_total{code="invalidField"}"#) == 1)
            #expect(delta("cache_gateway_hits_total{\(label)}") == 3)
            #expect(delta("cache_gateway_misses_total{\(label)}") == 1)
            #expect(delta(#"cache_gateway_hits_total{function="Tests.other(y:)"}"#) == 0)
            #expect(delta(#"cache_gateway_misses_total{function="Tests.other(y:)"}"#) == 1)
            #expect(delta("cache_gateway_stores_total{\(label)}") == 1)
            #expect(delta("cache_gateway_compute_saved_microseconds_total{\(label)}") == 3 * 12_345)
            #expect(delta("cache_gateway_purges_total{\(label)}") == 1)
            #expect(delta("cache_gateway_purged_entries_total{\(label)}") == 1)
            #expect(after.value("cache_gateway_connections") == 1)
            #expect(delta("cache_gateway_connections_accepted_total") == 1)
            // Every lookup is in the latency histogram, and took more than nothing.
            #expect(delta("cache_gateway_lookup_duration_seconds_count") == 5)
            #expect(delta(#"cache_gateway_lookup_duration_seconds_bucket{le="+Inf"}"#) == 5)
            #expect(delta("cache_gateway_lookup_duration_seconds_sum") > 0)
            if backend == .redis {
                #expect(after.value(#"cache_gateway_backend_connects_total{result="success"}"#) >= 1)
                #expect(after.value("cache_gateway_backend_connections") >= 1)
                // GET, the SET pipeline (8 commands), UNLINK and ZREM at least.
                #expect(delta("cache_gateway_redis_command_duration_seconds_count") >= 3 + 8 + 2)
            } else {
                #expect(after.value("cache_gateway_redis_command_duration_seconds_count") == 0)
            }

            await connection.close()
            let closed = await RedisTestSupport.waitUntil {
                (try? Scrape.tcp(address).value("cache_gateway_connections")) == 0
            }
            #expect(closed, "the connections gauge did not come back to 0")
            #expect(gateway.stop() == 0)
        }

        @Test func otherPathsAndMethodsAreRefusedAndAUnixSocketServesTheSameDocument() async throws {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cg-metrics-\(UInt32.random(in: 0...UInt32.max))")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let socketPath = directory.appendingPathComponent("metrics.sock").path
            let gateway = try GatewayProcess(arguments: ["--metrics", "unix:\(socketPath)"])
            let connection = try await gateway.connect()
            _ = try await connection.request(.ping)

            let scrape = try Scrape.unixSocket(socketPath)
            #expect(scrape.status == 200)
            #expect(scrape.value(#"cache_gateway_requests_total{type="ping"}"#) == 1)
            #expect(scrape.body.contains("# TYPE cache_gateway_lookup_duration_seconds histogram"))
            // The socket takes the gateway socket's mode (660 by default).
            var info = stat()
            #expect(stat(socketPath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)

            let fd = { () throws -> Int32 in
                let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
                let address = try UnixSocketAddress(path: socketPath)
                let status = address.withSocketAddress { connect(fd, $0, $1) }
                guard status == 0 else { throw TestFailure("connect: errno \(errno)") }
                return fd
            }
            #expect(try Scrape.exchange(fd: fd(), request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n").status == 404)
            #expect(try Scrape.exchange(fd: fd(), request: "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").status == 405)
            let head = try Scrape.exchange(fd: fd(), request: "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(head.status == 200 && head.body.isEmpty)
            #expect(try Scrape.exchange(fd: fd(), request: "garbage\r\n\r\n").status == 400)

            await connection.close()
            #expect(gateway.stop() == 0)
            // Stopping removes the metrics socket file, as it does the gateway's.
            #expect(!FileManager.default.fileExists(atPath: socketPath))
        }

        /// Redis is absent: lookups fail open and are counted as backend
        /// errors, every connect attempt is counted, and the connect failures
        /// are logged once per interval, not once per attempt.
        @Test func anAbsentRedisIsCountedAndItsConnectFailuresAreLoggedOncePerInterval() async throws {
            let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cg-noredis-\(UInt32.random(in: 0...UInt32.max))")
            let gateway = try GatewayProcess(arguments: ["--redis", "unix://\(directory.path)/absent.sock", "--metrics", "127.0.0.1:0"])
            let address = try gateway.metricsAddress()
            let connection = try await gateway.connect()
            let key = try CacheKey(hashing: 7)
            let function = FunctionVersion(function: "Tests.noRedis()", version: "v1")
            #expect(try await connection.request(.lookup(Lookup(function: function, key: key))) == .lookupReply(.missDoNotStore))
            #expect(try await connection.request(.store(Store(function: function, key: key, ttlMilliseconds: 1_000, computeMicroseconds: 1, value: ByteBuffer(string: "x")))) == .storeReply(stored: false))

            // Reconnects back off from 20 ms: many attempts within a couple of seconds.
            let attempted = await RedisTestSupport.waitUntil(timeout: .seconds(8)) {
                (try? Scrape.tcp(address).value(#"cache_gateway_backend_connects_total{result="failure"}"#)) ?? 0 >= 6
            }
            #expect(attempted, "fewer than 6 connect attempts were counted")
            let scrape = try Scrape.tcp(address)
            #expect(scrape.value(#"cache_gateway_backend_errors_total{operation="lookup"}"#) == 1)
            #expect(scrape.value(#"cache_gateway_backend_errors_total{operation="store"}"#) == 1)
            #expect(scrape.value("cache_gateway_stores_dropped_total") == 1)
            #expect(scrape.value(#"cache_gateway_misses_total{function="Tests.noRedis()"}"#) == 1)
            #expect(scrape.value(#"cache_gateway_backend_connects_total{result="success"}"#) == 0)
            #expect(scrape.value("cache_gateway_backend_connections") == 0)
            // The gateway ran for well under the 10 s interval: one line for all the attempts.
            let lines = gateway.log.components(separatedBy: "\n").filter { $0.contains("cannot connect to Redis") }
            #expect(lines.count == 1, "connect failures were logged \(lines.count) times:\n\(lines.joined(separator: "\n"))")
            await connection.close()
            #expect(gateway.stop() == 0)
        }
    }
}
