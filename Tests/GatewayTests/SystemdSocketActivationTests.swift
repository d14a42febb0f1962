import Foundation
@testable import Gateway
import GatewayProtocol
import GatewaySystem
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The checks on a socket passed by systemd, on real sockets of this process.
@Suite struct SystemdSocketActivationTests {
    /// A Unix stream socket bound to a fresh path; listening when asked.
    private static func unixSocket(listening: Bool) throws -> (fd: Int32, path: String) {
        let path = NSTemporaryDirectory() + "cg-sa-\(UUID().uuidString.prefix(8)).sock"
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        let address = try UnixSocketAddress(path: path)
        let bound = address.withSocketAddress { bind(fd, $0, $1) }
        try #require(bound == 0)
        if listening { try #require(listen(fd, 8) == 0) }
        return (fd, path)
    }

    @Test func aListeningUnixSocketGivesItsPath() throws {
        let (fd, path) = try Self.unixSocket(listening: true)
        defer { close(fd); unlink(path) }
        #expect(try SystemdSocketActivation.listeningUnixPath(fd) == path)
    }

    @Test func aSocketThatDoesNotListenIsRefused() throws {
        let (fd, path) = try Self.unixSocket(listening: false)
        defer { close(fd); unlink(path) }
        let error = #expect(throws: GatewayError.self) { try SystemdSocketActivation.listeningUnixPath(fd) }
        #expect(error?.code == .invalidConfiguration)
        #expect(error?.message.contains("not listening") == true)
    }

    @Test func aTCPSocketIsRefused() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let error = #expect(throws: GatewayError.self) { try SystemdSocketActivation.listeningUnixPath(fd) }
        #expect(error?.message.contains("not a Unix stream socket") == true)
    }

    @Test func theGatewayBindsByDefault() {
        #expect(GatewayConfiguration().listener == .bind)
        #expect(GatewayConfiguration.Listener.inherited(descriptor: 3).description == "inherited descriptor 3")
    }
}
