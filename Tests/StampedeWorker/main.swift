// A worker for the stampede tests and benchmark: many concurrent callers of
// one cached function whose computation takes a fixed time.
//
//   StampedeWorker --socket PATH --compute-ms N --ttl-ms N --callers N
//                  [--held-timeout-ms N] [--lookup-timeout-ms N]
//                  [--refresh early] [--refresh-fails throw|exit]
//
// --held-timeout-ms 0 makes a client that announces nothing (never held).
// --refresh early calls through `cache(ttl:refresh: .early, …)`: hits may be
// refreshed in the background. --refresh-fails makes every background
// refresh throw, or end the process at once (exit status 3, no store).
// stdin, one command per line; stdout, one JSON object per command:
//   warm            one call of another function (connects; records no compute
//                   time for the stampede function): {"calls": 1, ...}
//   burst KEY       the callers call once each, at once:
//                   {"calls", "computations", "values": [distinct values], "latenciesUs": [...],
//                    "intervals": [[startUs, endUs], ...] (wall clock, of this process's computations),
//                    "computedCalls": [indexes of the calls whose own body computed]}
//   steady KEY MS   the callers call in a loop for MS milliseconds:
//                   {"calls", "computations", "values", "intervals", "latenciesUs": [per call, with
//                    "startsUs": [when each call started]]}
// Each interval is [startUs, endUs, background]: background 1 for an early
// refresh (run after its caller had its value), 0 for a computation a caller waited for.
import Foundation
import GatewayClientRuntime
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

func option(_ flag: String, default value: Int64) -> Int64 {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count, let number = Int64(arguments[index + 1]) else { return value }
    return number
}

let computeMilliseconds = option("--compute-ms", default: 300)
let ttlMilliseconds = option("--ttl-ms", default: 60_000)
let callers = Int(option("--callers", default: 100))

func textOption(_ flag: String) -> String? {
    let arguments = CommandLine.arguments
    guard let index = arguments.firstIndex(of: flag), index + 1 < arguments.count else { return nil }
    return arguments[index + 1]
}

let refreshEarly = textOption("--refresh") == "early"
let refreshFails = textOption("--refresh-fails")

var configuration = CacheClient.Configuration(clientName: "StampedeWorker")
if let index = CommandLine.arguments.firstIndex(of: "--socket"), index + 1 < CommandLine.arguments.count {
    configuration.socketPath = CommandLine.arguments[index + 1]
}
configuration.heldLookupTimeout = .milliseconds(option("--held-timeout-ms", default: 3_000))
// Generous by default: the tests are about stampedes, not a loaded machine's timeouts.
configuration.lookupTimeout = .milliseconds(option("--lookup-timeout-ms", default: 2_000))
configuration.connectTimeout = .seconds(2)
CacheClient.configure(configuration)

/// Wall-clock microseconds: comparable between the processes of one host.
func wallMicroseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1000
}

let intervals = Mutex<[[Int64]]>([])

/// Marks the call whose body ran (a task-local, inherited by the body's task).
final class ComputedMark: Sendable {
    let computed = Atomic<Bool>(false)
    @TaskLocal static var current: ComputedMark?
}
let sequence = Atomic<Int>(0)

/// Set while a caller runs: a computation without it is a background refresh
/// (a detached task does not inherit task-local values).
enum Caller {
    @TaskLocal static var inCall = false
}

struct RefreshFailed: Error {}

/// The computation: sleeps `computeMilliseconds`, returns a value that names it.
@Sendable func computation(_ key: String) async throws -> String {
    let background = !Caller.inCall
    if background, let refreshFails {
        if refreshFails == "exit" { _exit(3) }
        throw RefreshFailed()
    }
    let started = wallMicroseconds()
    ComputedMark.current?.computed.store(true, ordering: .relaxed)
    try? await Task.sleep(for: .milliseconds(computeMilliseconds))
    let number = sequence.add(1, ordering: .relaxed).newValue
    intervals.withLock { $0.append([started, wallMicroseconds(), background ? 1 : 0]) }
    return "\(key)-\(getpid())-\(number)"
}

/// The cached function, with or without early refresh.
func compute(_ key: String) async -> String {
    do {
        if refreshEarly {
            return try await cache(ttl: .milliseconds(ttlMilliseconds), refresh: .early, function: "stampede", version: "1", arguments: key) {
                try await computation(key)
            }
        }
        return try await cache(ttl: .milliseconds(ttlMilliseconds), function: "stampede", version: "1", arguments: key) {
            try await computation(key)
        }
    } catch {
        return "failed"
    }
}

struct Call: Sendable {
    var value: String
    var startedUs: Int64
    var latencyUs: Int64
    var computed = false
}

func report(_ calls: [Call]) throws {
    let done = intervals.withLock { list -> [[Int64]] in
        defer { list.removeAll() }
        return list
    }
    let reply: [String: Any] = [
        "calls": calls.count,
        "computations": done.count,
        "values": Array(Set(calls.map(\.value))).sorted(),
        "latenciesUs": calls.map(\.latencyUs),
        "startsUs": calls.map(\.startedUs),
        "computedCalls": calls.enumerated().filter(\.element.computed).map(\.offset),
        "intervals": done,
    ]
    let data = try JSONSerialization.data(withJSONObject: reply, options: [.sortedKeys])
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

func timedCall(_ key: String) async -> Call {
    let started = wallMicroseconds()
    let mark = ComputedMark()
    let value = await Caller.$inCall.withValue(true) {
        await ComputedMark.$current.withValue(mark) { await compute(key) }
    }
    return Call(value: value, startedUs: started, latencyUs: wallMicroseconds() - started, computed: mark.computed.load(ordering: .relaxed))
}

while let line = readLine() {
    let parts = line.split(separator: " ").map(String.init)
    switch parts.first {
    case "warm":
        let started = wallMicroseconds()
        let value = await cache(ttl: .seconds(60), function: "warm", version: "1", arguments: getpid()) { "warm" }
        try report([Call(value: value, startedUs: started, latencyUs: wallMicroseconds() - started)])
    case "burst" where parts.count == 2:
        let calls = await withTaskGroup(of: Call.self) { group in
            for _ in 0..<callers { group.addTask { await timedCall(parts[1]) } }
            var calls: [Call] = []
            for await call in group { calls.append(call) }
            return calls
        }
        try report(calls)
    case "steady" where parts.count == 3:
        let end = wallMicroseconds() + (Int64(parts[2]) ?? 0) * 1000
        let calls = await withTaskGroup(of: [Call].self) { group in
            for _ in 0..<callers {
                group.addTask {
                    var calls: [Call] = []
                    while wallMicroseconds() < end { calls.append(await timedCall(parts[1])) }
                    return calls
                }
            }
            var calls: [Call] = []
            for await some in group { calls += some }
            return calls
        }
        try report(calls)
    default:
        FileHandle.standardOutput.write(Data(#"{"error":"expected: warm | burst KEY | steady KEY MS"}"#.utf8 + [10]))
    }
}
