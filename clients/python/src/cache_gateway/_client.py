"""The process's clients: one per gateway socket, each with one connection,
opened lazily, reopened with backoff, and replaced in a child after ``fork``.

Everything here fails open: when the gateway is absent, slow or answers an
error, a lookup says ``BYPASS`` and the caller runs its function uncached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import threading
import time
from typing import Any, Dict, Optional, Tuple, cast

from . import _protocol as protocol
from ._connection import CLOSED, TIMEOUT, Connection, _Waiter
from ._states import CircuitBreaker, ConnectionStateMachine

HIT = 0
MISS = 1
BYPASS = 2

DEFAULT_SOCKET = "/run/cache-gateway/gateway.sock"
#: How long an invalidation may take: deleting a whole function can mean many entries.
INVALIDATE_TIMEOUT = 30.0


class GatewayError(Exception):
    """An invalidation (or another request that does not fail open) could not be done.

    ``code`` is the gateway's error code (docs/PROTOCOL.md section 3) when it
    answered with an error, else None (absent, timed out, connection lost).
    """

    def __init__(self, message: str, code: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code


def default_socket_path() -> str:
    """``CACHE_GATEWAY_SOCKET``, or the standard ``/run/cache-gateway/gateway.sock``."""
    return os.environ.get("CACHE_GATEWAY_SOCKET") or DEFAULT_SOCKET


@dataclasses.dataclass(frozen=True)
class Settings:
    """The client's settings; the defaults are the Swift client's. Times are in seconds."""

    #: A name for the gateway's logs.
    client_name: str = dataclasses.field(default_factory=lambda: os.path.basename(sys.argv[0] or "python") or "python")
    #: How long a lookup may take before the function runs uncached.
    lookup_timeout: float = 0.010
    #: How long a held lookup may wait for another worker's computation
    #: (docs/PROTOCOL.md section 2a); past it the function runs and its
    #: result is not stored. 0 does not announce held lookups: every miss
    #: then computes, as it does with a gateway without single-flight.
    held_lookup_timeout: float = 3.0
    #: How long connecting and saying hello may take.
    connect_timeout: float = 0.100
    #: The first wait after the gateway could not be reached; it doubles per failure.
    reconnect_initial_delay: float = 0.100
    #: The longest wait between two connect attempts.
    reconnect_maximum_delay: float = 5.0
    #: Consecutive lookup timeouts after which the client stops asking for a while.
    circuit_breaker_threshold: int = 3
    #: How long it stops asking the first time; doubles per failed probe.
    circuit_breaker_initial_open: float = 0.100
    #: The longest it stops asking at a time.
    circuit_breaker_maximum_open: float = 2.0


class Lookup:
    """What a lookup found: ``status`` (``HIT``, ``MISS`` or ``BYPASS``), the hit's
    bytes, and the connection to store a computed value through (None: do not store).
    """

    __slots__ = ("status", "value", "connection")

    def __init__(self, status: int, value: Optional[bytes] = None, connection: Optional[Connection] = None) -> None:
        self.status = status
        self.value = value
        self.connection = connection


_BYPASS = Lookup(BYPASS)


class Client:
    """A process's link to one gateway socket."""

    def __init__(self, path: str, settings: Settings) -> None:
        """A client that connects on first use."""
        self.path = path
        self.settings = settings
        self.pid = os.getpid()
        self._lock = threading.RLock()
        self._machine = ConnectionStateMachine(settings.reconnect_initial_delay, settings.reconnect_maximum_delay)
        self._breaker = CircuitBreaker(
            settings.circuit_breaker_threshold, settings.circuit_breaker_initial_open, settings.circuit_breaker_maximum_open
        )
        self._connection: Optional[Connection] = None

    # MARK: Connection

    def _access(self, for_lookup: bool) -> Tuple[str, Optional[Connection], bool]:
        """``("use", connection, reports)``, ``("connect", None, False)`` or ``("bypass", None, False)``,
        decided under the lock without I/O."""
        with self._lock:
            decision = self._machine.decide(time.monotonic)
            if decision == ConnectionStateMachine.USE:
                connection = self._connection
                if connection is None or connection.closed:
                    self._machine.connection_lost()
                    return "bypass", None, False
                if not for_lookup:
                    return "use", connection, False
                breaker = self._breaker.decide(time.monotonic)
                if breaker == CircuitBreaker.BYPASS:
                    return "bypass", None, False
                return "use", connection, breaker == CircuitBreaker.ALLOW_REPORTING
            if decision == ConnectionStateMachine.CONNECT:
                return "connect", None, False
            return "bypass", None, False

    def _open_socket(self) -> Optional[Connection]:
        try:
            return Connection(self.path, self.settings.connect_timeout)
        except OSError:
            self._connect_failed()
            return None

    def _connect_failed(self) -> None:
        with self._lock:
            self._machine.connect_failed(time.monotonic())

    @property
    def _hold_milliseconds(self) -> int:
        """``held_lookup_timeout`` in whole milliseconds for the wire (0: not held)."""
        return max(0, min(int(self.settings.held_lookup_timeout * 1000), protocol.MAXIMUM_TTL_MILLISECONDS))

    def _hello(self, request_id: int) -> bytes:
        return protocol.hello(request_id, self.settings.client_name[:256], os.getpid(), self._hold_milliseconds)

    def _finish_connecting(self, connection: Connection, reply: Any) -> Optional[Connection]:
        hello: Optional[protocol.HelloReply] = None
        if isinstance(reply, protocol.Reply) and reply.type == protocol.HELLO_REPLY:
            try:
                hello = protocol.hello_reply(reply)
            except protocol.ProtocolError:
                hello = None
        if hello is None or hello.protocol_version != protocol.PROTOCOL_VERSION:
            connection.close()
            self._connect_failed()
            return None
        connection.set_hello(hello)
        with self._lock:
            self._machine.connect_succeeded()
            self._breaker.reset()
            self._connection = connection
        connection.when_closed(self._connection_closed)
        return connection

    def _connection_closed(self, connection: Connection) -> None:
        with self._lock:
            if self._connection is connection:
                self._connection = None
                self._machine.connection_lost()

    def _connect(self) -> Optional[Connection]:
        connection = self._open_socket()
        if connection is None:
            return None
        waiter = _Waiter()
        request_id = connection.submit(self._hello, waiter)
        if request_id is None:
            self._connect_failed()
            return None
        return self._finish_connecting(connection, connection.wait(request_id, waiter, self.settings.connect_timeout))

    async def _connect_async(self) -> Optional[Connection]:
        connection = self._open_socket()
        if connection is None:
            return None
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        request_id = connection.submit(self._hello, waiter)
        if request_id is None:
            self._connect_failed()
            return None
        reply = await connection.wait_async(request_id, waiter, self.settings.connect_timeout)
        return self._finish_connecting(connection, reply)

    # MARK: Lookups and stores

    def lookup(self, fields: bytes, registering: Tuple[str, str], key: bytes) -> Lookup:
        """Looks ``key`` up, blocking this thread for at most the connect and lookup timeouts."""
        kind, connection, reports = self._access(True)
        if kind == "bypass":
            return _BYPASS
        if kind == "connect":
            connection = self._connect()
            if connection is None:
                return _BYPASS
            reports = False
        assert connection is not None
        waiter = _Waiter()
        request_id = connection.submit(lambda i: protocol.lookup(i, fields, key), waiter, registering)
        if request_id is None:
            return _BYPASS
        reply = connection.wait(request_id, waiter, self.settings.lookup_timeout)
        if self._must_hold(reply):
            self._answered(reports)
            return self._held_lookup(connection, fields, registering, key)
        return self._lookup_result(reply, connection, reports)

    def _held_lookup(self, connection: Connection, fields: bytes, registering: Tuple[str, str], key: bytes) -> Lookup:
        hold = self._hold_milliseconds
        waiter = _Waiter()
        request_id = connection.submit(lambda i: protocol.held_lookup(i, fields, key, hold), waiter, registering)
        if request_id is None:
            return _BYPASS
        return self._held_result(connection.wait(request_id, waiter, self.settings.held_lookup_timeout), connection)

    async def lookup_async(self, fields: bytes, registering: Tuple[str, str], key: bytes) -> Lookup:
        """``lookup`` for a coroutine: the event loop runs on while the reply is awaited."""
        kind, connection, reports = self._access(True)
        if kind == "bypass":
            return _BYPASS
        if kind == "connect":
            connection = await self._connect_async()
            if connection is None:
                return _BYPASS
            reports = False
        assert connection is not None
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        request_id = connection.submit(lambda i: protocol.lookup(i, fields, key), waiter, registering)
        if request_id is None:
            return _BYPASS
        reply = await connection.wait_async(request_id, waiter, self.settings.lookup_timeout)
        if self._must_hold(reply):
            self._answered(reports)
            hold = self._hold_milliseconds
            waiter = _Waiter(loop, loop.create_future())
            request_id = connection.submit(lambda i: protocol.held_lookup(i, fields, key, hold), waiter, registering)
            if request_id is None:
                return _BYPASS
            reply = await connection.wait_async(request_id, waiter, self.settings.held_lookup_timeout)
            return self._held_result(reply, connection)
        return self._lookup_result(reply, connection, reports)

    def _answered(self, reports: bool) -> None:
        """The gateway answered a lookup in time: the circuit breaker hears of it if it asked."""
        if reports:
            with self._lock:
                self._breaker.answered()

    def _must_hold(self, reply: Any) -> bool:
        """Whether ``reply`` is status 3 (``wait``) on a connection that announced held lookups."""
        return (
            isinstance(reply, protocol.Reply)
            and reply.type == protocol.LOOKUP_REPLY
            and len(reply.fields) > 0
            and reply.fields[0] == protocol.STATUS_WAIT
            and self._hold_milliseconds > 0
        )

    def _held_result(self, reply: Any, connection: Connection) -> Lookup:
        """What a held lookup found. Its timeout is the held wait's bound, not a
        sign of a slow gateway: it does not count against the circuit breaker,
        and the function runs without storing."""
        if reply is TIMEOUT:
            return _BYPASS
        return self._lookup_result(reply, connection, False)

    def _lookup_result(self, reply: Any, connection: Connection, reports: bool) -> Lookup:
        if reply is TIMEOUT:
            with self._lock:
                self._breaker.timed_out(time.monotonic())
            return _BYPASS
        self._answered(reports)
        if reply is CLOSED or reply.type != protocol.LOOKUP_REPLY or not reply.fields:
            return _BYPASS
        status = reply.fields[0]
        if status == protocol.STATUS_HIT and len(reply.fields) > 1 and isinstance(reply.fields[1], bytes):
            return Lookup(HIT, reply.fields[1], connection)
        if status == protocol.STATUS_MISS:
            return Lookup(MISS, None, connection)
        return _BYPASS

    def store(
        self,
        connection: Connection,
        fields: bytes,
        registering: Tuple[str, str],
        key: bytes,
        value: bytes,
        ttl_milliseconds: int,
        compute_microseconds: int,
    ) -> bool:
        """Stores ``value`` without waiting for the reply; False when it is above the gateway's limit
        or could not be written."""
        if len(value) > connection.max_value_size:
            return False
        compute = min(max(0, compute_microseconds), 2**64 - 1)
        request_id = connection.submit(
            lambda i: protocol.store(i, fields, key, ttl_milliseconds, compute, value), None, registering
        )
        return request_id is not None

    # MARK: Requests that do not fail open

    def request(self, build: Any, timeout: float) -> protocol.Reply:
        """Sends ``build(id)`` (connecting if needed) and returns the reply; raises ``GatewayError``
        when there is no connection, no reply in time, or an error reply."""
        kind, connection, _ = self._access(False)
        if kind == "bypass":
            raise GatewayError(f"the gateway at {self.path} is not reachable now")
        if kind == "connect":
            connection = self._connect()
            if connection is None:
                raise GatewayError(f"cannot connect to the gateway at {self.path}")
        assert connection is not None
        waiter = _Waiter()
        request_id = connection.submit(build, waiter)
        if request_id is None:
            raise GatewayError(f"the connection to the gateway at {self.path} failed")
        return self._checked(connection.wait(request_id, waiter, timeout))

    async def request_async(self, build: Any, timeout: float) -> protocol.Reply:
        """``request`` for a coroutine."""
        kind, connection, _ = self._access(False)
        if kind == "bypass":
            raise GatewayError(f"the gateway at {self.path} is not reachable now")
        if kind == "connect":
            connection = await self._connect_async()
            if connection is None:
                raise GatewayError(f"cannot connect to the gateway at {self.path}")
        assert connection is not None
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop, loop.create_future())
        request_id = connection.submit(build, waiter)
        if request_id is None:
            raise GatewayError(f"the connection to the gateway at {self.path} failed")
        return self._checked(await connection.wait_async(request_id, waiter, timeout))

    def _checked(self, reply: Any) -> protocol.Reply:
        if reply is TIMEOUT:
            raise GatewayError(f"the gateway at {self.path} did not answer in time")
        if reply is CLOSED:
            raise GatewayError(f"the connection to the gateway at {self.path} closed")
        if reply.type == protocol.ERROR:
            code = reply.fields[0] if reply.fields and type(reply.fields[0]) is int else None
            message = reply.fields[1] if len(reply.fields) > 1 else ""
            raise GatewayError(f"the gateway answered error {code}: {message}", code)
        return cast(protocol.Reply, reply)

    # MARK: Diagnostics

    @property
    def connection(self) -> Optional[Connection]:
        """The open connection, if any (for tests and diagnostics)."""
        with self._lock:
            return self._connection

    @property
    def circuit_state(self) -> str:
        """``closed``, ``open`` or ``halfOpen`` (for tests and diagnostics)."""
        with self._lock:
            return self._breaker.state

    def close(self) -> None:
        """Closes the connection, if open."""
        with self._lock:
            connection = self._connection
            self._connection = None
        if connection is not None:
            connection.close()

    def abandon(self) -> None:
        """Lets go of the parent's connection in a child after ``fork``."""
        connection = self._connection
        self._connection = None
        if connection is not None:
            connection.abandon()


