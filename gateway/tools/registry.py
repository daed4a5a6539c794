"""The set of tools a gateway serves, by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from gateway.tools.base import Tool
from gateway.tools.decorator import tool_of


class ToolRegistry:
    """Tools by name, in registration order. Names are unique: the model calls tools by name."""

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        for t in tools:
            self.register(t)

    def register(self, tool: Tool | Callable[..., Any]) -> None:
        """Add a :class:`Tool` or a function decorated with ``@tool``; a taken name is refused."""
        found = tool if isinstance(tool, Tool) else tool_of(tool)
        if found is None:
            raise TypeError(f"not a tool: {tool!r} (decorate it with @tool)")
        if found.name in self._tools:
            raise ValueError(f"a tool named {found.name!r} is already registered")
        self._tools[found.name] = found

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def __repr__(self) -> str:
        return f"ToolRegistry({self.names()!r})"

    def names(self) -> list[str]:
        return list(self._tools)

    def definitions(self) -> list[dict[str, Any]]:
        """``session.tools`` entries for every tool, fresh copies the caller may change."""
        return [t.definition() for t in self._tools.values()]
