// swift-tools-version:6.1
//
// cache-gateway: a code-versioned distributed cache for Swift services.
//
// The folder tree is the architecture:
//   Sources/C*                   C libraries as [system] module maps with shims
//   Sources/Digest               libcrypto wrapper (SHA-256, HMAC-SHA-256), shared by the protocol, the gateway, the client and the macro
//   Sources/Protocol             wire protocol: frames, messages, MessagePack Codable, cache keys, GatewayError
//   Sources/System               system calls (EINTR retried, errno as GatewayError), Unix socket addresses and the
//                                exponential backoff, shared by the gateway and the client
//   Sources/Gateway              the daemon's engine: server, stores, the near-cache, registry, Redis connection,
//                                metrics, systemd, and their assembly (Application/GatewayApplication)
//   Sources/GatewayConnection    an async (SwiftNIO) connection to a gateway, for the admin commands, the tests and the benchmarks
//   Sources/cache-gateway        the executable: arguments, the admin commands (ping, stats, ...); it runs GatewayApplication
//   Sources/GatewayClientRuntime the worker-side runtime: `cache(ttl:)` and the gateway client
//   Sources/GatewayClient        what workers import: the runtime and the `@Cached` macro
//   Sources/GatewayClientMacros  the `@Cached` macro plugin
//   Sources/GatewayVersions      versions that follow the code a function calls: parse a module, resolve names, digest
//   Sources/cache-versions       the tool the CacheVersions plugins run (writes the table, or explains it)
//   Plugins/                     CacheVersions (build tool: the table of versions) and CacheVersionsCommand
//                                (`swift package cache-versions`: what each version depends on)
//   Examples/DemoWorker          a worker that uses `@Cached`
//   Benchmarks/                  release-build benchmarks
//   Tests/                       unit and integration tests, their shared support and the canonical-encoding fixture
//   clients/python               the Python client (not built by SwiftPM; scripts/python-test.sh tests it)
import CompilerPluginSupport
import PackageDescription

