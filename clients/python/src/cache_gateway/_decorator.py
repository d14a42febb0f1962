"""``@cache(ttl=...)`` and ``invalidate``/``invalidate_all``."""

from __future__ import annotations

import datetime
import functools
import hashlib
import inspect
import logging
import threading
import time
import typing
from typing import Any, Awaitable, Callable, Optional, Tuple, TypeVar, Union, cast

from . import _protocol as protocol
from . import _values as values
from . import _version
from ._client import HIT, INVALIDATE_TIMEOUT, Client, GatewayError, Lookup, client_for
from ._keys import Unencodable, _array_header, canonical
from ._singleflight import ALONE, FOLLOWER, LEADER, flights

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("cache_gateway")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def ttl_milliseconds(ttl: Union[int, float, datetime.timedelta]) -> Optional[int]:
    """A TTL (seconds, or a ``timedelta``) in a store's milliseconds: None for zero or
    less (the call is not cached), at least 1 and at most 365 days."""
    if isinstance(ttl, datetime.timedelta):
        milliseconds = ttl // datetime.timedelta(milliseconds=1)
        positive = ttl > datetime.timedelta(0)
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        if ttl != ttl:
            raise ValueError("cache: ttl is NaN")
        positive = ttl > 0
        milliseconds = int(min(float(ttl) * 1000, float(protocol.MAXIMUM_TTL_MILLISECONDS)))
    else:
        raise TypeError(f"cache: ttl must be a number of seconds or a datetime.timedelta, not {type(ttl).__name__}")
    if not positive:
        return None
    return min(max(1, milliseconds), protocol.MAXIMUM_TTL_MILLISECONDS)


class _Resolved:
    """What a cached function needs per call, worked out on its first call."""

    __slots__ = ("version", "fields", "registering")

    def __init__(self, name: str, version: str) -> None:
        self.version = version
        self.fields = protocol.function_fields(name, version)
        self.registering = (name, version)


