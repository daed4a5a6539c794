"""Two example tools for the demo: the time in a time zone, and a small calculator.

Off unless listed: ``GATEWAY_TOOLS=gateway.tools.examples``. They double as a template: one takes
its parameter description from the docstring's "Args:" section, the other from ``Annotated``.
"""

from __future__ import annotations

import ast
import difflib
import math
import operator
import zoneinfo
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field

from gateway.tools.base import ToolError
from gateway.tools.decorator import tool

# ---------------------------------------------------------------------------------------------
# current_time


@tool
def current_time(timezone: str = "UTC") -> dict[str, Any]:
    """The current date and time in a time zone.

    Args:
        timezone: An IANA time zone name such as "Europe/Paris", "America/New_York",
            "Asia/Tokyo" or "UTC".
    """
    if len(timezone) > 64:
        raise ToolError("That is not a time zone name; use one such as 'Europe/Paris'.")
    zone = _zone(timezone.strip())
    now = datetime.now(zone)
    return {
        "timezone": str(zone),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z")[:3] + ":" + now.strftime("%z")[3:],
        "iso": now.isoformat(timespec="seconds"),
    }


def _zone(name: str) -> tzinfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass  # ValueError: a key like "../x"; OSError: a directory such as "America"
    known = _known_zones()
    if name.upper() in ("UTC", "Z", "GMT", "ETC/UTC") and "UTC" not in known:
        return UTC  # a system without a time zone database still knows UTC
    # Models often say "europe/paris" or just "Tokyo": take the one zone that fits, if one does.
    key = name.lower().replace(" ", "_")
    fits = sorted(z for z in known if key in (z.lower(), z.rsplit("/", 1)[-1].lower()))
    if len(fits) == 1:
        return zoneinfo.ZoneInfo(fits[0])
    hint = "Use an IANA time zone name: Area/City, such as 'Europe/Paris' or 'America/New_York'."
    close = fits[:3] or difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    if close:
        hint += f" Did you mean {', '.join(repr(z) for z in close)}?"
    elif not known:
        hint = "This server has no time zone database; only 'UTC' is available."
    raise ToolError(f"Unknown time zone {name!r}. {hint}")


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    # Walks the time zone directories: done once, and only when a name was not found.
    return frozenset(zoneinfo.available_timezones())


# ---------------------------------------------------------------------------------------------
# calculate

MAX_EXPRESSION_LENGTH = 500
# Integers stay exact up to this many bits (about 300 digits); beyond it the answer is refused
# rather than computed, so "9**9**9" or "10**10**10" cannot eat the CPU or memory.
MAX_INT_BITS = 1000

Number = int | float

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "degrees": math.degrees,
    "radians": math.radians,
    "min": min,
    "max": max,
}


@tool(timeout=2.0)
def calculate(
    expression: Annotated[
        str,
        Field(
            description="An arithmetic expression such as '(2 + 3) * 4', '2 ** 10' or "
            "'sqrt(2) * sin(pi / 4)'. Numbers, + - * / // % **, parentheses, the constants "
            "pi, e and tau, and sqrt, abs, round, floor, ceil, exp, log, log10, log2, sin, cos, "
            "tan, asin, acos, atan, degrees, radians, min, max.",
        ),
    ],
) -> Number:
    """Evaluate an arithmetic expression. Use it instead of doing arithmetic in your head."""
    return evaluate(expression)


def evaluate(expression: str) -> Number:
    """The value of an arithmetic ``expression``; :class:`ToolError` for anything else.

    The expression is parsed with ``ast`` and walked node by node: only numbers, the operators and
    names listed above exist here, so there is no way to reach attributes, builtins or imports.
    """
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise ToolError(f"The expression is too long (at most {MAX_EXPRESSION_LENGTH} characters).")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        raise ToolError(f"Could not parse {expression!r} as arithmetic.") from None
    try:
        value = _eval(tree.body)
    except ZeroDivisionError:
        raise ToolError("Division by zero.") from None
    except OverflowError:
        raise ToolError("The result is too large.") from None
    except RecursionError:
        raise ToolError("The expression is nested too deeply.") from None
    except (ValueError, TypeError) as exc:  # math domain errors: sqrt(-1), log(0)
        raise ToolError(f"Cannot compute that: {exc}.") from None
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ToolError("The result is too large.")
        # Twelve significant digits: 0.1 + 0.2 answers 0.3, not 0.30000000000000004.
        value = float(f"{value:.12g}")
    return value


def _eval(node: ast.expr) -> Number:
    if isinstance(node, ast.Constant):
        # bool is an int subclass; True + 1 is not arithmetic anyone means.
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return _checked(node.value)
        raise ToolError(f"Only numbers are allowed, not {node.value!r}.")
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            hint = " Use ** for powers." if isinstance(node.op, ast.BitXor) else ""
            raise ToolError(f"The operator {_source(node)!r} is not supported.{hint}")
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(op(left, right))
    if isinstance(node, ast.UnaryOp):
        unary = _UNARY.get(type(node.op))
        if unary is None:
            raise ToolError(f"{_source(node)!r} is not supported.")
        return _checked(unary(_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"Unknown name {node.id!r}; the constants are pi, e and tau.")
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS or node.keywords:
            raise ToolError(
                f"{_source(node)!r} is not supported; the functions are {', '.join(_FUNCTIONS)}."
            )
        if not 1 <= len(node.args) <= 8:
            raise ToolError(f"{node.func.id}() takes one or a few arguments.")
        args = [_eval(a) for a in node.args]
        # round(n, -10**9) would compute 10**(10**9) first.
        if node.func.id == "round" and len(args) > 1 and abs(args[1]) > 100:
            raise ToolError("round() takes at most 100 digits.")
        return _checked(_FUNCTIONS[node.func.id](*args))
    raise ToolError(f"{_source(node)!r} is not arithmetic.")


def _check_power(base: Number, exponent: Number) -> None:
    """Refuse a power whose result would pass the size limit, before computing it."""
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 0 and abs(base) > 1:
        if exponent * math.log2(abs(base)) > MAX_INT_BITS:
            raise ToolError("The result is too large.")
    # Float powers cannot run long: they overflow (OverflowError) or give inf, both refused.
    # Mixed int/float: the int was already bounded by _checked, so float() of it cannot hang.


def _checked(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ToolError("The result is not a real number.")  # (-8) ** 0.5 is complex
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ToolError("The result is too large.")
    return value


def _source(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 40 else text[:39] + "…"
