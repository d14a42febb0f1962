// swift-tools-version:6.1
//
// The libFuzzer target for cache-gateway's decoders, in a package of its own
// so that the root package's `swift build` never sees it: it is built only
// with `-sanitize=fuzzer` (libFuzzer provides `main`) and
// `-sanitize=address` (AddressSanitizer with LeakSanitizer), by
// scripts/fuzz.sh. See Fuzz/README.md.
import PackageDescription

let package = Package(
    name: "cache-gateway-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "cache-gateway", path: ".."),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.0"),
    ],
    targets: [
        .executableTarget(
            name: "ProtocolFuzzer",
            dependencies: [
                .product(name: "GatewayProtocol", package: "cache-gateway"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ]
)