let package = Package(
    name: "cache-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GatewayProtocol", targets: ["GatewayProtocol"]),
        .library(name: "Gateway", targets: ["Gateway"]),
        .library(name: "GatewayClient", targets: ["GatewayClient"]),
        .library(name: "GatewayClientRuntime", targets: ["GatewayClientRuntime"]),
        .executable(name: "cache-gateway", targets: ["CacheGatewayCommand"]),
        .plugin(name: "CacheVersions", targets: ["CacheVersions"]),
        .plugin(name: "CacheVersionsCommand", targets: ["CacheVersionsCommand"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        // TLS to Redis (rediss://); its handler is in a Redis pipeline only when TLS is configured.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        // Only the executable uses it: the Gateway library takes any metrics factory.
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        // The macro must build with swift-syntax 600 through 603.
        .package(url: "https://github.com/swiftlang/swift-syntax.git", "600.0.0"..<"604.0.0"),
    ],
    targets: [
        // MARK: C libraries

        .systemLibrary(
            name: "CMsgPack",
            path: "Sources/CMsgPack",
            pkgConfig: "msgpack",
            providers: [.apt(["libmsgpack-dev"])]
        ),
        .systemLibrary(
            name: "CHiredis",
            path: "Sources/CHiredis",
            // No pkgConfig: hiredis.pc adds -I/usr/include/hiredis and
            // -D_FILE_OFFSET_BITS=64, which SwiftPM rejects with a warning; the
            // shim includes <hiredis/hiredis.h> from /usr/include instead.
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CLibCrypto",
            path: "Sources/CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),

        // MARK: Libraries

        .target(
            name: "GatewayDigest",
            dependencies: ["CLibCrypto"],
            path: "Sources/Digest"
        ),
        .target(
            name: "GatewayProtocol",
            dependencies: [
                "CMsgPack",
                "GatewayDigest",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Protocol"
        ),
        .systemLibrary(
            name: "CLinux",
            path: "Sources/CLinux"
        ),
        .target(
            name: "GatewaySystem",
            dependencies: [
                "GatewayProtocol",
                .target(name: "CLinux", condition: .when(platforms: [.linux])),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/System"
        ),
        .target(
            name: "Gateway",
            dependencies: [
                "GatewayProtocol",
                "GatewaySystem",
                "CHiredis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Sources/Gateway"
        ),
        .target(
            name: "GatewayConnection",
            dependencies: [
                "GatewayProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Sources/GatewayConnection"
        ),
        .executableTarget(
            name: "CacheGatewayCommand",
            dependencies: [
                "Gateway",
                "GatewayConnection",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            path: "Sources/cache-gateway"
        ),
        .target(
            name: "GatewayVersions",
            dependencies: [
                "GatewayDigest",
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftParser", package: "swift-syntax"),
            ],
            path: "Sources/GatewayVersions"
        ),
        .executableTarget(
            name: "CacheVersionsTool",
            dependencies: ["GatewayVersions"],
            path: "Sources/cache-versions"
        ),
        .plugin(
            name: "CacheVersions",
            capability: .buildTool(),
            dependencies: ["CacheVersionsTool"],
            path: "Plugins/CacheVersions"
        ),
        .plugin(
            name: "CacheVersionsCommand",
            capability: .command(
                intent: .custom(verb: "cache-versions", description: "List each @Cached function's version and the declarations it depends on"),
                permissions: []
            ),
            dependencies: ["CacheVersionsTool"],
            path: "Plugins/CacheVersionsCommand"
        ),
        .macro(
            name: "GatewayClientMacros",
            dependencies: [
                "GatewayDigest",
                "GatewayVersions",
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftParser", package: "swift-syntax"),
                .product(name: "SwiftSyntaxBuilder", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
                .product(name: "SwiftCompilerPlugin", package: "swift-syntax"),
                .product(name: "SwiftDiagnostics", package: "swift-syntax"),
            ],
            path: "Sources/GatewayClientMacros"
        ),
        .target(
            name: "GatewayClientRuntime",
            dependencies: [
                "GatewayDigest",
                "GatewayProtocol",
                "GatewaySystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/GatewayClientRuntime"
        ),
        .target(
            name: "GatewayClient",
            dependencies: [
                "GatewayClientMacros",
                "GatewayClientRuntime",
                "GatewayProtocol",
            ],
            path: "Sources/GatewayClient"
        ),

        // MARK: Example

        .executableTarget(
            name: "DemoWorker",
            dependencies: ["GatewayClient"],
            path: "Examples/DemoWorker"
        ),

        // MARK: Benchmarks (run on release builds: `make bench`)

        .executableTarget(
            name: "GatewayBenchmarks",
            // The runtime, not GatewayClient: a release build of the macro would
            // compile swift-syntax with optimisations (about 11 minutes) for
            // nothing, since a @Cached body is exactly a call to `cache(...)`.
            dependencies: [
                "GatewayProtocol", "GatewaySystem", "Gateway", "GatewayConnection", "GatewayClientRuntime",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/GatewayBenchmarks"
        ),

        // MARK: Tests

        .target(
            name: "CanonicalFixture",
            path: "Tests/CanonicalFixture"
        ),
        .executableTarget(
            name: "CanonicalProbe",
            dependencies: ["CanonicalFixture", "GatewayProtocol"],
            path: "Tests/CanonicalProbe"
        ),
        .testTarget(
            name: "GatewayProtocolTests",
            dependencies: [
                "CanonicalFixture",
                "GatewayProtocol",
                "GatewayDigest",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
        .target(
            name: "GatewayTestSupport",
            dependencies: [
                "GatewayConnection",
                "GatewayProtocol",
                "GatewaySystem",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/GatewayTestSupport"
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway",
                "GatewayConnection",
                "GatewayDigest",
                "GatewayTestSupport",
                "GatewayProtocol",
                "GatewaySystem",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .testTarget(
            name: "GatewayClientMacrosTests",
            dependencies: [
                "GatewayClientMacros",
                "GatewayDigest",
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftParser", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacros", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacroExpansion", package: "swift-syntax"),
                .product(name: "SwiftSyntaxMacrosGenericTestSupport", package: "swift-syntax"),
            ]
        ),
        .testTarget(
            name: "GatewayVersionsTests",
            dependencies: [
                "GatewayVersions",
                "GatewayDigest",
                .product(name: "SwiftSyntax", package: "swift-syntax"),
                .product(name: "SwiftParser", package: "swift-syntax"),
            ]
        ),
        // Built with the CacheVersions plugin; the end-to-end test of versions
        // that follow callees runs it, and builds it a second time with a changed helper.
        .executableTarget(
            name: "VersionedWorker",
            dependencies: ["GatewayClient"],
            path: "Tests/VersionedWorker",
            plugins: ["CacheVersions"]
        ),
        // Many concurrent callers of one slow cached function: the stampede
        // tests and benchmark run several against real gateways.
        .executableTarget(
            name: "StampedeWorker",
            dependencies: ["GatewayClientRuntime"],
            path: "Tests/StampedeWorker"
        ),
        .testTarget(
            name: "GatewaySystemTests",
            dependencies: [
                "GatewaySystem",
                "GatewayProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "GatewayClientTests",
            dependencies: [
                "GatewayClient",
                "GatewayClientRuntime",
                "GatewayConnection",
                "GatewaySystem",
                "GatewayTestSupport",
                "GatewayVersions",
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
    ]
)
