"""Parts tested without a gateway: keys, values, versions and the state machines."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import math
from typing import NamedTuple

import pytest

import cache_gateway
from cache_gateway import _keys, _states, _values
from cache_gateway._decorator import ttl_milliseconds


def test_canonical_encoding_matches_the_protocol_example() -> None:
    # docs/PROTOCOL.md section 4: the 46 bytes and the key of Pricing.quote(for: "apple", quantity: 3).
    material = ["Billing.Quote", ["Swift.String", "Swift.Int"], "apple", 3]
    encoded = _keys.canonical(material)
    assert encoded.hex() == (
        "94" "ad42696c6c696e672e51756f7465" "92" "ac53776966742e537472696e67" "a953776966742e496e74" "a56170706c65" "03"
    )
    assert hashlib.sha256(encoded).hexdigest() == "2a2e8f53adc11e04c0bd2f70de7b0827f32f89213a6f9d4d2d9b906cd097873c"


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, "00"),
        (127, "7f"),
        (128, "cc80"),
        (65536, "ce00010000"),
        (2**64 - 1, "cfffffffffffffffff"),
        (-1, "ff"),
        (-33, "d0df"),
        (-(2**63), "d38000000000000000"),
        (-0.0, "cb0000000000000000"),
        (float("nan"), "cb7ff8000000000000"),
        (-float("nan"), "cb7ff8000000000000"),
        (1.5, "cb3ff8000000000000"),
        ("", "a0"),
        ("a" * 32, "d920" + "61" * 32),
        (b"\x01", "c40101"),
        (None, "c0"),
        (True, "c3"),
        ([], "90"),
    ],
)
def test_canonical_scalars(value: object, expected: str) -> None:
    assert _keys.canonical(value).hex() == expected


def test_maps_and_sets_are_sorted_by_encoded_bytes() -> None:
    assert _keys.canonical({"b": 1, "a": 2}) == _keys.canonical({"a": 2, "b": 1})
    # "a" (a1 61) sorts before "aa" (a2 61 61): a proper prefix... of the header's order.
    assert _keys.canonical({"aa": 1, "a": 2}).hex() == "82" "a161" "02" "a26161" "01"
    assert _keys.canonical({3, 1, 2}) == _keys.canonical({2, 3, 1}) == bytes.fromhex("93010203")
    assert _keys.canonical({1: "x", "1": "y"}).hex() == "82" "01a178" "a131a179"


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclasses.dataclass
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Other:
    x: int
    y: int


class Pair(NamedTuple):
    x: int
    y: int


def test_different_values_never_share_an_encoding() -> None:
    values = [
        1, 1.0, True, "1", b"1", [1], {1: 1}, None, 0, False, "",
        Color.RED, Color.BLUE, Point(1, 2), Other(1, 2), Pair(1, 2), (1, 2), int, str,
        datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc), datetime.datetime(2026, 1, 1), datetime.date(2026, 1, 1),
    ]
    encodings = [_keys.canonical(value) for value in values]
    assert len(set(encodings)) == len(values)


def test_an_instant_is_one_key_in_every_zone() -> None:
    utc = datetime.datetime(2026, 12, 6, 1, 0, tzinfo=datetime.timezone.utc)
    paris = utc.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert _keys.canonical(utc) == _keys.canonical(paris)


def test_unencodable_values_say_where_they_are() -> None:
    with pytest.raises(_keys.Unencodable) as raised:
        _keys.canonical({"a": [1, object()]})
    assert raised.value.path == "['a'][1]"
    with pytest.raises(_keys.Unencodable):
        _keys.canonical(2**64)
    with pytest.raises(_keys.Unencodable):
        _keys.canonical("\ud800")
    nested: list = []
    nested.append(nested)
    with pytest.raises(_keys.Unencodable):
        _keys.canonical(nested)


def test_values_round_trip() -> None:
    _values.register_type(Point)
    _values.register_type(Pair)
    moment = datetime.datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=datetime.timezone.utc)
    value = {
        "n": [1, -2, 2**63, 1.5, None, True],
        "s": "é",
        "b": b"\x00\xff",
        "when": moment,
        "naive": datetime.datetime(2026, 12, 6, 1, 2, 3),
        "day": datetime.date(2026, 12, 6),
        "point": Point(1, 2),
        "pair": Pair(3, 4),
        "tuple": (1, 2),
        5: "int key",
    }
    decoded = _values.decode(_values.encode(value))
    assert decoded == {**value, "tuple": [1, 2]}
    assert isinstance(decoded["point"], Point) and isinstance(decoded["pair"], Pair)
    assert decoded["when"].tzinfo is not None


def test_subclasses_of_built_in_types_are_stored_as_their_base() -> None:
    import collections

    class Level(enum.IntEnum):
        HIGH = 3

    class Code(str, enum.Enum):
        OK = "ok"

    value = [collections.OrderedDict(b=1, a=2), collections.defaultdict(list, x=[1]), Level.HIGH, Code.OK]
    decoded = _values.decode(_values.encode(value))
    assert decoded == [{"b": 1, "a": 2}, {"x": [1]}, 3, "ok"]
    assert [type(element) for element in decoded] == [dict, dict, int, str]


def test_unsupported_values_raise_type_error() -> None:
    with pytest.raises(TypeError):
        _values.encode(object())
    with pytest.raises(TypeError):
        _values.encode({"x": {1, 2}})
    with pytest.raises(TypeError):
        _values.encode(Color.RED)


def test_an_unregistered_class_does_not_decode() -> None:
    @dataclasses.dataclass
    class Local:
        a: int

    encoded = _values.encode(Local(1))  # registers Local
    _values._registry.pop(_keys.qualified_name(Local))
    with pytest.raises(_values.ValueDecodeError):
        _values.decode(encoded)


def test_ttl_conversion() -> None:
    assert ttl_milliseconds(300) == 300_000
    assert ttl_milliseconds(0.0001) == 1
    assert ttl_milliseconds(datetime.timedelta(minutes=5)) == 300_000
    assert ttl_milliseconds(0) is None
    assert ttl_milliseconds(-1) is None
    assert ttl_milliseconds(10**12) == 31_536_000_000
    assert ttl_milliseconds(datetime.timedelta(days=10_000)) == 31_536_000_000
    with pytest.raises(TypeError):
        ttl_milliseconds("300")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        ttl_milliseconds(True)
    with pytest.raises(ValueError):
        ttl_milliseconds(math.nan)
    with pytest.raises(TypeError):
        cache_gateway.cache(ttl="5")  # type: ignore[arg-type]


def test_connection_state_machine() -> None:
    machine = _states.ConnectionStateMachine(initial_delay=0.1, maximum_delay=0.3)
    assert machine.decide(lambda: 0.0) == machine.CONNECT
    assert machine.decide(lambda: 0.0) == machine.BYPASS  # another call is connecting
    machine.connect_failed(now=10.0)
    assert machine.decide(lambda: 10.09) == machine.BYPASS
    assert machine.decide(lambda: 10.1) == machine.CONNECT
    machine.connect_failed(now=20.0)
    assert machine.decide(lambda: 20.19) == machine.BYPASS
    assert machine.decide(lambda: 20.2) == machine.CONNECT
    machine.connect_failed(now=30.0)
    machine.decide(lambda: 30.3)
    machine.connect_failed(now=40.0)  # capped at 0.3
    assert machine.decide(lambda: 40.3) == machine.CONNECT
    machine.connect_succeeded()
    assert machine.decide(lambda: 0.0) == machine.USE
    machine.connection_lost()
    assert machine.decide(lambda: 0.0) == machine.CONNECT


def test_circuit_breaker() -> None:
    breaker = _states.CircuitBreaker(threshold=3, initial_open=0.1, maximum_open=0.25)
    assert breaker.decide(lambda: 0.0) == breaker.ALLOW
    breaker.timed_out(1.0)
    breaker.timed_out(1.0)
    assert breaker.decide(lambda: 1.0) == breaker.ALLOW_REPORTING
    breaker.timed_out(1.0)
    assert breaker.state == breaker.OPEN
    assert breaker.decide(lambda: 1.09) == breaker.BYPASS
    assert breaker.decide(lambda: 1.1) == breaker.ALLOW_REPORTING  # the probe
    assert breaker.decide(lambda: 1.1) == breaker.BYPASS  # the others while it is out
    breaker.timed_out(1.2)
    assert breaker.decide(lambda: 1.39) == breaker.BYPASS  # open twice as long
    assert breaker.decide(lambda: 1.4) == breaker.ALLOW_REPORTING
    breaker.timed_out(2.0)
    assert breaker.decide(lambda: 2.24) == breaker.BYPASS  # capped at 0.25
    assert breaker.decide(lambda: 2.25) == breaker.ALLOW_REPORTING
    breaker.answered()
    assert breaker.state == breaker.CLOSED
    assert breaker.decide(lambda: 0.0) == breaker.ALLOW


def test_held_lookup_frames_are_the_documented_arrays() -> None:
    import msgpack

    from cache_gateway import _protocol

    key = bytes(range(32))
    fields = _protocol.function_fields("tests.f", "1")

    def payload(frame: bytes) -> object:
        assert int.from_bytes(frame[:4], "big") == len(frame) - 4
        return msgpack.unpackb(frame[4:], raw=False)

    # A hello announces held lookups only with a positive holdMilliseconds (section 2a).
    assert payload(_protocol.hello(1, "w", 42)) == [1, 1, 1, "w", 42]
    assert payload(_protocol.hello(1, "w", 42, 3000)) == [1, 1, 1, "w", 42, 3000]
    assert payload(_protocol.lookup(9, fields, key)) == [3, 9, "tests.f", "1", key]
    assert payload(_protocol.held_lookup(9, fields, key, 3000)) == [3, 9, "tests.f", "1", key, 3000]

    reply = _protocol.Reply(_protocol.HELLO_REPLY, 1, [1, "g", 1 << 20, 1 << 20, 2000])
    assert _protocol.hello_reply(reply).hold_milliseconds == 2000
    # An older gateway's reply has no such field: it never answers status 3.
    reply = _protocol.Reply(_protocol.HELLO_REPLY, 1, [1, "g", 1 << 20, 1 << 20])
    assert _protocol.hello_reply(reply).hold_milliseconds == 0
