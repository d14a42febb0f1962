"""Cached values: MessagePack, never pickle, so reading an entry runs no code
but the constructor of a type this process registered.

============================  ==========================================  ==================
stored                        as                                          read back as
============================  ==========================================  ==================
None, bool, int, float, str   their MessagePack types                     the same
bytes, bytearray              bin                                         ``bytes``
list, tuple                   array                                       ``list``
dict                          map                                         ``dict``
aware ``datetime``            timestamp extension (-1)                    ``datetime`` in UTC
naive ``datetime``            extension 4: ``isoformat()``                naive ``datetime``
``date``                      extension 5: ``isoformat()``                ``date``
dataclass, NamedTuple         extension 2: ``[module.qualname, {field:    the registered
                              value}]``                                   class, by keyword
============================  ==========================================  ==================

A dataclass or NamedTuple is read back only when its class is registered in
the reading process (``register_type``, or automatically: the classes named
by a cached function's return annotation, and every class this process has
stored). An entry naming a class that is not registered does not decode: the
call computes its value again and stores it, as for a miss. Anything else
raises ``TypeError`` when stored; the cached call returns its value anyway.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import typing
from typing import Any, Callable, Dict, List, Type, TypeVar, cast

import msgpack

#: msgpack has no type information: its packer, typed.
_packb: Callable[..., bytes] = msgpack.packb

from ._keys import EXT_DATE, EXT_NAIVE_DATETIME, EXT_RECORD, qualified_name

T = TypeVar("T", bound=type)

_registry: Dict[str, type] = {}
_registry_lock = threading.Lock()


class ValueDecodeError(Exception):
    """A stored value that this process cannot read back."""


def _is_record_class(cls: Any) -> bool:
    return isinstance(cls, type) and (
        dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )


def register_type(cls: T) -> T:
    """Lets cached values of the dataclass or NamedTuple ``cls`` be read back in this process.

    Usable as a class decorator. Classes named by a cached function's return
    annotation are registered when it is first called, and a class is
    registered whenever this process stores one of its instances, so this is
    needed only for classes that appear deeper in a value (a list of them,
    a field) and that this process may read before it ever stores one.
    Raises ``TypeError`` for any other class.
    """
    if not _is_record_class(cls):
        raise TypeError(f"register_type: {cls!r} is not a dataclass or NamedTuple class")
    name = qualified_name(cls)
    with _registry_lock:
        _registry[name] = cls
    return cls


def register_annotation(annotation: Any) -> None:
    """Registers the dataclasses and NamedTuples an annotation names, nested ones included."""
    if _is_record_class(annotation):
        if qualified_name(annotation) not in _registry:
            register_type(annotation)
        return
    for argument in typing.get_args(annotation):
        register_annotation(argument)


def _default(value: Any) -> Any:
    kind = type(value)
    if kind is tuple:
        return list(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            return msgpack.Timestamp.from_datetime(value)
        return msgpack.ExtType(EXT_NAIVE_DATETIME, value.isoformat().encode())
    if isinstance(value, datetime.date):
        return msgpack.ExtType(EXT_DATE, value.isoformat().encode())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls: type = type(value)
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value) if field.init}
    elif isinstance(value, tuple) and hasattr(kind, "_fields"):
        cls = kind
        fields = dict(zip(kind._fields, value))
    else:
        # Subclasses of the built-in types (OrderedDict, defaultdict, IntEnum,
        # StrEnum, ...) are stored as their base type and read back as it.
        if isinstance(value, str):
            return str.__str__(value)  # the characters, whatever the subclass's __str__
        for base in (dict, list, tuple, bytes, int, float):
            if isinstance(value, base):
                return list(cast(Any, value)) if base is tuple else cast(Any, base)(value)
        raise TypeError(f"a {kind.__module__}.{kind.__qualname__} object cannot be cached (see cache_gateway's value types)")
    name = qualified_name(cls)
    if _registry.get(name) is not cls:
        register_type(cls)
    return msgpack.ExtType(EXT_RECORD, _pack([name, fields]))


def _pack(value: Any) -> bytes:
    return _packb(value, use_bin_type=True, strict_types=True, default=_default, datetime=False)


def encode(value: Any) -> bytes:
    """The stored bytes of ``value``; raises ``TypeError`` for a value of no supported type."""
    try:
        return _pack(value)
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(str(error)) from None


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_RECORD:
        name, fields = _unpack(data)
        cls = _registry.get(name)
        if cls is None:
            raise ValueDecodeError(f"the class {name} is not registered in this process (register_type)")
        return cls(**fields)
    if code == EXT_NAIVE_DATETIME:
        return datetime.datetime.fromisoformat(data.decode())
    if code == EXT_DATE:
        return datetime.date.fromisoformat(data.decode())
    raise ValueDecodeError(f"unknown MessagePack extension type {code}")


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3, ext_hook=_ext_hook)


def decode(data: bytes) -> Any:
    """The value of stored bytes; raises ``ValueDecodeError`` when they cannot be read."""
    try:
        return _unpack(data)
    except ValueDecodeError:
        raise
    except Exception as error:  # bad bytes or a constructor that refused them
        raise ValueDecodeError(str(error)) from None


def registered_types() -> List[Type[Any]]:
    """The classes registered for decoding (for tests and diagnostics)."""
    with _registry_lock:
        return list(_registry.values())