class CachedFunction:
    """A cached function's settings and identity: its full name, version and keys.

    The return annotation's dataclasses and NamedTuples are registered for
    decoding on the first call (``resolved``), when the classes it names exist.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        ttl: Union[int, float, datetime.timedelta],
        version: Optional[str],
        name: Optional[str],
        key: Optional[Callable[..., Any]],
        socket: Optional[str],
    ) -> None:
        """Checks the settings; the version is computed on the first call."""
        self.function = function
        self.ttl_milliseconds = ttl_milliseconds(ttl)
        self.name = f"{function.__module__}.{name if name is not None else function.__qualname__}"
        if not 1 <= len(self.name.encode("utf-8", "surrogatepass")) <= protocol.MAXIMUM_FUNCTION_BYTES:
            raise ValueError(f"cache: the function's full name {self.name!r} must be 1 to 512 UTF-8 bytes")
        if version is not None:
            if not isinstance(version, str) or not 1 <= len(version.encode()) <= protocol.MAXIMUM_VERSION_BYTES:
                raise ValueError("cache: version= must be a string of 1 to 128 UTF-8 bytes")
        if key is not None and not callable(key):
            raise TypeError("cache: key= must be a callable that takes the function's arguments")
        self.key_function = key
        self.socket = socket
        self.signature = inspect.signature(function)
        parameters = list(self.signature.parameters.values())
        self.parameter_names = [parameter.name for parameter in parameters]
        simple = all(parameter.kind in _POSITIONAL for parameter in parameters)
        #: With only positional parameters, a call with all of them positionally needs no binding.
        self.positional_count = len(parameters) if simple else -1
        self.header = _array_header(len(parameters))
        self.is_async = inspect.iscoroutinefunction(function)
        self._resolved: Optional[_Resolved] = None
        self._resolve_lock = threading.Lock()
        self._warned = False
        # Computed now, while the source on disk is the one being imported: a
        # file replaced later (a deploy before the restart) must not give the
        # running code the new code's version.
        self.version = version if version is not None else _version.compute(function)

    def resolved(self) -> _Resolved:
        """The version and its packed fields, computed once (on the first call)."""
        resolved = self._resolved
        if resolved is not None:
            return resolved
        with self._resolve_lock:
            if self._resolved is None:
                try:
                    hints = typing.get_type_hints(self.function)
                    if "return" in hints:
                        values.register_annotation(hints["return"])
                except Exception:  # unresolvable annotations only cost the automatic registration
                    pass
                self._resolved = _Resolved(self.name, self.version)
            return self._resolved

    def key(self, args: Tuple[Any, ...], kwargs: Any) -> bytes:
        """The call's key; raises ``TypeError`` naming the argument that cannot be encoded."""
        if self.key_function is not None:
            material = self.key_function(*args, **kwargs)
            try:
                return hashlib.sha256(canonical(material)).digest()
            except Unencodable as error:
                raise TypeError(
                    f"{self.name}: the value that key= returned{_where(error.path)} cannot be part of a cache key: {error.reason}"
                ) from None
        if not kwargs and len(args) == self.positional_count:
            arguments: Any = zip(self.parameter_names, args)
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments.items()
        parts = [self.header]
        for parameter, value in arguments:
            try:
                parts.append(canonical(value))
            except Unencodable as error:
                hint = " (pass key= to choose what the key covers)" if parameter in ("self", "cls") else ""
                raise TypeError(
                    f"{self.name}: argument '{parameter}'{_where(error.path)} cannot be part of a cache key: {error.reason}{hint}"
                ) from None
        return hashlib.sha256(b"".join(parts)).digest()

    def publish(self, value: Any, elapsed: float, lookup: Lookup, client: Client, key: bytes, resolved: _Resolved) -> Optional[bytes]:
        """Encodes the leader's result for its followers and, after a miss, stores it."""
        try:
            encoded = values.encode(value)
        except TypeError as error:
            if not self._warned:
                self._warned = True
                logger.warning("cache_gateway: a result of %s is not cached: %s", self.name, error)
            return None
        connection = lookup.connection
        if connection is not None and self.ttl_milliseconds is not None:
            client.store(
                connection, resolved.fields, resolved.registering, key, encoded, self.ttl_milliseconds, int(elapsed * 1_000_000)
            )
        return encoded

    def call(self, args: Tuple[Any, ...], kwargs: Any) -> Any:
        """A call of a plain (not ``async``) function."""
        function = self.function
        if self.ttl_milliseconds is None:
            return function(*args, **kwargs)
        resolved = self._resolved or self.resolved()
        key = self.key(args, kwargs)
        client = client_for(self.socket)
        lookup = client.lookup(resolved.fields, resolved.registering, key)
        if lookup.status == HIT:
            try:
                return values.decode(cast(bytes, lookup.value))
            except values.ValueDecodeError:
                pass  # computed and stored again, as on a miss
        flight_key = (self.name, resolved.version, key)
        role, encoded = flights().join(flight_key)
        if role == FOLLOWER:
            if encoded is not None:
                try:
                    return values.decode(encoded)
                except values.ValueDecodeError:
                    pass
            return function(*args, **kwargs)
        encoded = None
        try:
            started = time.perf_counter()
            value = function(*args, **kwargs)
            encoded = self.publish(value, time.perf_counter() - started, lookup, client, key, resolved)
            return value
        finally:
            if role == LEADER:
                flights().finish(flight_key, encoded)

    async def call_async(self, args: Tuple[Any, ...], kwargs: Any) -> Any:
        """A call of an ``async def`` function."""
        function = cast(Callable[..., Awaitable[Any]], self.function)
        if self.ttl_milliseconds is None:
            return await function(*args, **kwargs)
        resolved = self._resolved or self.resolved()
        key = self.key(args, kwargs)
        client = client_for(self.socket)
        lookup = await client.lookup_async(resolved.fields, resolved.registering, key)
        if lookup.status == HIT:
            try:
                return values.decode(cast(bytes, lookup.value))
            except values.ValueDecodeError:
                pass
        flight_key = (self.name, resolved.version, key)
        role, encoded = await flights().join_async(flight_key)
        if role == FOLLOWER:
            if encoded is not None:
                try:
                    return values.decode(encoded)
                except values.ValueDecodeError:
                    pass
            return await function(*args, **kwargs)
        encoded = None
        try:
            started = time.perf_counter()
            value = await function(*args, **kwargs)
            encoded = self.publish(value, time.perf_counter() - started, lookup, client, key, resolved)
            return value
        finally:
            if role == LEADER:
                flights().finish(flight_key, encoded)


def _where(path: str) -> str:
    return f" (at {path})" if path else ""


