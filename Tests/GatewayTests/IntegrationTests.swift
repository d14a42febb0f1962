import Testing

/// Every test that starts processes (gateways, redis-servers) or uses the shared
/// test redis-server runs in here, one at a time.
///
/// They measure timeouts and recovery in wall-clock time; run side by side on a
/// 2-CPU machine, with a debug build, they would starve one another and fail for
/// reasons that are not theirs. Pure unit tests stay outside and run in parallel.
@Suite(.serialized) enum IntegrationTests {}
