"""Server-side tools: functions the model calls and the gateway runs, out of the browser's reach.

::

    from gateway.tools import tool

    @tool
    def current_time(timezone: str = "UTC") -> str:
        \"\"\"Current time in an IANA time zone.\"\"\"

``GATEWAY_TOOLS=my.module`` makes the gateway load a module's tools (:func:`load_tool_modules`),
declare them upstream (:meth:`ToolRegistry.definitions`) and answer the model's calls
(:func:`run_tool`). Pure Python: nothing here touches the network. See ``docs/tools.md``.
"""

from gateway.tools.base import Tool, ToolArguments, ToolError, ToolResult, ToolStatus
from gateway.tools.decorator import make_tool, tool
from gateway.tools.loader import load_tool_modules
from gateway.tools.registry import ToolRegistry
from gateway.tools.runner import encode_output, run_tool

__all__ = [
    "Tool",
    "ToolArguments",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolStatus",
    "encode_output",
    "load_tool_modules",
    "make_tool",
    "run_tool",
    "tool",
]