def cache(
    ttl: Union[int, float, datetime.timedelta],
    *,
    version: Optional[str] = None,
    name: Optional[str] = None,
    key: Optional[Callable[..., Any]] = None,
    socket: Optional[str] = None,
) -> Callable[[F], F]:
    """Caches a function's results through the host's cache-gateway.

    ``ttl``: seconds (int or float) or a ``timedelta``; zero or less caches
    nothing. ``version``: the code's version (default: the SHA-256 of its
    syntax tree and of the module-level functions and classes it mentions).
    ``name``: the name after the module in the function's full name (default:
    its ``__qualname__``). ``key``: a callable that takes the function's
    arguments and returns what the key covers (default: every argument, with
    defaults applied). ``socket``: the gateway's socket (default:
    ``configure``'s, else ``CACHE_GATEWAY_SOCKET``, else
    ``/run/cache-gateway/gateway.sock``).

    Works on plain and ``async def`` functions, methods, and ``staticmethod``/
    ``classmethod`` (above or below them). Fails open: with the gateway absent,
    slow or failing the function simply runs.
    """
    checked = ttl_milliseconds(ttl)  # refuses a bad ttl at decoration time
    del checked

    def decorate(target: F) -> F:
        wrapper_type: Any = None
        function: Any = target
        if isinstance(target, (staticmethod, classmethod)):
            wrapper_type = type(target)
            function = target.__func__
        if not callable(function) or not hasattr(function, "__code__"):
            raise TypeError(f"cache: {target!r} is not a function")
        cached = CachedFunction(function, ttl, version, name, key, socket)
        wrapped: Any
        if cached.is_async:

            @functools.wraps(function)
            async def wrapped(*args: Any, **kwargs: Any) -> Any:
                return await cached.call_async(args, kwargs)

        else:

            @functools.wraps(function)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                return cached.call(args, kwargs)

        wrapped.__cache_gateway__ = cached
        if wrapper_type is not None:
            return cast(F, wrapper_type(wrapped))
        return cast(F, wrapped)

    return decorate


def _cached_function(function: Any, args: Tuple[Any, ...]) -> Tuple[CachedFunction, Tuple[Any, ...]]:
    if isinstance(function, (staticmethod, classmethod)):
        function = function.__func__
    if inspect.ismethod(function):
        args = (function.__self__,) + tuple(args)
        function = function.__func__
    cached = getattr(function, "__cache_gateway__", None)
    if not isinstance(cached, CachedFunction):
        raise TypeError(f"{function!r} is not a @cache function")
    return cached, args


def name_of(function: Any) -> str:
    """The full name under which ``function``'s entries are stored (what the gateway's
    ``stats``, ``functions`` and ``purge`` show and take)."""
    return _cached_function(function, ())[0].name


def version_of(function: Any) -> str:
    """The version of a ``@cache`` function (64 hex digits, or its ``version=``)."""
    return _cached_function(function, ())[0].version


def key_of(function: Any, *args: Any, **kwargs: Any) -> bytes:
    """The 32-byte key of a call of a ``@cache`` function (a bound method passes ``self``)."""
    cached, args = _cached_function(function, args)
    return cached.key(args, kwargs)


def _invalidate_reply(reply: protocol.Reply) -> int:
    if reply.type != protocol.INVALIDATE_REPLY or not reply.fields or type(reply.fields[0]) is not int:
        raise GatewayError(f"the gateway answered invalidate with message type {reply.type}")
    deleted: int = reply.fields[0]
    return deleted


def invalidate(function: Any, *args: Any, **kwargs: Any) -> int:
    """Deletes the entry of this call of ``function`` (a ``@cache`` function, or a
    bound method of one) in every version, and returns how many entries went.

    Unlike a cached call this does not fail open: it raises ``GatewayError``
    when the gateway is absent or refuses, and ``TypeError`` as the call would.
    """
    cached, args = _cached_function(function, args)
    key = cached.key(args, kwargs)
    client = client_for(cached.socket)
    reply = client.request(lambda i: protocol.invalidate(i, cached.name, None, key), INVALIDATE_TIMEOUT)
    return _invalidate_reply(reply)


def invalidate_all(function: Any, version: Optional[str] = None) -> int:
    """Deletes every entry of ``function`` (in every version, or only in ``version``)
    and returns how many went; raises ``GatewayError`` when the gateway cannot do it."""
    cached, _ = _cached_function(function, ())
    client = client_for(cached.socket)
    reply = client.request(lambda i: protocol.invalidate(i, cached.name, version, None), INVALIDATE_TIMEOUT)
    return _invalidate_reply(reply)


async def invalidate_async(function: Any, *args: Any, **kwargs: Any) -> int:
    """``invalidate`` for a coroutine."""
    cached, args = _cached_function(function, args)
    key = cached.key(args, kwargs)
    client = client_for(cached.socket)
    reply = await client.request_async(lambda i: protocol.invalidate(i, cached.name, None, key), INVALIDATE_TIMEOUT)
    return _invalidate_reply(reply)


async def invalidate_all_async(function: Any, version: Optional[str] = None) -> int:
    """``invalidate_all`` for a coroutine."""
    cached, _ = _cached_function(function, ())
    client = client_for(cached.socket)
    reply = await client.request_async(lambda i: protocol.invalidate(i, cached.name, version, None), INVALIDATE_TIMEOUT)
    return _invalidate_reply(reply)


__all__ = ["cache", "invalidate", "invalidate_all", "invalidate_async", "invalidate_all_async", "name_of", "version_of", "key_of"]
