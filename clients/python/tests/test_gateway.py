"""The client against real gateway processes, on the embedded store and on Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import importlib
import multiprocessing
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, NamedTuple

import pytest

import cache_gateway
from cache_gateway import _client, _singleflight, cache, invalidate, invalidate_all, key_of, version_of

from conftest import PATIENT, STARTUP_LIMIT, Gateway


def hits(gateway: Gateway) -> int:
    return int(gateway.stats()["hits"])


# MARK: Hits and keys


def test_first_call_computes_second_call_hits(gateway: Gateway) -> None:
    calls: List[int] = []

    @cache(ttl=300)
    def get_user_data(user_id: int) -> Dict[str, Any]:
        calls.append(user_id)
        return {"id": user_id, "name": f"user {user_id}"}

    assert get_user_data(7) == {"id": 7, "name": "user 7"}
    assert calls == [7]
    assert get_user_data(7) == {"id": 7, "name": "user 7"}
    assert calls == [7]
    assert hits(gateway) == 1
    assert get_user_data(8)["id"] == 8
    assert calls == [7, 8]


def test_equivalent_calls_share_one_key_and_different_calls_do_not(gateway: Gateway) -> None:
    calls: List[Any] = []

    @cache(ttl=300)
    def report(region: str, limit: int = 10, *, filters: Any = None) -> str:
        calls.append((region, limit, filters))
        return f"{region}/{limit}/{filters}"

    first = report("eu", filters={"a": 1, "b": [1, 2]})
    assert report("eu", 10, filters={"b": [1, 2], "a": 1}) == first
    assert report(region="eu", filters={"b": [1, 2], "a": 1}, limit=10) == first
    assert report(filters={"a": 1, "b": [1, 2]}, region="eu") == first
    assert len(calls) == 1
    assert key_of(report, "eu", filters={"a": 1, "b": [1, 2]}) == key_of(report, filters={"b": [1, 2], "a": 1}, limit=10, region="eu")

    report("eu", 11, filters={"a": 1, "b": [1, 2]})
    report("eu", filters={"a": 1, "b": [2, 1]})
    report("eu", filters={"a": 1.0, "b": [1, 2]})
    report("us", filters={"a": 1, "b": [1, 2]})
    report("eu")
    assert len(calls) == 6
    keys = {
        key_of(report, "eu", filters={"a": 1, "b": [1, 2]}),
        key_of(report, "eu", 11, filters={"a": 1, "b": [1, 2]}),
        key_of(report, "eu", filters={"a": 1, "b": [2, 1]}),
        key_of(report, "eu", filters={"a": 1.0, "b": [1, 2]}),
        key_of(report, "us", filters={"a": 1, "b": [1, 2]}),
        key_of(report, "eu"),
        key_of(report, "eu", filters=None),
    }
    assert len(keys) == 6  # the last two are one call


def test_variadic_arguments_are_keyed(gateway: Gateway) -> None:
    calls: List[Any] = []

    @cache(ttl=300)
    def total(*numbers: int, **options: Any) -> int:
        calls.append(numbers)
        return sum(numbers)

    assert total(1, 2, scale=1, unit="x") == 3
    assert total(1, 2, unit="x", scale=1) == 3
    assert total(2, 1, unit="x", scale=1) == 3
    assert len(calls) == 2


def test_a_bad_argument_raises_a_type_error_naming_it(gateway: Gateway) -> None:
    calls: List[Any] = []

    @cache(ttl=300)
    def lookup(user_id: int, connection: Any) -> int:
        calls.append(user_id)
        return user_id

    with pytest.raises(TypeError, match=r"argument 'connection' cannot be part of a cache key.*builtins\.object"):
        lookup(1, object())
    with pytest.raises(TypeError, match=r"argument 'connection' \(at \['pool'\]\[0\]\)"):
        lookup(1, {"pool": [threading.Lock()]})
    assert calls == []  # nothing ran: no silent repr() key, no uncached run

    @cache(ttl=300, key=lambda user_id, connection: user_id)
    def lookup_by_id(user_id: int, connection: Any) -> int:
        calls.append(user_id)
        return user_id

    assert lookup_by_id(1, object()) == 1
    assert lookup_by_id(1, object()) == 1
    assert calls == [1]

    @cache(ttl=300, key=lambda user_id: object())
    def badly_keyed(user_id: int) -> int:
        return user_id

    with pytest.raises(TypeError, match="the value that key= returned"):
        badly_keyed(1)


def test_socket_and_name_options(gateway: Gateway, tmp_path: Path) -> None:
    cache_gateway.configure(socket=str(tmp_path / "absent.sock"), **PATIENT)
    calls: List[int] = []

    @cache(ttl=300, socket=gateway.path, name="renamed")
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert f(1) == f(1) == 1
    assert calls == [1]  # served by the gateway of socket=, not the absent default
    assert cache_gateway.name_of(f) == f"{__name__}.renamed"
    assert invalidate_all(f) == 1


# MARK: Methods


@dataclasses.dataclass(frozen=True)
class Region:
    name: str


class UserService:
    calls: List[Any] = []

    def __init__(self, region: str) -> None:
        self.region = region
        self.connection = object()

    @cache(ttl=300, key=lambda self, user_id: (self.region, user_id))
    def get(self, user_id: int) -> str:
        UserService.calls.append(("get", self.region, user_id))
        return f"{self.region}:{user_id}"

    @cache(ttl=300)
    def plain(self, user_id: int) -> int:
        return user_id

    @staticmethod
    @cache(ttl=300)
    def below_static(x: int) -> int:
        UserService.calls.append(("below_static", x))
        return x

    @cache(ttl=300)
    @staticmethod
    def above_static(x: int) -> int:
        UserService.calls.append(("above_static", x))
        return x

    @classmethod
    @cache(ttl=300)
    def below_class(cls, x: int) -> str:
        UserService.calls.append(("below_class", cls.__name__, x))
        return f"{cls.__name__}:{x}"

    @cache(ttl=300)
    @classmethod
    def above_class(cls, x: int) -> str:
        UserService.calls.append(("above_class", cls.__name__, x))
        return f"{cls.__name__}:{x}"


class SpecialService(UserService):
    pass


@dataclasses.dataclass(frozen=True)
class Account:
    id: int

    @cache(ttl=300)
    def balance(self, currency: str) -> str:
        UserService.calls.append(("balance", self.id, currency))
        return f"{self.id} {currency}"


def test_methods_static_and_class_methods(gateway: Gateway) -> None:
    UserService.calls.clear()
    eu, eu_again, us = UserService("eu"), UserService("eu"), UserService("us")
    assert eu.get(1) == "eu:1" and eu_again.get(1) == "eu:1" and us.get(1) == "us:1"
    assert UserService.calls == [("get", "eu", 1), ("get", "us", 1)]
    with pytest.raises(TypeError, match=r"argument 'self' .*pass key="):
        eu.plain(1)

    UserService.calls.clear()
    for _ in range(2):
        assert UserService.below_static(2) == 2 and eu.above_static(2) == 2
        assert UserService.below_class(3) == "UserService:3" and SpecialService.below_class(3) == "SpecialService:3"
        assert eu.above_class(3) == "UserService:3" and SpecialService.above_class(3) == "SpecialService:3"
        assert Account(1).balance("EUR") == "1 EUR" and Account(2).balance("EUR") == "2 EUR"
    assert sorted(UserService.calls) == sorted([
        ("below_static", 2), ("above_static", 2),
        ("below_class", "UserService", 3), ("below_class", "SpecialService", 3),
        ("above_class", "UserService", 3), ("above_class", "SpecialService", 3),
        ("balance", 1, "EUR"), ("balance", 2, "EUR"),
    ])
    assert cache_gateway.name_of(UserService.get) == f"{__name__}.UserService.get"
    assert invalidate(eu.get, 1) == 1
    assert invalidate(Account(1).balance, "EUR") == 1
    assert invalidate(SpecialService.below_class, 3) == 1


# MARK: Values


class Pair(NamedTuple):
    left: int
    right: str


@dataclasses.dataclass
class Profile:
    id: int
    tags: List[str]
    seen: datetime.datetime


def test_values_of_every_documented_type_come_back_from_a_hit(gateway: Gateway) -> None:
    calls: List[int] = []
    seen = datetime.datetime(2026, 12, 6, 2, 0, tzinfo=datetime.timezone.utc)

    @cache(ttl=datetime.timedelta(minutes=5))
    def profile(user_id: int) -> Profile:
        calls.append(user_id)
        return Profile(user_id, ["a", "b"], seen)

    @cache(ttl=300)
    def mixed(n: int) -> Any:
        calls.append(n)
        return {"pair": Pair(n, "x"), "raw": b"\x00\x01", "naive": datetime.datetime(2026, 1, 2, 3, 4), "day": datetime.date(2026, 1, 2)}

    assert profile(1) == profile(1) == Profile(1, ["a", "b"], seen)
    assert isinstance(profile(1), Profile)
    assert mixed(2) == mixed(2)
    assert isinstance(mixed(2)["pair"], Pair)
    assert calls == [1, 2]


def test_a_value_that_cannot_be_encoded_is_returned_and_not_stored(gateway: Gateway, caplog: Any) -> None:
    calls: List[int] = []

    class Opaque:
        pass

    @cache(ttl=300)
    def make(n: int) -> Any:
        calls.append(n)
        return Opaque()

    assert isinstance(make(1), Opaque)
    assert isinstance(make(1), Opaque)
    assert calls == [1, 1]
    assert gateway.stats()["stores"] == 0
    assert "is not cached" in caplog.text


def test_a_value_above_the_gateways_limit_is_returned_and_not_stored(backend: str, start_gateway: Any) -> None:
    gateway = start_gateway(backend, ["--max-value-size", "1000"])
    cache_gateway.configure(socket=gateway.path, **PATIENT)
    calls: List[int] = []

    @cache(ttl=300)
    def blob(size: int) -> bytes:
        calls.append(size)
        return b"x" * size

    assert blob(2000) == blob(2000) == b"x" * 2000
    assert blob(10) == blob(10)
    assert calls == [2000, 2000, 10]


def test_errors_propagate_and_are_never_cached(gateway: Gateway) -> None:
    calls: List[int] = []

    @cache(ttl=300)
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return n

    with pytest.raises(ValueError):
        flaky(1)
    assert flaky(1) == 1 and flaky(1) == 1
    assert calls == [1, 1]


def test_ttl_zero_runs_uncached(gateway: Gateway) -> None:
    calls: List[int] = []

    @cache(ttl=0)
    def uncached(n: int) -> int:
        calls.append(n)
        return n

    cost_of_stats = -gateway.stats()["requests"] + gateway.stats()["requests"]
    before = gateway.stats()["requests"]
    uncached(object())  # type: ignore[arg-type]  # no key is made either
    uncached(1)
    uncached(1)
    assert len(calls) == 3
    assert gateway.stats()["requests"] - before == cost_of_stats  # no request but the test's own


def test_an_entry_expires_after_its_ttl(gateway: Gateway) -> None:
    calls: List[int] = []

    @cache(ttl=0.05)
    def short(n: int) -> int:
        calls.append(n)
        return n

    short(1)
    short(1)
    assert calls == [1]
    deadline = time.monotonic() + STARTUP_LIMIT
    while len(calls) == 1 and time.monotonic() < deadline:
        short(1)
    assert len(calls) == 2


# MARK: Invalidation


def test_invalidate_and_invalidate_all(gateway: Gateway) -> None:
    calls: List[Any] = []

    @cache(ttl=300)
    def price(product: str, quantity: int = 1) -> int:
        calls.append((product, quantity))
        return quantity * 3

    price("apple")
    price("pear")
    assert invalidate(price, product="apple", quantity=1) == 1
    assert invalidate(price, "apple") == 0
    price("apple")
    price("pear")
    assert calls == [("apple", 1), ("pear", 1), ("apple", 1)]
    assert invalidate_all(price) == 2
    price("pear")
    assert len(calls) == 4
    assert invalidate_all(price, version="not-a-version") == 0
    assert asyncio.run(cache_gateway.invalidate_all_async(price)) == 1


def test_invalidate_does_not_fail_open(tmp_path: Path) -> None:
    cache_gateway.configure(socket=str(tmp_path / "absent.sock"), **PATIENT)

    @cache(ttl=300)
    def f(x: int) -> int:
        return x

    with pytest.raises(cache_gateway.GatewayError):
        invalidate(f, 1)
    with pytest.raises(TypeError):
        invalidate(len)


# MARK: Versions


def write_module(directory: Path, source: str) -> Any:
    """Imports ``versioned`` from ``directory`` (a fresh module object each time)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "versioned.py").write_text(textwrap.dedent(source))
    sys.modules.pop("versioned", None)
    sys.path.insert(0, str(directory))
    try:
        importlib.invalidate_caches()
        return importlib.import_module("versioned")
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("versioned", None)


