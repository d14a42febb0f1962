#if os(Linux)
import Foundation
import GatewayConnection
import GatewayProtocol
import GatewayTestSupport
import Testing

extension IntegrationTests {
    /// `--event-loops`: how many of its own loops a gateway runs, and what it
    /// refuses, with real gateway processes.
    @Suite struct GatewayEventLoopsTests {
        /// The listening line's `loops=` value, once the line is logged (before
        /// READY=1, and read from standard error in the background).
        static func loops(of gateway: GatewayProcess) async -> String? {
            _ = await RedisTestSupport.waitUntil { gateway.log.contains("listening") }
            return Self.loops(in: gateway.log)
        }

        /// The listening line's `loops=` value.
        static func loops(in log: String) -> String? {
            guard let line = log.split(separator: "\n").first(where: { $0.contains("listening") }),
                  let range = line.range(of: "loops=")
            else { return nil }
            let rest = line[range.upperBound...]
            // `gateway (2)` or `swiftnio`, then the next metadata key.
            return rest.hasPrefix("gateway (") ? String(rest.prefix { $0 != ")" }) + ")" : String(rest.prefix { $0 != " " })
        }

        @Test func aGatewayPinnedToOneCPURunsOneLoopAndACountIsTaken() async throws {
            let pinned = try GatewayProcess(arguments: [], launcher: ["/usr/bin/taskset", "-c", "0"])
            defer { _ = pinned.stop() }
            #expect(try await pinned.connect(name: "pinned").request(.ping) == .pong)
            #expect(await Self.loops(of: pinned) == "gateway (1)", "\(pinned.log)")

            let three = try GatewayProcess(arguments: ["--event-loops", "gateway:3"])
            defer { _ = three.stop() }
            // Connections are spread over the loops; each is served.
            for index in 0..<6 {
                #expect(try await three.connect(name: "c\(index)").request(.ping) == .pong)
            }
            #expect(await Self.loops(of: three) == "gateway (3)", "\(three.log)")

            let nio = try GatewayProcess(arguments: [], environment: ["CACHE_GATEWAY_EVENT_LOOPS": "swiftnio"])
            defer { _ = nio.stop() }
            #expect(try await nio.connect(name: "nio").request(.ping) == .pong)
            #expect(await Self.loops(of: nio) == nil, "SwiftNIO's listener names no loops of its own")
        }

        @Test(arguments: [
            (["--event-loops", "gateway:0"], [String: String](), "--event-loops gateway:N takes 1 to 1024 loops, not 0"),
            (["--event-loops", "nio"], [:], "--event-loops takes auto, gateway, gateway:N or swiftnio, not nio"),
            ([], ["CACHE_GATEWAY_EVENT_LOOPS": "gateway:many"], "--event-loops gateway:N takes 1 to 1024 loops, not many"),
        ])
        func aBadChoiceIsRefusedClearly(arguments: [String], environment: [String: String], message: String) throws {
            let (status, text, leftSocketFile) = try GatewayProcess.runToEnd(arguments: arguments, environment: environment)
            #expect(status != 0)
            #expect(text.contains(message), "\(text)")
            #expect(!leftSocketFile)
        }
    }
}
#endif
