import ArgumentParser
import Gateway

/// `cache-gateway`: the per-host cache daemon and its admin commands.
@main
struct CacheGatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache-gateway",
        abstract: "A per-host cache gateway: workers talk MessagePack over a Unix socket, entries live in Redis or in memory.",
        version: GatewayVersion.current
    )
}
