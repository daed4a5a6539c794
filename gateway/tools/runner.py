"""Run one tool call: validate the model's arguments, call the handler under a timeout, encode the
result. Whatever happens, the caller gets a :class:`ToolResult` whose output the model can read.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pydantic
import structlog
from pydantic_core import to_jsonable_python

from gateway.tools.base import Tool, ToolError, ToolResult, ToolStatus

log = structlog.get_logger(__name__)

GENERIC_FAILURE = "The tool failed."
# Sync handlers each get a daemon thread (see _in_thread); this many may be alive at once. Threads
# of timed-out handlers count until they really end, so tools that hang forever eventually make
# further sync calls fail fast instead of piling up threads without bound.
MAX_SYNC_THREADS = 64
_thread_slots = threading.BoundedSemaphore(MAX_SYNC_THREADS)
_MAX_ERRORS_SHOWN = 5
_MAX_INPUT_SHOWN = 80


async def run_tool(tool: Tool, arguments: str, *, default_timeout: float = 10.0) -> ToolResult:
    """Run ``tool`` with the model's ``arguments`` (a JSON text) and return what to tell the model.

    Never raises, except ``CancelledError`` when the caller itself is cancelled. The time limit
    is ``tool.timeout`` or else ``default_timeout`` seconds.
    """
    started = time.perf_counter()

    def done(status: ToolStatus, output: str) -> ToolResult:
        return ToolResult(output=output, status=status, seconds=time.perf_counter() - started)

    try:
        kwargs = _bind(tool, arguments)
    except _InvalidArguments as exc:
        return done("invalid_arguments", _error(str(exc)))
    except Exception:  # a validator of the tool's own types that raised something odd
        return done("error", _failed(tool, reason="argument validation failed"))

    limit = tool.timeout if tool.timeout is not None else default_timeout
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            value = await _call(tool, kwargs)
    except TimeoutError:
        if not deadline.expired():  # the tool's own TimeoutError (a request it made, say)
            return done("error", _failed(tool))
        log.warning("tool.timed_out", tool=tool.name, timeout=limit)
        return done("timeout", _error(f"The tool did not finish within {limit:g} seconds."))
    except ToolError as exc:
        return done("error", _error(str(exc) or GENERIC_FAILURE))
    except _Busy:
        log.warning("tool.busy", tool=tool.name, threads=MAX_SYNC_THREADS)
        return done("error", _error("The tool is busy; try again later."))
    except Exception:
        return done("error", _failed(tool))

    try:
        output = encode_output(value)
    except Exception:  # a return value with no JSON form is the tool's bug, not the model's
        return done("error", _failed(tool, reason="result not JSON-serialisable"))
    return done("ok", output)


def encode_output(value: Any) -> str:
    """The ``function_call_output.output`` text for a handler's return value.

    A string that already is JSON goes as it is; any other string is JSON-encoded. Everything
    else (models, dataclasses, dicts, lists, numbers, ``None``) goes through pydantic's JSON mode.
    """
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError:
            pass
        else:
            return value
    # Non-ASCII as is: the data channel carries UTF-8, and escapes cost the model tokens.
    return json.dumps(to_jsonable_python(value), ensure_ascii=False, separators=(",", ":"))


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def _failed(tool: Tool, *, reason: str = "exception") -> str:
    # The model gets nothing but the generic text: an exception's message can carry internals
    # (paths, hosts, queries, secrets) the model would happily repeat to the user.
    log.error("tool.failed", tool=tool.name, reason=reason, exc_info=True)
    return _error(GENERIC_FAILURE)


class _InvalidArguments(Exception):
    """The message is written for the model: which argument, what was expected."""


class _Busy(Exception):
    pass


def _bind(tool: Tool, arguments: str) -> dict[str, Any]:
    """The handler's keyword arguments from the model's JSON text, validated when ``tool`` can."""
    # Some clients send "" for a function without parameters; that means "no arguments".
    text = arguments.strip() if isinstance(arguments, str) else arguments
    try:
        raw = json.loads(text) if text else {}
    except (TypeError, ValueError) as exc:
        raise _InvalidArguments(
            f"The arguments are not valid JSON ({exc}). Call {tool.name} again with a JSON object."
        ) from None
    if not isinstance(raw, dict):
        raise _InvalidArguments(
            f"The arguments must be a JSON object, not {type(raw).__name__}. "
            f"Call {tool.name} again with a JSON object."
        )
    if tool.arguments is None:
        return raw
    try:
        return tool.arguments.model_validate(raw).kwargs()
    except pydantic.ValidationError as exc:
        raise _InvalidArguments(_describe(tool, exc)) from None


def _describe(tool: Tool, exc: pydantic.ValidationError) -> str:
    problems = []
    for err in exc.errors(include_url=False)[:_MAX_ERRORS_SHOWN]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        if err["type"] == "missing":
            problems.append(f"'{where}' is required")
        elif err["type"] == "extra_forbidden":
            problems.append(f"'{where}' is not a parameter of {tool.name}")
        else:
            shown = json.dumps(err["input"], ensure_ascii=False, default=str)
            if len(shown) > _MAX_INPUT_SHOWN:
                shown = shown[: _MAX_INPUT_SHOWN - 1] + "…"
            problems.append(f"'{where}': {err['msg']} (got {shown})")
    more = exc.error_count() - _MAX_ERRORS_SHOWN
    if more > 0:
        problems.append(f"and {more} more")
    return (
        f"Invalid arguments for {tool.name}: {'; '.join(problems)}. "
        "Call it again with corrected arguments."
    )


async def _call(tool: Tool, kwargs: dict[str, Any]) -> Any:
    handler = tool.handler
    if _is_async(handler):
        return await handler(**kwargs)
    value = await _in_thread(tool.name, handler, kwargs)
    if inspect.isawaitable(value):  # a sync callable that returned a coroutine (a partial, say)
        return await value
    return value


def _is_async(fn: Callable[..., Any]) -> bool:
    # The second test catches an object whose __call__ is an async def.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


async def _in_thread(name: str, fn: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """``fn(**kwargs)`` in a daemon thread of its own, without blocking the event loop.

    Not ``asyncio.to_thread``: the default executor is shared with aiohttp's DNS resolution, so a
    few hung tools would stall every upstream connection; and its threads are joined at exit, so
    a hung tool would keep the process from ever shutting down. A thread cannot be killed: after
    a timeout it runs on to its end, and its result is dropped.
    """
    slots = _thread_slots  # released to the one acquired from, even if the global is swapped
    if not slots.acquire(blocking=False):
        raise _Busy
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()  # structlog's bound context follows the call

    def settle(ok: bool, value: Any) -> None:
        if future.done():  # timed out or cancelled meanwhile: nobody wants the result
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        try:
            ok, value = True, context.run(fn, **kwargs)
        except Exception as exc:
            ok, value = False, exc
        finally:
            slots.release()
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed: the gateway moved on without this result
            pass

    try:
        threading.Thread(target=work, name=f"tool:{name}", daemon=True).start()
    except BaseException:
        slots.release()
        raise
    return await future
