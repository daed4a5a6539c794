"""Reading a value at a path of keys in nested JSON objects (``("audio", "output", "voice")``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

MISSING: Final = object()
"""What :func:`get_path` returns when the path is absent (``None`` may be a real value)."""


def get_path(node: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return MISSING
        node = node[key]
    return node
