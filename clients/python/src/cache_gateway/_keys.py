"""Cache keys: the SHA-256 of the canonical MessagePack of a call's arguments.

The canonical rules are docs/PROTOCOL.md section 4's (shortest integers,
float64 with ``-0.0`` folded into ``0.0`` and one quiet NaN, maps and sets
sorted by the bytes of their encoded elements). Python types with no place
in those rules get MessagePack extension types of their own, so that two
arguments of different kinds never encode alike:

========================  ====================================================
Python                    canonical encoding
========================  ====================================================
``None``, ``bool``        nil, false/true
``int``                   shortest integer (``-2**63`` to ``2**64 - 1``)
``float``                 float64
``str``                   str (UTF-8, no normalisation)
``bytes``, ``bytearray``  bin
``list``, ``tuple``       array (a list and a tuple of the same items are one key)
``dict``                  map sorted by encoded key
``set``, ``frozenset``    array sorted by encoded element
aware ``datetime``        timestamp extension (-1) of its instant
naive ``datetime``        extension 4: its ``isoformat()``
``date``                  extension 5: its ``isoformat()``
a class                   extension 1: ``module.qualname``
dataclass, NamedTuple     extension 2: canonical ``[module.qualname, {field: value}]``
``enum.Enum`` member      extension 3: canonical ``[module.qualname, member name]``
========================  ====================================================

Anything else cannot be part of a key: ``Unencodable`` says where it is.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import math
import struct
from typing import Any, Callable, Dict, List, Tuple, cast

import msgpack

#: msgpack has no type information: its packer, typed.
_packb: Callable[..., bytes] = msgpack.packb

from ._protocol import MAXIMUM_DEPTH

_FLOAT64 = struct.Struct(">d")
_NAN64 = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
_ZERO64 = b"\xcb" + bytes(8)
_MIN_INT = -(2**63)
_MAX_UINT = 2**64 - 1

EXT_CLASS = 1
EXT_RECORD = 2
EXT_ENUM = 3
EXT_NAIVE_DATETIME = 4
EXT_DATE = 5


class Unencodable(Exception):
    """A value that cannot be part of a key, and the path to it from the argument."""

    def __init__(self, value: Any, path: str, reason: str) -> None:
        super().__init__(reason)
        self.value = value
        self.path = path
        self.reason = reason


def qualified_name(cls: type) -> str:
    """``module.qualname`` of a class."""
    return f"{cls.__module__}.{cls.__qualname__}"


def _array_header(count: int) -> bytes:
    if count <= 15:
        return bytes((0x90 | count,))
    if count <= 0xFFFF:
        return b"\xdc" + struct.pack(">H", count)
    return b"\xdd" + struct.pack(">I", count)


def _map_header(count: int) -> bytes:
    if count <= 15:
        return bytes((0x80 | count,))
    if count <= 0xFFFF:
        return b"\xde" + struct.pack(">H", count)
    return b"\xdf" + struct.pack(">I", count)


def _ext(code: int, payload: bytes) -> bytes:
    return _packb(msgpack.ExtType(code, payload))


def _encode_int(value: int, path: str) -> bytes:
    if value < _MIN_INT or value > _MAX_UINT:
        raise Unencodable(value, path, f"the integer {value} does not fit in 64 bits")
    return _packb(value)


def _encode_float(value: float, path: str) -> bytes:
    if value != value:
        return _NAN64
    if value == 0.0:
        return _ZERO64
    return b"\xcb" + _FLOAT64.pack(value)


def _encode_str(value: str, path: str) -> bytes:
    try:
        return _packb(value)
    except UnicodeEncodeError:
        raise Unencodable(value, path, "the string is not valid Unicode (it has lone surrogates)") from None


def _encode_bytes(value: Any, path: str) -> bytes:
    return _packb(bytes(value), use_bin_type=True)


_SCALARS: Dict[type, Callable[[Any, str], bytes]] = {
    int: _encode_int,
    float: _encode_float,
    str: _encode_str,
    bytes: _encode_bytes,
    bytearray: _encode_bytes,
}


def canonical(value: Any, path: str = "", depth: int = 0) -> bytes:
    """The canonical MessagePack of ``value``; raises ``Unencodable``."""
    kind = type(value)
    scalar = _SCALARS.get(kind)
    if scalar is not None:
        return scalar(value, path)
    if value is None:
        return b"\xc0"
    if kind is bool:
        return b"\xc3" if value else b"\xc2"
    if depth >= MAXIMUM_DEPTH:
        raise Unencodable(value, path, f"it nests arrays and maps deeper than {MAXIMUM_DEPTH} levels")
    if kind is list or kind is tuple:
        parts = [_array_header(len(value))]
        for index, element in enumerate(value):
            parts.append(canonical(element, f"{path}[{index}]", depth + 1))
        return b"".join(parts)
    if kind is dict:
        return _encode_map(value.items(), path, depth)
    if kind is set or kind is frozenset:
        elements = sorted(canonical(element, f"{path}{{…}}", depth + 1) for element in value)
        return _array_header(len(elements)) + b"".join(elements)
    return _encode_other(value, path, depth)


def _encode_map(items: Any, path: str, depth: int) -> bytes:
    pairs: List[Tuple[bytes, bytes]] = []
    for key, element in items:
        encoded_key = canonical(key, f"{path} (a key)", depth + 1)
        pairs.append((encoded_key, canonical(element, f"{path}[{key!r}]", depth + 1)))
    pairs.sort(key=lambda pair: pair[0])
    return _map_header(len(pairs)) + b"".join(key + element for key, element in pairs)


def _encode_other(value: Any, path: str, depth: int) -> bytes:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return _packb(msgpack.Timestamp.from_datetime(value))
        return _ext(EXT_NAIVE_DATETIME, value.isoformat().encode())
    if isinstance(value, datetime.date):
        return _ext(EXT_DATE, value.isoformat().encode())
    if isinstance(value, type):
        return _ext(EXT_CLASS, qualified_name(value).encode("utf-8", "surrogatepass"))
    if isinstance(value, enum.Enum):
        material: List[Any] = [qualified_name(type(value)), value.name]
        return _ext(EXT_ENUM, canonical(material, path, depth + 1))
    if dataclasses.is_dataclass(value):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        material = [qualified_name(type(value)), fields]
        return _ext(EXT_RECORD, canonical(material, path, depth + 1))
    if isinstance(value, tuple) and hasattr(type(value), "_fields"):
        field_names = getattr(type(value), "_fields")
        material = [qualified_name(type(value)), dict(zip(field_names, value))]
        return _ext(EXT_RECORD, canonical(material, path, depth + 1))
    # Subclasses of the built-in types behave like them unless they say otherwise.
    bases: Tuple[Callable[[Any], Any], ...] = (int, float, str, bytes)
    for base in bases:
        if isinstance(value, cast(type, base)):
            return canonical(base(value), path, depth)
    if isinstance(value, (list, tuple)):
        return canonical(list(value), path, depth)
    if isinstance(value, dict):
        return _encode_map(value.items(), path, depth)
    if isinstance(value, memoryview):
        return _encode_bytes(value, path)
    raise Unencodable(value, path, f"a {type(value).__module__}.{type(value).__qualname__} object has no canonical MessagePack form")


def key(material: Any) -> bytes:
    """The 32-byte key of ``material``: SHA-256 of its canonical MessagePack."""
    return hashlib.sha256(canonical(material)).digest()
