"""cache-gateway's Python client: ``@cache(ttl=300)`` through the host's gateway.

```python
from cache_gateway import cache

@cache(ttl=300)
def get_user_data(user_id: int) -> dict:
    return database.load_user(user_id)      # runs only on a miss
```

The function's version is the SHA-256 of its syntax tree (and of the module's
functions and classes it calls), so changed code is never served old results;
keys are the SHA-256 of the canonical MessagePack of the arguments; values
are MessagePack, never pickle. See the README's "Python client" section.
"""

from __future__ import annotations

from ._client import GatewayError, Settings, configure, default_socket_path
from ._decorator import (
    cache,
    invalidate,
    invalidate_all,
    invalidate_all_async,
    invalidate_async,
    key_of,
    name_of,
    version_of,
)
from ._values import register_type

__all__ = [
    "GatewayError",
    "Settings",
    "cache",
    "configure",
    "default_socket_path",
    "invalidate",
    "invalidate_all",
    "invalidate_all_async",
    "invalidate_async",
    "key_of",
    "name_of",
    "register_type",
    "version_of",
]
