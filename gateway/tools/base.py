"""Value objects of server-side tools: :class:`Tool`, :class:`ToolResult`, :class:`ToolError`."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# OpenAI's rule for function names; checked here so a bad name fails at startup, not as an
# upstream error in the middle of a call.
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

ToolStatus = Literal["ok", "error", "timeout", "invalid_arguments"]


class ToolError(Exception):
    """Raise from a tool: the message is shown to the model.

    Anything else a tool raises reaches the model only as "The tool failed.", so write the message
    for the model: what went wrong and what it could do instead.
    """


class ToolArguments(BaseModel):
    """Base of the model ``@tool`` builds from a function's signature, one field per parameter.

    Fields are named ``p_<parameter>`` with the parameter's name as alias: a tool may then have a
    parameter called ``json``, ``copy`` or ``schema`` without shadowing a ``BaseModel`` method.
    """

    # Unknown arguments are refused rather than ignored: a misspelt optional argument would
    # otherwise silently fall back to its default. Numbers are accepted for strings because models
    # often send ``"zip": 12345`` for a string field.
    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    def kwargs(self) -> dict[str, Any]:
        """The validated values, keyed by parameter name, as the handler takes them."""
        return {
            info.alias or name: getattr(self, name)
            for name, info in type(self).model_fields.items()
        }


@dataclass(frozen=True)
class Tool:
    """A function the model may call, run by the gateway."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments object."""
    handler: Callable[..., Any]
    timeout: float | None = None
    """Seconds; ``None`` means the runner's default."""
    arguments: type[ToolArguments] | None = field(
        default=None, repr=False, compare=False, kw_only=True
    )
    """Validates and converts the model's arguments; ``@tool`` sets it. Without one (a ``Tool``
    built by hand) the decoded JSON object is passed to the handler as keyword arguments as is."""

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise ValueError(
                f"tool name must be 1-64 letters, digits, '_' or '-' (got {self.name!r})"
            )
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a JSON Schema object")
        if not callable(self.handler):
            raise ValueError(f"tool {self.name!r}: handler must be callable")
        if self.timeout is not None and not (self.timeout > 0 and math.isfinite(self.timeout)):
            raise ValueError(f"tool {self.name!r}: timeout must be a positive number of seconds")

    def definition(self) -> dict[str, Any]:
        """The entry for ``session.tools``; a fresh copy, so the caller may change it."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
        }


@dataclass(frozen=True)
class ToolResult:
    """What running a tool gave: the ``function_call_output.output`` string and how it went."""

    output: str
    """A JSON text, ready for ``{"type": "function_call_output", "output": ...}``."""
    status: ToolStatus
    seconds: float
