import Testing

/// Every suite of this target that starts gateway or Redis processes, one at a
/// time: in parallel they would load a 2-CPU machine enough to blur the time
/// bounds that the tests hold the product to. (The gateway's own integration
/// suites are serialized the same way, under `IntegrationTests`.)
@Suite(.serialized) enum ClientIntegrationTests {}