ORIGINAL = '''
    from cache_gateway import cache

    CALLS = []

    def helper(x):
        return x + 1

    @cache(ttl=300)
    def compute(x):
        """Doubles the helper's answer."""
        CALLS.append(x)
        return helper(x) * 2
'''

COMMENTS_ONLY = '''
    # A new comment at the top.
    from cache_gateway import cache

    CALLS = []

    def helper(x):   # the helper, reformatted
        return (x +
                1)

    @cache(ttl=600)   # another TTL: not part of the version
    def compute(x):
        """A reworded docstring."""

        # Doubling happens here.
        CALLS.append(x)
        return helper(x) * 2
'''

NEW_BODY = ORIGINAL.replace("return helper(x) * 2", "return helper(x) * 3")
NEW_HELPER = ORIGINAL.replace("return x + 1", "return x + 2")


def test_versions_follow_the_code_not_its_formatting(gateway: Gateway, tmp_path: Path) -> None:
    original = write_module(tmp_path / "a", ORIGINAL)
    assert original.compute(5) == 12
    assert original.CALLS == [5]

    reformatted = write_module(tmp_path / "b", COMMENTS_ONLY)
    assert version_of(reformatted.compute) == version_of(original.compute)
    assert reformatted.compute(5) == 12
    assert reformatted.CALLS == []  # served from the original's entry

    changed = write_module(tmp_path / "c", NEW_BODY)
    assert version_of(changed.compute) != version_of(original.compute)
    assert changed.compute(5) == 18  # never the old 12
    assert changed.CALLS == [5]

    helper_changed = write_module(tmp_path / "d", NEW_HELPER)
    assert version_of(helper_changed.compute) not in (version_of(original.compute), version_of(changed.compute))
    assert helper_changed.compute(5) == 14
    assert helper_changed.CALLS == [5]

    assert cache_gateway.name_of(changed.compute) == cache_gateway.name_of(original.compute) == "versioned.compute"
    # The original's entry is still there for the original's version.
    again = write_module(tmp_path / "e", ORIGINAL)
    assert again.compute(5) == 12 and again.CALLS == []


