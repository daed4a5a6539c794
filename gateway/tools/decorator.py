"""``@tool``: a type-hinted function becomes a Realtime function tool.

The decorator only attaches a :class:`Tool` to the function (as ``__realtime_tool__``) and returns
the function unchanged: it stays callable and testable as plain Python, and nothing is registered
at import time. :func:`gateway.tools.load_tool_modules` collects the tools of the modules it is
given.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from gateway.tools.base import Tool
from gateway.tools.schema import arguments_model, parameters_schema, split_docstring

F = TypeVar("F", bound=Callable[..., Any])

ATTRIBUTE = "__realtime_tool__"


@overload
def tool(fn: F, /) -> F: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, timeout: float | None = None
) -> Callable[[F], F]: ...


def tool(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> F | Callable[[F], F]:
    """Make ``fn`` a tool: ``@tool`` or ``@tool(name=..., description=..., timeout=...)``.

    The name defaults to the function's, the description to the first paragraph of its docstring,
    and the parameters' JSON Schema comes from the type hints (descriptions from
    ``Annotated[..., Field(description=...)]`` or the docstring's "Args:" section).
    ``timeout`` is in seconds; without it the runner's default applies.
    """

    def decorate(fn: F) -> F:
        setattr(fn, ATTRIBUTE, make_tool(fn, name=name, description=description, timeout=timeout))
        return fn

    return decorate if fn is None else decorate(fn)


def make_tool(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    timeout: float | None = None,
) -> Tool:
    """The :class:`Tool` for ``fn``; what ``@tool`` attaches, for callers that want no attribute."""
    if not inspect.isfunction(fn):
        raise TypeError(f"@tool takes a function defined with def or async def, not {fn!r}")
    tool_name = fn.__name__ if name is None else name
    summary, _ = split_docstring(fn.__doc__)
    model = arguments_model(fn, tool_name)
    return Tool(
        name=tool_name,
        description=summary if description is None else description,
        parameters=parameters_schema(model),
        handler=fn,
        timeout=timeout,
        arguments=model,
    )


def tool_of(obj: object) -> Tool | None:
    """The tool ``@tool`` attached to ``obj``, if any."""
    try:
        found = getattr(obj, ATTRIBUTE, None)
    except Exception:  # a module-level proxy whose __getattr__ misbehaves is simply not a tool
        return None
    return found if isinstance(found, Tool) else None
