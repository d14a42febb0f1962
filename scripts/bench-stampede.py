#!/usr/bin/env python3
"""The cold-key stampede benchmark (issue #18): WORKERS StampedeWorker
processes with CALLERS concurrent callers each, spread over GATEWAYS gateways
sharing one redis-server, all call one cold key whose computation takes
COMPUTE_MS. Each run is made in three modes, alternating:
  on    single-flight and fill leases, waiting gateways told of the value by
        the near-cache's invalidations (the default configuration);
  poll  the same with the near-cache off (--near-cache-size 0): waiting
        gateways poll the entry;
  off   --single-flight off, which turns leases off too (the behaviour
        before single-flight);
and the figures are printed side by side: computations, callers, p50/p99/max
of the callers' latency and of the waiters' (every caller but the ones that
computed), and the ratio of computations.

Run through scripts/bench-stampede.sh (release build, private redis-server,
everything pinned with taskset to BENCH_CPU)."""
import json, os, statistics, subprocess, sys, tempfile, time, uuid

BIN = os.environ["BENCH_BIN"]
REDIS = os.environ["CACHE_GATEWAY_TEST_REDIS_SOCKET"]
CPU = os.environ.get("BENCH_CPU", "0")
GATEWAYS = int(os.environ.get("GATEWAYS", "2"))
WORKERS = int(os.environ.get("WORKERS", "10"))
CALLERS = int(os.environ.get("CALLERS", "100"))
COMPUTE_MS = int(os.environ.get("COMPUTE_MS", "300"))
RUNS = int(os.environ.get("RUNS", "5"))


def pinned(arguments):
    return ["taskset", "-c", CPU] + arguments


def wait_for(socket_path):
    deadline = time.time() + 20
    while time.time() < deadline:
        if subprocess.run(pinned([f"{BIN}/cache-gateway", "ping", "--socket", socket_path]), capture_output=True).returncode == 0:
            return
        time.sleep(0.05)
    raise SystemExit(f"gateway at {socket_path} did not answer")


MODES = {
    "on": ["--single-flight", "on"],
    "poll": ["--single-flight", "on", "--near-cache-size", "0"],
    "off": ["--single-flight", "off"],
}


