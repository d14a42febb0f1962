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


def stats(socket_path):
    reply = subprocess.run(pinned([f"{BIN}/cache-gateway", "stats", "--socket", socket_path, "--json"]), capture_output=True, text=True, check=True)
    return json.loads(reply.stdout)


def steady(refresh, directory, seconds, ttl_ms=2000, compute_ms=200, workers_count=5, callers=10, backend="redis"):
    """Steady load (issue #18's must-show): workers_count x callers callers
    call one key in a loop for `seconds`, TTL ttl_ms, computation compute_ms,
    on one gateway, with early refresh (`refresh` "early") or without
    ("never"). One caller fills the key first; the figures are about what
    follows: computations against run/TTL, the most running at once, and the
    callers that waited (the gateway's misses and held lookups after the first
    fill, and computations a caller waited for)."""
    namespace = f"steady{uuid.uuid4().hex[:8]}"
    path = os.path.join(directory, f"{namespace}.sock")
    store = ["--redis", f"unix://{REDIS}", "--namespace", namespace] if backend == "redis" else []
    gateway = subprocess.Popen(pinned([
        f"{BIN}/cache-gateway", "serve", "--socket", path, *store, "--lookup-timeout-ms", "1000", "--log-level", "error",
    ]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        wait_for(path)
        for _ in range(workers_count):
            workers.append(subprocess.Popen(pinned([
                f"{BIN}/StampedeWorker", "--socket", path, "--callers", str(callers), "--compute-ms", str(compute_ms),
                "--ttl-ms", str(ttl_ms), "--lookup-timeout-ms", "2000", "--refresh", refresh,
            ]), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))

        def command(line, chosen):
            for worker in chosen:
                worker.stdin.write(line + "\n")
                worker.stdin.flush()
            return [json.loads(worker.stdout.readline()) for worker in chosen]

        command("warm", workers)
        first = command("burst key", workers[:1])[0]["intervals"]
        before = stats(path)
        reports = command(f"steady key {seconds * 1000}", workers)
        after = stats(path)
        intervals = sorted(interval for report in reports for interval in report["intervals"])
        events = sorted([(i[0], 1) for i in first + intervals] + [(i[1], -1) for i in first + intervals], key=lambda e: (e[0], e[1]))
        running = most = 0
        for _, step in events:
            running += step
            most = max(most, running)
        start = first[0][1]
        end = max(s + l for report in reports for s, l in zip(report["startsUs"], report["latenciesUs"]))
        expected = (end - start) / 1000 / ttl_ms
        waited_for = sum(1 for interval in intervals if not interval[2])
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in ("misses", "fillWaits", "lookupsHeld", "earlyRefreshes", "hits")}
        calls = sum(report["calls"] for report in reports)
        latencies = sorted(l / 1000 for report in reports for l in report["latenciesUs"])
        result = {
            "refresh": refresh, "backend": backend, "computations": len(intervals), "expected": expected,
            "ratio": len(intervals) / expected, "mostAtOnce": most, "foregroundComputations": waited_for,
            "misses": delta["misses"], "fillWaits": delta["fillWaits"], "held": delta["lookupsHeld"],
            "earlyRefreshes": delta["earlyRefreshes"], "calls": calls,
            "p50": latencies[len(latencies) // 2], "p99": latencies[len(latencies) * 99 // 100], "max": latencies[-1],
        }
        print(f"steady {backend}, refresh {refresh}: {len(intervals)} computations after the first fill in {(end - start) / 1e6:.1f} s "
              f"(run/TTL = {expected:.2f}, ratio {result['ratio']:.3f}); at most {most} at once; "
              f"{waited_for} computations a caller waited for; gateway after the first fill: {delta['misses']} misses, "
              f"{delta['fillWaits']} wait answers, {delta['lookupsHeld']} held, {delta['earlyRefreshes']} early refreshes, {delta['hits']} hits; "
              f"{calls} calls, latency p50 {result['p50']:.2f} ms, p99 {result['p99']:.2f} ms, max {result['max']:.1f} ms")
        return result
    finally:
        for process in workers + [gateway]:
            process.kill()
            process.wait()


def main():
    if os.environ.get("MODE") == "steady":
        seconds = int(os.environ.get("SECONDS_STEADY", "60"))
        ttl_ms = int(os.environ.get("TTL_MS", "2000"))
        compute_ms = int(os.environ.get("COMPUTE_MS_STEADY", "200"))
        print(f"steady load: 5 workers x 10 callers on one key, TTL {ttl_ms} ms, compute {compute_ms} ms, {seconds} s, "
              f"{RUNS} runs per mode, everything on CPU {CPU}")
        results = {"early": [], "never": []}
        with tempfile.TemporaryDirectory(prefix="cg-steady-") as directory:
            for _ in range(RUNS):
                for refresh in ("early", "never"):
                    results[refresh].append(steady(refresh, directory, seconds, ttl_ms=ttl_ms, compute_ms=compute_ms,
                                                   backend=os.environ.get("BACKEND", "redis")))
        for refresh in ("early", "never"):
            runs = results[refresh]
            ratios = [run["ratio"] for run in runs]
            print(f"refresh {refresh}: computations / (run/TTL) median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}], "
                  f"most at once {max(run['mostAtOnce'] for run in runs)}, misses after the first fill {sum(run['misses'] for run in runs)}, "
                  f"held {sum(run['held'] for run in runs)}, computations waited for {sum(run['foregroundComputations'] for run in runs)}, "
                  f"max latency median {statistics.median(run['max'] for run in runs):.1f} ms")
        print(json.dumps({"steady": results}), file=open(os.environ.get("BENCH_STAMPEDE_RESULTS", "/dev/null"), "w"))
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
