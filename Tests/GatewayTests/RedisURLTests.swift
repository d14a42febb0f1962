import GatewayProtocol
import Testing

@testable import Gateway

@Suite("Redis URLs")
struct RedisURLTests {
    @Test(
        "valid URLs",
        arguments: [
            ("redis://localhost", RedisURL(endpoint: .tcp(host: "localhost", port: 6379))),
            ("redis://localhost:6380", RedisURL(endpoint: .tcp(host: "localhost", port: 6380))),
            ("REDIS://Cache.Example.com:1/", RedisURL(endpoint: .tcp(host: "Cache.Example.com", port: 1))),
            ("redis://10.0.0.1:6379/15", RedisURL(endpoint: .tcp(host: "10.0.0.1", port: 6379), database: 15)),
            ("redis://[::1]:7000/2", RedisURL(endpoint: .tcp(host: "::1", port: 7000), database: 2)),
            ("redis://[fe80::1]", RedisURL(endpoint: .tcp(host: "fe80::1", port: 6379))),
            ("redis://:secret@host", RedisURL(endpoint: .tcp(host: "host", port: 6379), password: "secret")),
            (
                "redis://app:s3cr%40t%3A%2F%25@redis.internal:6390/3",
                RedisURL(endpoint: .tcp(host: "redis.internal", port: 6390), username: "app", password: "s3cr@t:/%", database: 3)
            ),
            ("redis://:p@ss@host", RedisURL(endpoint: .tcp(host: "host", port: 6379), password: "p@ss")),
            ("redis://app:@host", RedisURL(endpoint: .tcp(host: "host", port: 6379), username: "app", password: "")),
            ("redis://:%C3%A9t%C3%A9@h", RedisURL(endpoint: .tcp(host: "h", port: 6379), password: "été")),
            ("unix:///run/redis/redis.sock", RedisURL(endpoint: .unixSocket(path: "/run/redis/redis.sock"))),
            ("unix:///tmp/r.sock?db=4", RedisURL(endpoint: .unixSocket(path: "/tmp/r.sock"), database: 4)),
            ("unix:///tmp/my%20dir/r.sock", RedisURL(endpoint: .unixSocket(path: "/tmp/my dir/r.sock"))),
            (
                "unix://app:pa%26ss@/tmp/r.sock?db=2",
                RedisURL(endpoint: .unixSocket(path: "/tmp/r.sock"), username: "app", password: "pa&ss", database: 2)
            ),
            ("unix://:pw@/tmp/r.sock", RedisURL(endpoint: .unixSocket(path: "/tmp/r.sock"), password: "pw")),
            ("rediss://cache.example.com", RedisURL(endpoint: .tcp(host: "cache.example.com", port: 6379), tls: RedisTLS())),
            ("REDISS://app:pw@10.0.0.1:6380/2", RedisURL(endpoint: .tcp(host: "10.0.0.1", port: 6380), username: "app", password: "pw", database: 2, tls: RedisTLS())),
        ]
    )
    func parses(text: String, expected: RedisURL) throws {
        #expect(try RedisURL(text) == expected)
    }

    @Test(
        "invalid URLs",
        arguments: [
            ("", "no scheme"),
            ("localhost:6379", "no scheme"),
            ("http://localhost", "scheme 'http'"),
            ("rediss://localhost?db=1", "no query"),
            ("rediss://", "no host"),
            ("redis+cluster://h:1", "scheme 'redis+cluster'"),
            ("redis://", "no host"),
            ("redis://:6379", "no host"),
            ("redis://host:0", "port '0'"),
            ("redis://host:65536", "port '65536'"),
            ("redis://host:", "port ''"),
            ("redis://host:63x9", "port '63x9'"),
            ("redis://host:+80", "port '+80'"),
            ("redis://host/abc", "database 'abc'"),
            ("redis://host/-1", "database '-1'"),
            ("redis://host/1/2", "database '1/2'"),
            ("redis://host/99999999999", "database"),
            ("redis://host?db=1", "no query"),
            ("redis://host#frag", "fragments"),
            ("redis://ho st", "character"),
            ("redis://h\u{7}st", "character"),
            ("redis://host_name!", "valid host"),
            ("redis://::1:6379", "brackets"),
            ("redis://[::1", "closing"),
            ("redis://[::1]x", "after the IPv6"),
            ("redis://[zz]", "not an IPv6"),
            ("redis://user@host", "ambiguous"),
            ("redis://:@host", "empty password"),
            ("redis://:pw%2@host", "percent"),
            ("redis://:pw%zz@host", "percent"),
            ("redis://:%FF@host", "UTF-8"),
            ("unix://", "no socket path"),
            ("unix://localhost/tmp/r.sock", "no host"),
            ("unix:///", "does not name a file"),
            ("unix:///tmp/dir/", "does not name a file"),
            ("unix:///tmp/r.sock?db=x", "database 'x'"),
            ("unix:///tmp/r.sock?db=1&db=2", "twice"),
            ("unix:///tmp/r.sock?password=x", "credentials go before the path"),
            ("unix:///tmp/r.sock?timeout=1", "'timeout=1'"),
            ("unix:///tmp/r.sock?db", "'db'"),
            ("unix:///tmp/r%00.sock", "NUL"),
            ("unix:///" + String(repeating: "a", count: 120), "bytes long"),
            ("unix://user@/tmp/r.sock", "ambiguous"),
        ]
    )
    func refuses(text: String, reason: String) {
        let error = #expect(throws: GatewayError.self) { try RedisURL(text) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains(reason) == true, "\(error?.message ?? "") should mention \(reason)")
    }

    @Test func errorsAndDescriptionsNeverShowThePassword() throws {
        let error = #expect(throws: GatewayError.self) { try RedisURL("redis://app:hunter2@host:99999") }
        #expect(error?.message.contains("hunter2") == false)
        #expect(error?.message.contains("***") == true)

        let url = try RedisURL("redis://my%20app:hunter2@host:6380/2")
        #expect(url.description == "redis://my%20app:***@host:6380/2")
        #expect(try RedisURL("redis://:hunter2@[::1]").description == "redis://:***@[::1]:6379/0")
        #expect(try RedisURL("unix://:hunter2@/tmp/r.sock?db=3").description == "unix://:***@/tmp/r.sock?db=3")
        #expect(try RedisURL("unix:///tmp/r.sock").description == "unix:///tmp/r.sock")
        #expect(try RedisURL("rediss://app:hunter2@h:6380").description == "rediss://app:***@h:6380/0")
        let unixError = #expect(throws: GatewayError.self) { try RedisURL("unix://u:hunter2@/tmp/r.sock?db=z") }
        #expect(unixError?.message.contains("hunter2") == false)
    }

    @Test func descriptionRoundTrips() throws {
        for text in ["redis://h:1/0", "redis://[::1]:6379/5", "unix:///tmp/r.sock", "unix:///tmp/r.sock?db=9", "rediss://h:6380/1"] {
            #expect(try RedisURL(text).description == text)
        }
    }
}