def test_without_source_the_version_comes_from_the_code_object() -> None:
    namespace: Dict[str, Any] = {"cache": cache}
    exec("@cache(ttl=1)\ndef f(x):\n    return x + 1\n", namespace)
    first = version_of(namespace["f"])
    exec("@cache(ttl=1)\ndef f(x):\n    return x + 2\n", namespace)
    second = version_of(namespace["f"])
    exec("@cache(ttl=1)\ndef f(x):\n    return x + 2  # same code\n", namespace)
    assert first != second == version_of(namespace["f"])
    assert len(first) == 64


def test_version_argument_pins_the_version() -> None:
    @cache(ttl=1, version="7")
    def pinned() -> int:
        return 1

    assert version_of(pinned) == "7"


# MARK: Fail-open


def test_fail_open_with_the_gateway_absent(tmp_path: Path) -> None:
    cache_gateway.configure(socket=str(tmp_path / "absent.sock"), lookup_timeout=10.0, connect_timeout=10.0)
    calls: List[int] = []

    @cache(ttl=300)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert [f(1) for _ in range(3)] == [2, 2, 2]
    assert calls == [1, 1, 1]
    client = _client.client_for(None)
    assert client._machine.state == "backingOff"  # calls now run without connect attempts
    assert asyncio.run(async_double(4)) == 8


