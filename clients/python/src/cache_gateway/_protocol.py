"""The wire protocol (docs/PROTOCOL.md, version 1): frames and messages.

A frame is a 4-byte big-endian length and one MessagePack array
``[type, id, field, ...]``. Requests are built here as bytes; replies are
decoded into ``Reply`` tuples. Nothing here does I/O.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import msgpack

#: msgpack has no type information: its packer, typed.
_packb: Callable[..., bytes] = msgpack.packb

PROTOCOL_VERSION = 1

HELLO = 1
PING = 2
LOOKUP = 3
STORE = 4
REGISTER = 5
INVALIDATE = 6
STATS = 7
FUNCTIONS = 8

HELLO_REPLY = 129
PONG = 130
LOOKUP_REPLY = 131
STORE_REPLY = 132
REGISTER_REPLY = 133
INVALIDATE_REPLY = 134
STATS_REPLY = 135
FUNCTIONS_REPLY = 136
ERROR = 255

#: Lookup reply statuses.
STATUS_HIT = 0
STATUS_MISS = 1
STATUS_MISS_DO_NOT_STORE = 2
#: Another worker computes the entry: send a held lookup (section 2a).
STATUS_WAIT = 3

#: Error codes (section 3) that the client treats specially.
ERROR_NOT_ALLOWED = 10
ERROR_UNSUPPORTED_VERSION = 5
ERROR_FRAME_TOO_LARGE = 2

#: The longest TTL a store may carry: 365 days, in milliseconds.
MAXIMUM_TTL_MILLISECONDS = 31_536_000_000
#: Limits of the function and version fields, in UTF-8 bytes.
MAXIMUM_FUNCTION_BYTES = 512
MAXIMUM_VERSION_BYTES = 128
#: The protocol's limit on nesting of arrays and maps.
MAXIMUM_DEPTH = 32

_LENGTH = struct.Struct(">I")
_packer_options = {"use_bin_type": True}


class Reply(NamedTuple):
    """A decoded message from the gateway: its type, its id and its fields."""

    type: int
    id: int
    fields: List[Any]


class HelloReply(NamedTuple):
    """The gateway's answer to hello."""

    protocol_version: int
    gateway_version: str
    max_frame_size: int
    max_value_size: int
    #: The gateway's ``--fill-wait-max-ms`` when it will hold this
    #: connection's lookups; 0 when it never answers status 3.
    hold_milliseconds: int = 0


class ProtocolError(Exception):
    """The gateway sent something this client cannot read; the connection is dropped."""


def frame(payload: bytes) -> bytes:
    """``payload`` with its 4-byte big-endian length in front."""
    return _LENGTH.pack(len(payload)) + payload


def _pack(message: List[Any]) -> bytes:
    return frame(_packb(message, **_packer_options))


def hello(request_id: int, client_name: str, pid: int, hold_milliseconds: int = 0) -> bytes:
    """A framed hello (type 1); a ``hold_milliseconds`` above 0 is appended,
    announcing held lookups (section 2a)."""
    message: List[Any] = [HELLO, request_id, PROTOCOL_VERSION, client_name, pid]
    if hold_milliseconds > 0:
        message.append(hold_milliseconds)
    return _pack(message)


def ping(request_id: int) -> bytes:
    """A framed ping (type 2)."""
    return _pack([PING, request_id])


def register(request_id: int, function: str, version: str) -> bytes:
    """A framed register (type 5)."""
    return _pack([REGISTER, request_id, function, version])


def store(request_id: int, fields: bytes, key: bytes, ttl_milliseconds: int, compute_microseconds: int, value: bytes) -> bytes:
    """A framed store (type 4); ``fields`` is ``function_fields(function, version)``."""
    head = b"\x98\x04" + _packb(request_id) + fields + _packb(key, use_bin_type=True)
    tail = _packb(ttl_milliseconds) + _packb(compute_microseconds) + _packb(value, use_bin_type=True)
    return frame(head + tail)


def lookup(request_id: int, fields: bytes, key: bytes) -> bytes:
    """A framed lookup (type 3) of the 32-byte ``key``; ``fields`` is ``function_fields(function, version)``.

    Built by hand (it is the hit path), the same bytes as packing
    ``[3, id, function, version, key]``.
    """
    payload = b"\x95\x03" + _packb(request_id) + fields + b"\xc4\x20" + key
    return _LENGTH.pack(len(payload)) + payload


def held_lookup(request_id: int, fields: bytes, key: bytes, hold_milliseconds: int) -> bytes:
    """A framed held lookup: a lookup with ``holdMilliseconds`` appended (section 2a),
    the same bytes as packing ``[3, id, function, version, key, hold_milliseconds]``."""
    payload = b"\x96\x03" + _packb(request_id) + fields + b"\xc4\x20" + key + _packb(hold_milliseconds)
    return _LENGTH.pack(len(payload)) + payload


def function_fields(function: str, version: str) -> bytes:
    """The packed ``function`` and ``version`` strings, as lookups and stores carry them."""
    return _packb(function) + _packb(version)


def invalidate(request_id: int, function: str, version: Optional[str], key: Optional[bytes]) -> bytes:
    """A framed invalidate (type 6); nil ``version`` or ``key`` widens it (section 2)."""
    return _pack([INVALIDATE, request_id, function, version, key])


def stats(request_id: int) -> bytes:
    """A framed stats request (type 7)."""
    return _pack([STATS, request_id])


def functions(request_id: int) -> bytes:
    """A framed functions request (type 8)."""
    return _pack([FUNCTIONS, request_id])


def decode(payload: bytes) -> Reply:
    """One frame's payload as a ``Reply``; raises ``ProtocolError`` when it is not a message."""
    try:
        message = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as error:  # msgpack raises several types for bad input
        raise ProtocolError(f"undecodable frame from the gateway: {error}") from None
    if not isinstance(message, list) or len(message) < 2:
        raise ProtocolError("a frame from the gateway is not an array of at least 2 elements")
    kind, request_id = message[0], message[1]
    if type(kind) is not int or type(request_id) is not int:
        raise ProtocolError("a frame from the gateway has no uint type and id")
    return Reply(kind, request_id, message[2:])


def split_frames(buffer: bytearray, maximum: int) -> Tuple[List[bytes], int]:
    """The complete frames' payloads at the start of ``buffer`` and how many bytes they took.

    Raises ``ProtocolError`` for a length above ``maximum`` (the stream cannot be resynchronised).
    """
    payloads: List[bytes] = []
    offset = 0
    end = len(buffer)
    while end - offset >= 4:
        (length,) = _LENGTH.unpack_from(buffer, offset)
        if length > maximum:
            raise ProtocolError(f"the gateway sent a frame of {length} bytes, above the limit of {maximum}")
        if end - offset - 4 < length:
            break
        payloads.append(bytes(buffer[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    return payloads, offset


def hello_reply(reply: Reply) -> HelloReply:
    """The fields of a hello reply; raises ``ProtocolError`` when they are not there."""
    fields = reply.fields
    if (
        len(fields) < 4
        or type(fields[0]) is not int
        or not isinstance(fields[1], str)
        or type(fields[2]) is not int
        or type(fields[3]) is not int
    ):
        raise ProtocolError("malformed hello reply")
    hold = fields[4] if len(fields) > 4 and type(fields[4]) is int and fields[4] > 0 else 0
    return HelloReply(fields[0], fields[1], fields[2], fields[3], hold)
