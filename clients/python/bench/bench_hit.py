"""A Python ``@cache`` hit through the gateway against a redis-py GET of the same entry.

Both read one 1 KiB ``bytes`` value from the same redis-server over its Unix
socket: the hit goes worker → gateway → Redis (GET) → gateway → worker and
decodes the MessagePack; the baseline is redis-py's ``GET`` of the very Redis
key the gateway stores the entry under. Each round times ``--calls`` calls of
each, in alternating order; the figures are per call, median and spread
(min–max) over the rounds, and the ratio hit/GET per round.

    python bench_hit.py --gateway BINARY --redis-socket PATH [--rounds 3] [--calls 20000]

Run it through scripts/bench-python.sh, which makes its environment (with
redis-py, for this benchmark only), starts redis-server and pins everything.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, List

import redis
import redis.utils

import cache_gateway
from cache_gateway import cache, key_of, name_of, version_of

VALUE = bytes(range(256)) * 4


@cache(ttl=3600)
def blob(n: int) -> bytes:
    """The cached function: a 1 KiB value."""
    return VALUE


def wait_for_gateway(process: "subprocess.Popen[bytes]", path: str) -> None:
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if process.poll() is not None:
            sys.exit(f"the gateway exited with {process.returncode}")
        if time.monotonic() > deadline:
            sys.exit("the gateway did not start")
        time.sleep(0.01)


def per_call(function: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - started) / calls * 1e6


def spread(values: List[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--redis-socket", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20000)
    options = parser.parse_args()

    directory = tempfile.mkdtemp(prefix="cgpy-bench-")
    socket_path = os.path.join(directory, "gateway.sock")
    namespace = "pybench"
    gateway = subprocess.Popen(
        [options.gateway, "serve", "--socket", socket_path, "--redis", f"unix://{options.redis_socket}",
         "--namespace", namespace, "--log-level", "warning"]
    )
    try:
        wait_for_gateway(gateway, socket_path)
        # Generous timeouts: a slow reply here should show in the figures, not as a bypass.
        cache_gateway.configure(socket=socket_path, lookup_timeout=1.0, connect_timeout=5.0)
        client = redis.Redis(unix_socket_path=options.redis_socket)

        function_id = hashlib.sha256(name_of(blob).encode()).digest()[:16].hex()
        entry = f"cg:{namespace}:e:{function_id}:{version_of(blob)}:{key_of(blob, 1).hex()}"
        # The first call stores; wait for the entry to be in Redis (the store is not awaited).
        assert blob(1) == VALUE
        deadline = time.monotonic() + 30
        while not client.exists(entry):
            if time.monotonic() > deadline:
                sys.exit(f"the entry {entry} never appeared in Redis")
            time.sleep(0.001)
        stored = client.get(entry)
        assert stored is not None
        hit = lambda: blob(1)  # noqa: E731
        get = lambda: client.get(entry)  # noqa: E731
        for _ in range(2000):  # warm up both
            assert hit() == VALUE
            get()
        stats_before = _hits(socket_path)

        hits: List[float] = []
        gets: List[float] = []
        ratios: List[float] = []
        for round_index in range(options.rounds):
            if round_index % 2 == 0:
                h = per_call(hit, options.calls)
                g = per_call(get, options.calls)
            else:
                g = per_call(get, options.calls)
                h = per_call(hit, options.calls)
            hits.append(h)
            gets.append(g)
            ratios.append(h / g)
            print(f"round {round_index + 1}: @cache hit {h:.2f} µs, redis-py GET {g:.2f} µs, ratio {h / g:.2f}", flush=True)
        served = _hits(socket_path) - stats_before
        expected = options.rounds * options.calls
        if served < expected:
            sys.exit(f"only {served} of {expected} calls were gateway hits: the figures are not of hits")
        parser = "hiredis" if getattr(redis.utils, "HIREDIS_AVAILABLE", False) else "pure-Python"
        print(f"redis-py {redis.__version__} with its {parser} reply parser")
        print(f"Python {platform.python_version()}, gateway {options.gateway}, value {len(VALUE)} B "
              f"(the entry is {len(stored)} B in Redis), {options.rounds} rounds x {options.calls} calls")
        print(f"@cache hit   µs/call: {spread(hits)}")
        print(f"redis-py GET µs/call: {spread(gets)}")
        print(f"ratio hit/GET:        {spread(ratios)}")
    finally:
        gateway.terminate()
        gateway.wait()


def _hits(socket_path: str) -> int:
    from cache_gateway import _protocol

    import socket as sockets

    with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(_protocol.hello(1, "bench", os.getpid()) + _protocol.stats(2))
        buffer = bytearray()
        replies: List[_protocol.Reply] = []
        while len(replies) < 2:
            data = sock.recv(65536)
            if not data:
                sys.exit("the gateway closed the stats connection")
            buffer += data
            frames, used = _protocol.split_frames(buffer, 1 << 30)
            del buffer[:used]
            replies.extend(_protocol.decode(frame) for frame in frames)
    return int(dict(replies[1].fields[0])["hits"])


if __name__ == "__main__":
    main()
