"""A cached function's version: the SHA-256 of its code's syntax tree.

The material is ``ast.dump`` of the parsed ``inspect.getsource`` of the
function (its signature and body; docstrings and its decorators left out),
so comments, blank lines and formatting keep the version. Then, by name, the
module-level functions and classes of the same module that it mentions,
transitively, each as ``ast.dump`` of its definition in the module's source.

What this does not see (say so with ``version=``): functions of other modules,
methods reached through an attribute (``self.helper()``), the values of
global variables and constants, closures' free variables, and the function's
other decorators. The syntax tree is Python's own, so two Python minor
versions may give one function two versions (its entries are then kept
apart, never mixed).

When the source is not available (code built with ``exec``, a ``.pyc`` without
its ``.py``, a lambda), the version is the hash of the code object instead:
``co_code``, ``co_consts`` (nested code objects by their own hash) and
``co_names``, which changes with any edit that changes the bytecode, and with
the Python version.
"""

from __future__ import annotations

import ast
from copy import deepcopy
import hashlib
import inspect
import linecache
import sys
import textwrap
import types
from typing import Any, Dict, List, Optional, Set, Union, cast

_Definition = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _strip_docstrings(node: ast.AST) -> None:
    for child in ast.walk(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = child.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                # A body cannot be empty: a docstring alone becomes `pass`.
                child.body = body[1:] or [ast.Pass()]


def _dump(node: _Definition, keep_decorators: bool) -> str:
    copy = deepcopy(node)
    _strip_docstrings(copy)
    if not keep_decorators and isinstance(copy, (ast.FunctionDef, ast.AsyncFunctionDef)):
        copy.decorator_list = []
    return ast.dump(copy, annotate_fields=True, include_attributes=False)


def _names(node: ast.AST) -> Set[str]:
    return {child.id for child in ast.walk(node) if isinstance(child, ast.Name)}


_module_trees: Dict[str, Any] = {}


def _module_definitions(function: types.FunctionType) -> Dict[str, _Definition]:
    """The module-level definitions of the file that defines ``function``, by name."""
    try:
        filename = inspect.getsourcefile(function)
    except TypeError:
        return {}
    if not filename:
        return {}
    linecache.checkcache(filename)
    text = "".join(linecache.getlines(filename, function.__globals__))
    cached = _module_trees.get(filename)
    if cached is not None and cached[0] == text:
        return cast(Dict[str, _Definition], cached[1])
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return {}
    definitions = {node.name: node for node in tree.body if isinstance(node, _DEFINITIONS)}
    _module_trees[filename] = (text, definitions)
    return definitions


def _function_node(function: types.FunctionType) -> Optional[Union[ast.FunctionDef, ast.AsyncFunctionDef]]:
    try:
        source = textwrap.dedent(inspect.getsource(function))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function.__name__:
            return node
    return None


def _code_material(code: types.CodeType, out: List[bytes]) -> None:
    out.append(code.co_code)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            nested: List[bytes] = []
            _code_material(constant, nested)
            out.append(b"code:" + hashlib.sha256(b"\0".join(nested)).digest())
        elif isinstance(constant, frozenset):
            # A set's order follows string hashing, which differs between processes.
            out.append(repr(sorted(repr(element) for element in constant)).encode("utf-8", "surrogatepass"))
        else:
            out.append(repr(constant).encode("utf-8", "surrogatepass"))
    out.append(repr(code.co_names).encode())


def compute(function: Any) -> str:
    """The version of ``function``: 64 lowercase hex digits."""
    function = inspect.unwrap(function)
    node = _function_node(function) if isinstance(function, types.FunctionType) else None
    if node is None:
        code = getattr(function, "__code__", None)
        if code is None:
            raise TypeError(f"cannot compute a version for {function!r}: pass version=")
        material: List[bytes] = [b"cache-gateway-python/code"]
        _code_material(code, material)
        return hashlib.sha256(b"\0".join(material)).hexdigest()

    parts = ["cache-gateway-python/ast", _dump(node, keep_decorators=False)]
    definitions = _module_definitions(function)
    seen: Set[str] = {function.__name__} if function.__qualname__ == function.__name__ else set()
    pending = sorted(_names(node))
    covered: Dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        definition = definitions.get(name)
        if definition is None:
            continue
        covered[name] = _dump(definition, keep_decorators=True)
        pending.extend(sorted(_names(definition)))
    for name in sorted(covered):
        parts.append(f"{name}\n{covered[name]}")
    return hashlib.sha256("\n\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
