"""One connection to the gateway, shared by every thread and event loop of a process.

Requests are written under a write lock, so frames never interleave, and a
function version's ``register`` frame is written before its first lookup or
store. Replies are matched to their requests by id.

Who reads the socket: a thread waiting for its own reply reads it itself
when nobody else is reading (leader and followers): it hands out the replies
of others as they come, stops once its own has come, and wakes the others so
that one of them takes over. A hit then costs no thread switch. Coroutines
never read on the event loop: while any coroutine waits, a background thread
of the connection takes the reader's part and hands each reply to its
coroutine's loop with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import threading
import time
from typing import Any, Dict, Optional, Set, Tuple

from . import _protocol as protocol

#: The outcome of a wait that got no reply.
TIMEOUT = "timeout"
CLOSED = "closed"

_READ_SIZE = 256 * 1024
#: How long a write may wait for the socket to take bytes before the connection is given up.
_WRITE_TIMEOUT = 2.0
#: How often the background reader looks again whether coroutines still wait.
_BACKGROUND_SLICE = 0.05


class _Waiter:
    """One request's wait: a thread's (``future`` is None) or a coroutine's."""

    __slots__ = ("reply", "done", "loop", "future")

    def __init__(self, loop: Optional[asyncio.AbstractEventLoop] = None, future: Optional["asyncio.Future[Any]"] = None) -> None:
        self.reply: Any = None
        self.done = False
        self.loop = loop
        self.future = future