@cache(ttl=300)
async def async_double(x: int) -> int:
    await asyncio.sleep(0)
    return x * 2


def test_fail_open_when_the_gateway_is_killed_mid_run(backend: str, start_gateway: Any) -> None:
    gateway = start_gateway(backend)
    cache_gateway.configure(socket=gateway.path, **PATIENT)
    calls: List[int] = []

    @cache(ttl=300)
    def f(x: int) -> int:
        calls.append(x)
        return x * 2

    assert f(1) == f(1) == 2
    assert calls == [1]
    gateway.kill()
    assert [f(1) for _ in range(3)] == [2, 2, 2]
    assert calls == [1, 1, 1, 1]

    # A gateway back on the same socket is used again (the memory store starts empty).
    gateway.start()
    deadline = time.monotonic() + STARTUP_LIMIT
    while True:
        before = len(calls)
        assert f(2) == 4 and f(2) == 4
        if len(calls) <= before + 1:  # the second call (at least) was a hit
            break
        assert time.monotonic() < deadline, "the client never used the restarted gateway"
    assert _client.client_for(None).connection is not None


def test_a_gateway_that_stops_answering_opens_the_circuit(backend: str, start_gateway: Any) -> None:
    gateway = start_gateway(backend)
    cache_gateway.configure(
        socket=gateway.path, lookup_timeout=0.05, connect_timeout=10.0, circuit_breaker_initial_open=60.0, circuit_breaker_maximum_open=60.0
    )
    calls: List[int] = []

    @cache(ttl=300)
    def f(x: int) -> int:
        calls.append(x)
        return x

    @cache(ttl=300)
    async def g(x: int) -> int:
        return x

    # Connected and registered while the gateway answers (however slowly).
    client = _client.client_for(None)
    while client.connection is None:
        f(0)
    gateway.pause()
    try:
        trace = []
        for n in range(3):
            assert f(n) == n
            trace.append((client.circuit_state, client._breaker.timeouts, client.connection is not None))
        assert client.circuit_state == "open", trace
        connection = client.connection
        assert connection is not None
        sent = connection._next_id
        assert f(9) == 9 and asyncio.run(g(9)) == 9
        # The circuit is open for 60 s: these calls sent nothing and waited for nothing.
        assert connection._next_id == sent
        assert client.circuit_state == "open"
        assert calls == [0, 0, 1, 2, 9] or calls[-4:] == [0, 1, 2, 9]
    finally:
        gateway.resume()


