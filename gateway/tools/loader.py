"""``GATEWAY_TOOLS``: import the listed modules and register the tools they define."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence

from gateway.config import ConfigError
from gateway.tools.base import Tool
from gateway.tools.decorator import tool_of
from gateway.tools.registry import ToolRegistry

_MODULE_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_SETTING = "GATEWAY_TOOLS"


def load_tool_modules(spec: str | Sequence[str]) -> ToolRegistry:
    """The tools of the modules in ``spec`` ("pkg.mod,other.mod", or a list of names).

    Every module attribute carrying a ``@tool`` is registered, in the module's order. Any problem
    (a module that cannot be imported, one without tools, two tools with one name) raises
    :class:`~gateway.config.ConfigError`, so a misconfigured gateway stops at startup instead of
    running without the tools its operator expects. An empty spec gives an empty registry.
    """
    names = spec.split(",") if isinstance(spec, str) else [n for s in spec for n in s.split(",")]
    registry = ToolRegistry()
    origin: dict[str, tuple[str, Tool]] = {}  # tool name -> (module it came from, tool)
    for name in (n.strip() for n in names):
        if not name:
            continue
        if not _MODULE_RE.match(name):
            raise ConfigError(f"{_SETTING}: {name!r} is not a module name (expected pkg.module)")
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"{_SETTING}: cannot import {name!r}: {exc}") from exc
        except Exception as exc:  # the module itself raised while being imported
            raise ConfigError(
                f"{_SETTING}: cannot import {name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        found = 0
        for value in list(vars(module).values()):
            t = tool_of(value)
            if t is None:
                continue
            found += 1
            if t.name in origin:
                first_module, first = origin[t.name]
                if first is t:  # the same tool, re-exported by another listed module
                    continue
                raise ConfigError(
                    f"{_SETTING}: two tools are named {t.name!r}, in {first_module!r} and "
                    f"{name!r}; give one another name with @tool(name=...)"
                )
            origin[t.name] = (name, t)
            registry.register(t)
        if not found:
            raise ConfigError(
                f"{_SETTING}: module {name!r} defines no tools (decorate functions with "
                "@tool from gateway.tools)"
            )
    return registry
