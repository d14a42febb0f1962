"""Real gateway processes for the tests, on the embedded store and on the test Redis.

The gateway binary is ``CACHE_GATEWAY_BINARY`` or the tree's own debug build
(``.build/debug/cache-gateway``); without it the run fails at once rather than
skipping anything. The Redis backend uses the redis-server that
``scripts/with-redis.sh`` started (``CACHE_GATEWAY_TEST_REDIS_SOCKET``);
``CACHE_GATEWAY_TEST_BACKENDS=memory`` runs the embedded store only, on purpose.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import cache_gateway
from cache_gateway import _client, _protocol

REPOSITORY = Path(__file__).resolve().parents[3]
#: Bounds waits for a process (start, hello): the machine may be loaded, so
#: they are generous; they bound how long a broken run takes, never a promise.
STARTUP_LIMIT = 60.0


def gateway_binary() -> Path:
    return Path(os.environ.get("CACHE_GATEWAY_BINARY") or REPOSITORY / ".build" / "debug" / "cache-gateway")


def backends() -> List[str]:
    return [name for name in os.environ.get("CACHE_GATEWAY_TEST_BACKENDS", "memory,redis").split(",") if name]


def pytest_sessionstart(session: Any) -> None:
    binary = gateway_binary()
    if not os.access(binary, os.X_OK):
        raise pytest.UsageError(f"no gateway binary at {binary}: build it (swift build) or set CACHE_GATEWAY_BINARY")
    if "redis" in backends() and not os.environ.get("CACHE_GATEWAY_TEST_REDIS_SOCKET"):
        raise pytest.UsageError(
            "CACHE_GATEWAY_TEST_REDIS_SOCKET is not set: run under scripts/with-redis.sh, "
            "or set CACHE_GATEWAY_TEST_BACKENDS=memory to test the embedded store only"
        )


def raw_request(path: str, payloads: List[bytes], timeout: float = STARTUP_LIMIT) -> List[_protocol.Reply]:
    """Sends framed requests on a fresh connection and returns one reply per request (test helper)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(b"".join(payloads))
        replies: List[_protocol.Reply] = []
        buffer = bytearray()
        while len(replies) < len(payloads):
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            buffer += data
            frames, used = _protocol.split_frames(buffer, 1 << 30)
            del buffer[:used]
            replies.extend(_protocol.decode(frame) for frame in frames)
        return replies


class Gateway:
    """A cache-gateway process on a private socket."""

    def __init__(self, backend: str, extra: Optional[List[str]] = None) -> None:
        self.backend = backend
        self.directory = tempfile.mkdtemp(prefix="cgpy-")
        self.path = os.path.join(self.directory, "gateway.sock")
        self.namespace = f"py-{uuid.uuid4().hex[:12]}"
        self.extra = extra or []
        self.process: Optional[subprocess.Popen[bytes]] = None
        self.log = os.path.join(self.directory, "gateway.log")

    def start(self) -> "Gateway":
        arguments = [str(gateway_binary()), "serve", "--socket", self.path, "--namespace", self.namespace, "--log-level", "warning"]
        if self.backend == "redis":
            # Redis's answers wait as long as the loaded machine makes them: the
            # tests check the client, not the gateway's 5 ms lookup timeout
            # (a lookup over it is answered "miss, do not store").
            arguments += [
                "--redis", f"unix://{os.environ['CACHE_GATEWAY_TEST_REDIS_SOCKET']}",
                "--lookup-timeout-ms", "60000", "--write-timeout-ms", "60000",
            ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(arguments + self.extra, stdout=log, stderr=subprocess.STDOUT)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Waits until the socket exists and the gateway answers hello (or the process dies)."""
        deadline = time.monotonic() + STARTUP_LIMIT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited with {self.process.returncode}: {Path(self.log).read_text()}")
            if os.path.exists(self.path):
                try:
                    reply = raw_request(self.path, [_protocol.hello(1, "tests", os.getpid())])[0]
                    if reply.type == _protocol.HELLO_REPLY:
                        return
                except OSError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not answer hello in time")
            time.sleep(0.01)

    def stats(self) -> Dict[str, Any]:
        replies = raw_request(self.path, [_protocol.hello(1, "tests", os.getpid()), _protocol.stats(2)])
        assert replies[1].type == _protocol.STATS_REPLY, replies[1]
        return dict(replies[1].fields[0])

    def signal(self, number: int) -> None:
        assert self.process is not None
        self.process.send_signal(number)

    def pause(self) -> None:
        """SIGSTOP, then waits until every thread of the gateway has stopped
        (a signal is delivered asynchronously: a thread may still answer a
        request meanwhile)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + STARTUP_LIMIT
        while True:
            states = []
            for task in tasks.iterdir():
                try:
                    # The state follows the command name, which is in parentheses.
                    states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
                except (OSError, IndexError):
                    pass
            if states and all(state in ("T", "t") for state in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not stop: thread states {states}")
            time.sleep(0.001)

    def resume(self) -> None:
        """SIGCONT."""
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the gateway dies without closing anything in order."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(timeout=STARTUP_LIMIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


#: Client settings for tests: replies may take long on a loaded machine, so the
#: lookup timeout is long; tests of timeouts set their own.
PATIENT = dict(lookup_timeout=10.0, connect_timeout=10.0, reconnect_initial_delay=0.0, reconnect_maximum_delay=0.0)


@pytest.fixture(params=backends())
def backend(request: Any) -> str:
    return str(request.param)


@pytest.fixture
def gateway(backend: str) -> Iterator[Gateway]:
    """A gateway on each backend, with the client configured to use it."""
    started = Gateway(backend).start()
    cache_gateway.configure(socket=started.path, **PATIENT)
    try:
        yield started
    finally:
        cache_gateway.configure(socket=started.path, **dataclass_defaults())
        started.stop()


def dataclass_defaults() -> Dict[str, Any]:
    defaults = _client.Settings()
    return {name: getattr(defaults, name) for name in _client.Settings.__dataclass_fields__ if name != "client_name"}


@pytest.fixture
def start_gateway() -> Iterator[Any]:
    """Starts gateways with extra flags; stops them at the end."""
    started: List[Gateway] = []

    def start(backend: str, extra: Optional[List[str]] = None) -> Gateway:
        gateway = Gateway(backend, extra).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()