# MARK: Concurrency


def test_threads_share_the_connection_and_single_flight(gateway: Gateway) -> None:
    release = threading.Event()
    calls: List[int] = []

    @cache(ttl=300)
    def slow(x: int) -> int:
        calls.append(x)
        release.wait(STARTUP_LIMIT)
        return x * 10

    results: Dict[int, int] = {}

    def worker(index: int) -> None:
        results[index] = slow(1)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    # Wait for the event: the leader computing and seven threads following it.
    deadline = time.monotonic() + STARTUP_LIMIT
    while (_singleflight.flights().waiting < 7 or not calls) and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join()
    assert calls == [1]
    assert results == {i: 10 for i in range(8)}

    # Many threads, many keys, every answer right.
    @cache(ttl=300)
    def square(x: int) -> int:
        return x * x

    errors: List[str] = []

    def hammer(seed: int) -> None:
        for i in range(200):
            n = (seed * 7 + i) % 50
            if square(n) != n * n:
                errors.append(f"{n}")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _client.client_for(None).connection is not None


def test_asyncio_calls_do_not_block_the_event_loop(gateway: Gateway) -> None:
    calls: List[int] = []

    @cache(ttl=300)
    async def fetch(x: int) -> Dict[str, int]:
        calls.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def main() -> None:
        assert await fetch(1) == {"x": 1}
        assert await fetch(1) == {"x": 1}
        assert calls == [1]
        results = await asyncio.gather(*(fetch(i % 5) for i in range(50)))
        assert results == [{"x": i % 5} for i in range(50)]
        # (A call whose miss came after the leader finished computes again:
        # single flight joins overlapping computations only.)
        assert set(calls) == {0, 1, 2, 3, 4}

        # While the gateway is stopped, a lookup waits for its reply (the
        # lookup timeout is long here); the loop runs other tasks meanwhile.
        gateway.pause()
        ticked = asyncio.Event()
        try:
            lookup = asyncio.ensure_future(fetch(77))

            async def tick() -> None:
                ticked.set()

            ticker = asyncio.ensure_future(tick())
            done, _ = await asyncio.wait({lookup, ticker}, return_when=asyncio.FIRST_COMPLETED)
            assert ticker in done and lookup not in done and ticked.is_set()
        finally:
            gateway.resume()
        assert await lookup == {"x": 77}
        assert await fetch(77) == {"x": 77}
        assert calls.count(77) == 1
        del results

    asyncio.run(main())