def run_once(mode, directory):
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    gateways, workers = [], []
    try:
        sockets = []
        for index in range(GATEWAYS):
            path = os.path.join(directory, f"g{index}-{namespace}.sock")
            sockets.append(path)
            gateways.append(subprocess.Popen(pinned([
                f"{BIN}/cache-gateway", "serve", "--socket", path, "--redis", f"unix://{REDIS}",
                "--namespace", namespace, *MODES[mode], "--lookup-timeout-ms", "1000",
                "--log-level", "error",
            ]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for path in sockets:
            wait_for(path)
        for index in range(WORKERS):
            workers.append(subprocess.Popen(pinned([
                f"{BIN}/StampedeWorker", "--socket", sockets[index % GATEWAYS], "--callers", str(CALLERS),
                "--compute-ms", str(COMPUTE_MS), "--lookup-timeout-ms", "2000",
            ]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))

        def burst(key):
            for worker in workers:
                worker.stdin.write(f"burst {key}\n")
                worker.stdin.flush()
            return [json.loads(worker.stdout.readline()) for worker in workers]

        for worker in workers:  # every worker connected before the cold burst
            worker.stdin.write("warm\n")
            worker.stdin.flush()
        for worker in workers:
            worker.stdout.readline()
        reports = burst("cold")
        latencies = sorted(latency / 1000 for report in reports for latency in report["latenciesUs"])
        # Waiters: the callers whose own call did not compute.
        waiters = sorted(latency / 1000 for report in reports for index, latency in enumerate(report["latenciesUs"])
                         if index not in set(report.get("computedCalls", []))) or [0.0]
        return {
            "waitersP50": waiters[len(waiters) // 2],
            "waitersP99": waiters[len(waiters) * 99 // 100],
            "computations": sum(report["computations"] for report in reports),
            "callers": len(latencies),
            "distinctValues": len({value for report in reports for value in report["values"]}),
            "p50": latencies[len(latencies) // 2],
            "p99": latencies[len(latencies) * 99 // 100],
            "max": latencies[-1],
        }
    finally:
        for process in workers + gateways:
            process.kill()
            process.wait()


def steady(single_flight, directory, seconds, ttl_ms=2000, compute_ms=200, workers_count=5, callers=10):
    """Steady load: workers_count x callers callers call one key in a loop for
    `seconds`, TTL ttl_ms, computation compute_ms, on one gateway."""
    namespace = f"steady{uuid.uuid4().hex[:8]}"
    path = os.path.join(directory, f"{namespace}.sock")
    gateway = subprocess.Popen(pinned([
        f"{BIN}/cache-gateway", "serve", "--socket", path, "--redis", f"unix://{REDIS}", "--namespace", namespace,
        "--single-flight", single_flight, "--lookup-timeout-ms", "1000", "--log-level", "error",
    ]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        wait_for(path)
        for _ in range(workers_count):
            workers.append(subprocess.Popen(pinned([
                f"{BIN}/StampedeWorker", "--socket", path, "--callers", str(callers), "--compute-ms", str(compute_ms),
                "--ttl-ms", str(ttl_ms), "--lookup-timeout-ms", "2000",
            ]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
        for command in ("warm", f"steady key {seconds * 1000}"):
            for worker in workers:
                worker.stdin.write(command + "\n")
                worker.stdin.flush()
            reports = [json.loads(worker.stdout.readline()) for worker in workers]
        intervals = sorted(interval for report in reports for interval in report["intervals"])
        overlaps = sum(1 for earlier, later in zip(intervals, intervals[1:]) if later[0] < earlier[1])
        first_end = intervals[0][1] if intervals else 0
        # Calls that started after the first fill and took at least half a computation waited for one.
        waited = [latency for report in reports for start, latency in zip(report["startsUs"], report["latenciesUs"])
                  if start > first_end and latency >= compute_ms * 500]
        calls = sum(report["calls"] for report in reports)
        print(f"steady, single-flight {single_flight}: {len(intervals)} computations in {seconds} s (run/TTL = {seconds * 1000 / ttl_ms:g}), "
              f"{overlaps} overlapping, {calls} calls, {len(waited)} calls after the first fill waited >= {compute_ms // 2} ms for a computation")
    finally:
        for process in workers + [gateway]:
            process.kill()
            process.wait()


def main():
    if os.environ.get("MODE") == "steady":
        with tempfile.TemporaryDirectory(prefix="cg-steady-") as directory:
            for mode in ("on", "off"):
                steady(mode, directory, int(os.environ.get("SECONDS_STEADY", "60")))
        return
    modes = os.environ.get("MODES", "on poll off").split()
    print(f"stampede: {GATEWAYS} gateways, {WORKERS} workers x {CALLERS} callers, one cold key, compute {COMPUTE_MS} ms, "
          f"{RUNS} runs per mode, everything on CPU {CPU}")
    results = {mode: [] for mode in modes}
    with tempfile.TemporaryDirectory(prefix="cg-stampede-") as directory:
        for _ in range(RUNS):
            for mode in modes:  # alternating, so that drift hits every mode
                results[mode].append(run_once(mode, directory))
    keys = ("computations", "callers", "p50", "p99", "max", "waitersP50", "waitersP99")
    print(f"{'mode':>6} {'computations':>13} {'callers':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'wait p50':>9} {'wait p99':>9}"
          f"   (medians of {RUNS} runs; [range of computations] [range of max ms])")
    summary = {}
    for mode in modes:
        runs = results[mode]
        median = {key: statistics.median(run[key] for run in runs) for key in keys}
        summary[mode] = median
        spread = f"[{min(r['computations'] for r in runs)}-{max(r['computations'] for r in runs)}]"
        max_spread = f"[{min(r['max'] for r in runs):.1f}-{max(r['max'] for r in runs):.1f}]"
        print(f"{mode:>6} {median['computations']:>13g} {median['callers']:>8g} {median['p50']:>8.1f} {median['p99']:>8.1f} {median['max']:>8.1f}"
              f" {median['waitersP50']:>9.1f} {median['waitersP99']:>9.1f}   {spread} {max_spread}")
    if "off" in summary:
        for mode in (m for m in modes if m != "off"):
            ratio = summary["off"]["computations"] / max(summary[mode]["computations"], 1)
            print(f"computations, off/{mode}: {ratio:.1f}x; {mode}: {summary[mode]['computations']:g} computation(s) against "
                  f"{summary[mode]['callers']:g} callers (goal: 1); slowest caller {summary[mode]['max']:.1f} ms for a "
                  f"{COMPUTE_MS} ms computation (+{summary[mode]['max'] - COMPUTE_MS:.1f} ms)")
    print(json.dumps({"stampede": results}), file=open(os.environ.get("BENCH_STAMPEDE_RESULTS", "/dev/null"), "w"))


if __name__ == "__main__":
    main()