_settings = Settings()
_clients: Dict[str, Client] = {}
_clients_lock = threading.Lock()
_default_path: Optional[str] = None


def client_for(path: Optional[str]) -> Client:
    """The process's client for ``path`` (None: the configured or default socket)."""
    if path is None:
        path = _default_path or default_socket_path()
    found = _clients.get(path)
    if found is not None and found.pid == os.getpid():
        return found
    with _clients_lock:
        found = _clients.get(path)
        if found is None or found.pid != os.getpid():
            found = Client(path, _settings)
            _clients[path] = found
        return found


def configure(socket: Optional[str] = None, **settings: Any) -> None:
    """Sets the default socket and the settings (``Settings``' fields) of every client
    made from now on; open clients are closed, so the next call connects anew."""
    global _settings, _default_path
    with _clients_lock:
        if settings:
            _settings = dataclasses.replace(_settings, **settings)
        if socket is not None:
            _default_path = socket
        previous = list(_clients.values())
        _clients.clear()
    for client in previous:
        if client.pid == os.getpid():
            client.close()


def _after_fork_in_child() -> None:
    # Threads of the parent are gone and may have held these locks: start afresh.
    global _clients_lock
    _clients_lock = threading.Lock()
    for client in list(_clients.values()):
        client.abandon()
    _clients.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