def test_asyncio_single_flight(gateway: Gateway) -> None:
    calls: List[int] = []

    async def main() -> None:
        release = asyncio.Event()

        @cache(ttl=300)
        async def slow(x: int) -> int:
            calls.append(x)
            await release.wait()
            return x + 1

        tasks = [asyncio.ensure_future(slow(1)) for _ in range(5)]
        while _singleflight.flights().waiting < 4:
            await asyncio.sleep(0)
        release.set()
        assert await asyncio.gather(*tasks) == [2] * 5
        assert calls == [1]

    asyncio.run(main())


@cache(ttl=300)
def forked_square(x: int) -> Dict[str, int]:
    return {"square": x * x, "pid": os.getpid()}


def _pool_call(x: int) -> Any:
    client = _client.client_for(None)
    value = forked_square(x)
    return value, os.getpid(), client.connection is not None and client.connection.pid == os.getpid()


def test_a_forked_child_opens_its_own_connection(gateway: Gateway) -> None:
    parent_value = forked_square(3)
    parent_connection = _client.client_for(None).connection
    assert parent_connection is not None
    accepted = int(gateway.stats()["connectionsAccepted"])

    # Locks held while the process forks (by another thread, say) must not hang the child.
    read, write = os.pipe()
    _client._clients_lock.acquire()
    _singleflight.flights()._lock.acquire()
    try:
        pid = os.fork()
    finally:
        if pid != 0:
            _client._clients_lock.release()
            _singleflight.flights()._lock.release()
    if pid == 0:  # the child
        status = 1
        try:
            value = forked_square(3)
            fresh = forked_square(4)
            connection = _client.client_for(None).connection
            ok = (
                value == parent_value  # a hit: the parent's entry
                and fresh["pid"] == os.getpid()  # computed here
                and connection is not None
                and connection is not parent_connection
                and connection.pid == os.getpid()
            )
            os.write(write, b"ok" if ok else repr((value, fresh, connection)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert report == b"ok"
    # The parent's connection outlived the child's exit.
    assert _client.client_for(None).connection is parent_connection and not parent_connection.closed
    assert forked_square(3) == parent_value
    assert int(gateway.stats()["connectionsAccepted"]) >= accepted + 1

    context = multiprocessing.get_context("fork")
    with context.Pool(2) as pool:
        results = pool.map(_pool_call, [5, 6, 5, 6])
    for (value, pid, own_connection), x in zip(results, [5, 6, 5, 6]):
        assert value["square"] == x * x and own_connection and pid != os.getpid()


# MARK: Held lookups (single-flight across processes)

_WORKER = textwrap.dedent(
    """
    import os, sys, time
    import cache_gateway
    from cache_gateway import cache

    socket, directory = sys.argv[1], sys.argv[2]
    held = float(sys.argv[3])
    cache_gateway.configure(socket=socket, lookup_timeout=10.0, connect_timeout=10.0, held_lookup_timeout=held)

    @cache(ttl=300, name="tests.held.slow", version="1")
    def slow(x):
        with open(os.path.join(directory, "computations"), "a") as log:
            log.write(f"{os.getpid()}\\n")
        # The test releases the computation once the other workers are held.
        while not os.path.exists(os.path.join(directory, "release")):
            time.sleep(0.005)
        return {"x": x, "by": os.getpid()}

    print(slow(7)["by"], flush=True)
    """
)


def _start_workers(gateway: Gateway, directory: Path, count: int, held: float) -> List[Any]:
    import subprocess

    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, gateway.path, str(directory), str(held)],
            stdout=subprocess.PIPE,
            env=environment,
        )
        for _ in range(count)
    ]


