"""Per-process single flight: identical concurrent calls run the function once.

The first call for a key (the leader) computes; calls that arrive meanwhile,
threads or coroutines, wait for its outcome and get its *encoded* result,
which each decodes for itself. When the leader fails (it raised, or its
result cannot be encoded) each follower computes for itself: errors are
never shared. A call that would wait for itself (a recursive call with the
same arguments, or a thread blocking the event loop its leader runs on)
computes alone instead.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Dict, Hashable, List, Optional, Tuple

LEADER = "leader"
FOLLOWER = "follower"
ALONE = "alone"


def _current_task() -> Optional["asyncio.Task[Any]"]:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def _running_loop() -> Optional[asyncio.AbstractEventLoop]:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _resolve(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


class _Flight:
    __slots__ = ("thread", "task", "loop", "event", "futures", "result", "waiting")

    def __init__(self, thread: Optional[int], task: Any, loop: Optional[asyncio.AbstractEventLoop]) -> None:
        self.thread = thread
        self.task = task
        self.loop = loop
        self.event: Optional[threading.Event] = None
        self.futures: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]"]] = []
        self.result: Optional[bytes] = None
        self.waiting = 0


class SingleFlight:
    """The flights of one process, by key."""

    def __init__(self) -> None:
        """No flights."""
        self._lock = threading.Lock()
        self._flights: Dict[Hashable, _Flight] = {}
        self.pid = os.getpid()

    def join(self, key: Hashable) -> Tuple[str, Optional[bytes]]:
        """From a thread: ``(LEADER, None)``, ``(ALONE, None)`` or, after waiting, ``(FOLLOWER, encoded or None)``."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                self._flights[key] = _Flight(threading.get_ident(), None, None)
                return LEADER, None
            if flight.thread == threading.get_ident() or (flight.loop is not None and flight.loop is _running_loop()):
                return ALONE, None
            if flight.event is None:
                flight.event = threading.Event()
            event = flight.event
            flight.waiting += 1
        event.wait()
        return FOLLOWER, flight.result

    async def join_async(self, key: Hashable) -> Tuple[str, Optional[bytes]]:
        """``join`` for a coroutine, which waits without blocking its loop."""
        loop = asyncio.get_running_loop()
        task = _current_task()
        with self._lock:
            flight = self._flights.get(key)
            if flight is None:
                self._flights[key] = _Flight(None, task, loop)
                return LEADER, None
            if flight.task is task or flight.thread == threading.get_ident():
                return ALONE, None
            future = loop.create_future()
            flight.futures.append((loop, future))
            flight.waiting += 1
        return FOLLOWER, await future

    def finish(self, key: Hashable, encoded: Optional[bytes]) -> None:
        """Ends the leader's flight, handing ``encoded`` (None: it failed) to every follower."""
        with self._lock:
            flight = self._flights.pop(key, None)
        if flight is None:
            return
        flight.result = encoded
        if flight.event is not None:
            flight.event.set()
        for loop, future in flight.futures:
            try:
                loop.call_soon_threadsafe(_resolve, future, encoded)
            except RuntimeError:
                pass  # that loop closed

    @property
    def waiting(self) -> int:
        """How many calls wait for a leader now, over every flight (for tests and diagnostics)."""
        with self._lock:
            return sum(flight.waiting for flight in self._flights.values())


_flights = SingleFlight()


def flights() -> SingleFlight:
    """The process's single flight (a child after ``fork`` gets its own)."""
    global _flights
    if _flights.pid != os.getpid():
        _flights = SingleFlight()
    return _flights


def _after_fork_in_child() -> None:
    global _flights
    _flights = SingleFlight()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