def _resolve(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


class Connection:
    """A connected, non-blocking Unix socket to the gateway and the requests in flight on it."""

    def __init__(self, path: str, timeout: float) -> None:
        """Connects to ``path`` within ``timeout`` seconds (a full listen backlog
        makes a Unix socket's connect wait); raises ``OSError`` when nobody listens there."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.pid = os.getpid()
        self.hello: Optional[protocol.HelloReply] = None
        self.max_value_size = 0
        # Replies are not bounded by the hello's maxFrameSize (a functions
        # reply grows with the registry): any 32-bit length is read, as the
        # Swift client does.
        self._max_frame = 0xFFFFFFFF
        self._write_lock = threading.Lock()
        self._condition = threading.Condition(threading.Lock())
        self._waiters: Dict[int, _Waiter] = {}
        self._async_waiting = 0
        self._reading = False
        self._closed = False
        self._next_id = 0
        self._registered: Set[Tuple[str, str]] = set()
        self._buffer = bytearray()
        self._poll = select.poll()
        self._poll.register(self.fd, select.POLLIN)
        self._background: Optional[threading.Thread] = None
        self._on_close: Any = None

    @property
    def closed(self) -> bool:
        """Whether the connection is unusable."""
        return self._closed

    def when_closed(self, callback: Any) -> None:
        """Calls ``callback(self)`` once, when the connection closes (at once if it has)."""
        with self._condition:
            if not self._closed:
                self._on_close = callback
                return
        callback(self)

    def set_hello(self, hello: protocol.HelloReply) -> None:
        """Records the gateway's limits from its hello reply."""
        self.hello = hello
        self.max_value_size = hello.max_value_size

    # MARK: Writing

    def _take_id(self) -> int:
        self._next_id = (self._next_id + 1) & 0xFFFFFFFFFFFFFFFF or 1
        return self._next_id

    def submit(self, build: Any, waiter: Optional[_Waiter], registering: Optional[Tuple[str, str]] = None) -> Optional[int]:
        """Writes ``build(id)`` (after a ``register`` frame for ``registering`` if this
        connection has not sent one) and returns the request's id, or None when the
        connection is closed or failed. ``waiter`` (if any) is in place before the
        bytes go out, so that its reply finds it.
        """
        with self._write_lock:
            if self._closed:
                return None
            prefix = b""
            if registering is not None and registering not in self._registered:
                prefix = protocol.register(self._take_id(), registering[0], registering[1])
                self._registered.add(registering)
            request_id = self._take_id()
            if waiter is not None:
                with self._condition:
                    self._waiters[request_id] = waiter
                    if waiter.future is not None:
                        self._async_waiting += 1
            if not self._send_all(prefix + build(request_id) if prefix else build(request_id)):
                self.close()
                return None
        if waiter is not None and waiter.future is not None:
            self._wake_background()
        return request_id

    def _send_all(self, data: bytes) -> bool:
        view = memoryview(data)
        deadline: Optional[float] = None
        while view:
            try:
                sent = os.write(self.fd, view)
                view = view[sent:]
                continue
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return False
            now = time.monotonic()
            if deadline is None:
                deadline = now + _WRITE_TIMEOUT
            if now >= deadline:
                return False
            writable = select.poll()
            writable.register(self.fd, select.POLLOUT)
            writable.poll(max(1, int((deadline - now) * 1000)))
        return True

    # MARK: Waiting

    def wait(self, request_id: int, waiter: _Waiter, timeout: float) -> Any:
        """The reply to ``request_id`` (a thread's wait), or ``TIMEOUT`` or ``CLOSED``."""
        deadline = time.monotonic() + timeout
        condition = self._condition
        with condition:
            while True:
                if waiter.done:
                    return waiter.reply
                if self._closed:
                    return CLOSED
                if not self._reading:
                    self._reading = True
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._waiters.pop(request_id, None)
                    return TIMEOUT
                condition.wait(remaining)
        try:
            self._read(waiter, deadline)
        finally:
            with condition:
                self._reading = False
                condition.notify_all()
                if not waiter.done:
                    self._waiters.pop(request_id, None)
        if waiter.done:
            return waiter.reply
        return CLOSED if self._closed else TIMEOUT

    async def wait_async(self, request_id: int, waiter: _Waiter, timeout: float) -> Any:
        """The reply to ``request_id`` (a coroutine's wait), or ``TIMEOUT`` or ``CLOSED``."""
        future = waiter.future
        assert future is not None and waiter.loop is not None
        handle = waiter.loop.call_later(timeout, _resolve, future, TIMEOUT)
        try:
            return await future
        finally:
            handle.cancel()
            with self._condition:
                if self._waiters.pop(request_id, None) is not None:
                    self._async_waiting -= 1

    def _read(self, waiter: Optional[_Waiter], deadline: Optional[float]) -> None:
        """Reads and hands out replies until ``waiter`` is done (or, with no waiter,
        while coroutines wait), the deadline passes, or the connection closes.
        """
        while not self._closed:
            if waiter is not None:
                if waiter.done:
                    return
            elif self._async_waiting == 0:
                return
            if deadline is None:
                wait_ms = int(_BACKGROUND_SLICE * 1000)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait_ms = max(1, int(remaining * 1000 + 0.999))
            try:
                events = self._poll.poll(wait_ms)
            except InterruptedError:
                continue
            if not events:
                continue
            try:
                data = os.read(self.fd, _READ_SIZE)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                self.close()
                return
            if not data:
                self.close()
                return
            self._buffer += data
            try:
                payloads, used = protocol.split_frames(self._buffer, self._max_frame)
                del self._buffer[:used]
                replies = [protocol.decode(payload) for payload in payloads]
            except protocol.ProtocolError:
                self.close()
                return
            self._dispatch(replies)

    def _dispatch(self, replies: Any) -> None:
        fatal = False
        with self._condition:
            for reply in replies:
                if reply.type == protocol.ERROR and reply.id == 0:
                    fatal = True
                waiter = self._waiters.pop(reply.id, None)
                if waiter is None:
                    continue
                if waiter.future is not None:
                    self._async_waiting -= 1
                    assert waiter.loop is not None
                    try:
                        waiter.loop.call_soon_threadsafe(_resolve, waiter.future, reply)
                    except RuntimeError:
                        pass  # the loop closed meanwhile
                else:
                    waiter.reply = reply
                    waiter.done = True
            self._condition.notify_all()
        if fatal:
            # An error not tied to a request (frameTooLarge, a frame timeout):
            # the gateway closes the connection after it.
            self.close()

    # MARK: The background reader

    def _wake_background(self) -> None:
        with self._condition:
            if self._background is None:
                self._background = threading.Thread(target=self._background_loop, name="cache-gateway-reader", daemon=True)
                self._background.start()
            self._condition.notify_all()

    def _background_loop(self) -> None:
        condition = self._condition
        while True:
            with condition:
                while not self._closed and (self._async_waiting == 0 or self._reading):
                    condition.wait()
                if self._closed:
                    return
                self._reading = True
            try:
                self._read(None, None)
            finally:
                with condition:
                    self._reading = False
                    condition.notify_all()

    # MARK: Closing

    def close(self) -> None:
        """Fails every waiting request and shuts the socket down (in the process that opened it)."""
        with self._condition:
            if self._closed:
                return
            self._closed = True
            waiters = list(self._waiters.values())
            self._waiters.clear()
            self._async_waiting = 0
            callback = self._on_close
            self._on_close = None
            for waiter in waiters:
                if waiter.future is not None and waiter.loop is not None:
                    try:
                        waiter.loop.call_soon_threadsafe(_resolve, waiter.future, CLOSED)
                    except RuntimeError:
                        pass
                else:
                    waiter.reply = CLOSED
                    waiter.done = True
            self._condition.notify_all()
        if os.getpid() == self.pid:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if callback is not None:
            callback(self)

    def abandon(self) -> None:
        """Lets go of a connection inherited through ``fork``: the parent still uses the socket,
        so the child closes only its own descriptor and sends nothing.
        """
        self._closed = True
        try:
            self.sock.close()
        except OSError:
            pass