def _wait_for_stat(gateway: Gateway, name: str, value: int) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT
    while int(gateway.stats().get(name, 0)) < value:
        assert time.monotonic() < deadline, f"{name} did not reach {value}: {gateway.stats()}"
        time.sleep(0.01)


def test_processes_that_miss_one_key_at_once_compute_it_once(backend: str, start_gateway: Any, tmp_path: Path) -> None:
    # A fill bound longer than the test can take: only the computing worker's store ends the wait.
    gateway = start_gateway(backend, ["--fill-wait-max-ms", "600000"])
    workers = _start_workers(gateway, tmp_path, 4, held=600.0)
    try:
        # One worker computes; the other three are held by the gateway.
        _wait_for_stat(gateway, "lookupsHeldNow", 3)
        (tmp_path / "release").touch()
        outputs = [worker.communicate(timeout=STARTUP_LIMIT)[0].decode().strip() for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    computations = (tmp_path / "computations").read_text().split()
    assert len(computations) == 1
    # Every worker returns the one computed value, whose "by" names the computing process.
    assert outputs == computations * 4
    assert all(worker.returncode == 0 for worker in workers)


def test_a_client_that_does_not_announce_held_lookups_computes_as_before(backend: str, start_gateway: Any, tmp_path: Path) -> None:
    gateway = start_gateway(backend, ["--fill-wait-max-ms", "600000"])
    first = _start_workers(gateway, tmp_path, 1, held=600.0)
    others: List[Any] = []
    try:
        _wait_for_stat(gateway, "fills", 1)
        # The first worker announced held lookups: on Redis its first miss may
        # be told to wait while the gateway takes the fill lease. What the
        # workers that do not announce them get is counted from here.
        before = gateway.stats()
        # Without the announcement a miss while the fill runs is told to compute.
        others = _start_workers(gateway, tmp_path, 2, held=0.0)
        deadline = time.monotonic() + STARTUP_LIMIT
        while len((tmp_path / "computations").read_text().split()) < 3:
            assert time.monotonic() < deadline, "the workers without held lookups did not compute"
            time.sleep(0.01)
        (tmp_path / "release").touch()
        for worker in first + others:
            worker.communicate(timeout=STARTUP_LIMIT)
    finally:
        for worker in first + others:
            if worker.poll() is None:
                worker.kill()
    after = gateway.stats()
    for name in ("lookupsHeld", "fillWaits"):
        assert int(after.get(name, 0)) == int(before.get(name, 0)), name
