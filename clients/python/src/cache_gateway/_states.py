"""The client's two state machines, with no I/O and no clock of their own
(callers pass ``now``, in seconds of ``time.monotonic()``), so that they are
tested alone. They follow the Swift client's (`ConnectionStateMachine`,
`CircuitBreaker` in Sources/GatewayClientRuntime) with the same defaults.
"""

from __future__ import annotations

from typing import Callable


def backoff(initial: float, maximum: float, failures: int) -> float:
    """The wait after ``failures`` consecutive failures: ``initial`` doubling, capped at ``maximum``."""
    initial = max(0.0, initial)
    maximum = max(0.0, maximum)
    exponent = max(failures, 1) - 1
    if exponent >= 64:
        return maximum
    return min(initial * (2.0**exponent), maximum)


class ConnectionStateMachine:
    """When the client may try to reach the gateway.

    While the gateway stays absent, calls do not pay for a connect attempt:
    after a failure the client waits ``backoff`` (``initial_delay`` doubling up
    to ``maximum_delay``) before the next attempt, and every call in between
    runs its function uncached. Only one call connects at a time; the others
    run uncached meanwhile.
    """

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKING_OFF = "backingOff"

    #: Decisions.
    USE = "use"
    CONNECT = "connect"
    BYPASS = "bypass"

    def __init__(self, initial_delay: float = 0.1, maximum_delay: float = 5.0) -> None:
        """A machine that has not connected yet."""
        self.initial_delay = initial_delay
        self.maximum_delay = maximum_delay
        self.state = self.IDLE
        self.retry_at = 0.0
        self.failures = 0

    def decide(self, now: Callable[[], float]) -> str:
        """``USE`` the open connection, ``CONNECT`` (this call tries) or ``BYPASS``."""
        state = self.state
        if state == self.CONNECTED:
            return self.USE
        if state == self.CONNECTING:
            return self.BYPASS
        if state == self.BACKING_OFF and now() < self.retry_at:
            return self.BYPASS
        self.state = self.CONNECTING
        return self.CONNECT

    def connect_succeeded(self) -> None:
        """The connection is open and said hello."""
        self.state = self.CONNECTED
        self.failures = 0

    def connect_failed(self, now: float) -> None:
        """The attempt failed: back off."""
        self.failures += 1
        self.state = self.BACKING_OFF
        self.retry_at = now + backoff(self.initial_delay, self.maximum_delay, self.failures)

    def connection_lost(self) -> None:
        """The connection closed: the next call tries at once (a restarted gateway is back quickly)."""
        if self.state == self.CONNECTED:
            self.state = self.IDLE


class CircuitBreaker:
    """When the client stops asking a gateway that is connected but does not answer.

    After ``threshold`` consecutive lookup timeouts the circuit opens: for
    ``open_duration`` every call runs uncached at once. Then one call, the
    probe, looks up while the others keep running uncached: an answer closes
    the circuit, another timeout opens it again for twice as long, up to
    ``maximum_open``. Outcomes are reported only by calls told to
    (``decide`` returns ``ALLOW_REPORTING``), so a hit with the circuit closed
    and no timeout counted reports nothing.
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "halfOpen"

    #: Decisions.
    ALLOW = "allow"
    ALLOW_REPORTING = "allowReporting"
    BYPASS = "bypass"

    def __init__(self, threshold: int = 3, initial_open: float = 0.1, maximum_open: float = 2.0) -> None:
        """A closed circuit."""
        self.threshold = max(1, threshold)
        self.initial_open = initial_open
        self.maximum_open = maximum_open
        self.state = self.CLOSED
        self.timeouts = 0
        self.until = 0.0
        self.trips = 0

    def open_duration(self, trips: int) -> float:
        """How long the circuit stays open after its ``trips``-th opening since it last closed."""
        return backoff(self.initial_open, self.maximum_open, trips)

    def decide(self, now: Callable[[], float]) -> str:
        """``ALLOW``, ``ALLOW_REPORTING`` or ``BYPASS``; reads ``now`` only when not closed."""
        if self.state == self.CLOSED:
            return self.ALLOW_REPORTING if self.timeouts > 0 else self.ALLOW
        current = now()
        if current < self.until:
            return self.BYPASS
        # Open and over, or half-open with its probe's outcome overdue: send a probe.
        self.state = self.HALF_OPEN
        self.until = current + self.open_duration(self.trips)
        return self.ALLOW_REPORTING

    def timed_out(self, now: float) -> None:
        """A lookup timed out."""
        if self.state == self.CLOSED:
            self.timeouts += 1
            if self.timeouts >= self.threshold:
                self._open(now)
        elif self.state == self.HALF_OPEN:
            self._open(now)
        # Open: a call let through before it opened, already counted.

    def answered(self) -> None:
        """A lookup got a reply, or failed other than by timing out."""
        if self.state != self.OPEN:
            self.reset()

    def reset(self) -> None:
        """Closes the circuit and forgets its history (a new connection)."""
        self.state = self.CLOSED
        self.timeouts = 0
        self.trips = 0

    def _open(self, now: float) -> None:
        self.trips += 1
        self.timeouts = 0
        self.state = self.OPEN
        self.until = now + self.open_duration(self.trips)
