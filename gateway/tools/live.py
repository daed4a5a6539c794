"""Server-side tools in a GPT-Live session: declared to its Responses delegate, run here,
invisible to the browser.

A Live model calls functions only through Responses delegation: the session's
``delegation.responses.tools`` carry the server's tools (merged in at creation,
:func:`gateway.protocol.live.upstream_session`), and the delegate's Responses stream reaches the
client as ``response.event`` events, each wrapping one Responses stream event
(``../shared/live-protocol.md`` §3b). This coordinator sits on both streams of such a session:

* upstream → browser: the nested events of a server tool's call
  (``response.output_item.added``/``done`` with its ``function_call`` item and
  ``response.function_call_arguments.delta``/``done`` for that item) are hidden, and the call
  starts running the moment its arguments are complete. Sessions shown to the browser
  (:meth:`LiveToolCoordinator.shown`) do not list the server tools.
* When the delegate's response is over (a nested ``response.completed``, ``incomplete`` or
  ``failed``) and its server calls have finished, their outputs go upstream as
  ``response.item.create`` ``function_call_output`` items, then one ``response.create`` lets
  the delegate continue — left to the browser when the response called its tools too, as for
  Realtime (:class:`~gateway.tools.coordinator.BrowserTurn`). ``error`` events answering
  those commands are the gateway's own and reach no one but the log.
* client → upstream: a ``response.item.create`` that forges a server call (a
  ``function_call`` named like a server tool, or any item reusing a server call's
  ``call_id``) is refused (``tool_name_reserved``, ``tool_call_reserved``): the call has one
  owner, and it answers once (§6). A trusted ``session.update`` that sets the delegate's tools
  gets the server's merged back in, as at creation.

The browser's own function tools are untouched: their calls reach it and it answers them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.errors import InvalidRequest
from gateway.protocol.events import new_event_id
from gateway.protocol.live import with_server_tools, without_tools
from gateway.tools.base import ToolResult
from gateway.tools.coordinator import (
    BrowserTurn,
    Runner,
    ServerCall,
    calls_browser_tools,
    outputs,
)
from gateway.tools.registry import ToolRegistry
from gateway.tools.runner import run_tool
from gateway.types import Event

log = structlog.get_logger(__name__)

# Nested Responses events after which a delegated response produces nothing more.
_RESPONSE_ENDED: Final = frozenset({"response.completed", "response.incomplete", "response.failed"})
_SESSION_EVENTS: Final = frozenset({"session.started", "session.updated", "session.closed"})


@dataclass
class _Pending:
    """A server tool's ``function_call`` item seen in a delegate's stream."""

    name: str
    call_id: str
    delegation_id: str | None
    response_id: str | None
    call: ServerCall | None = None


class LiveToolCoordinator:
    def __init__(
        self,
        registry: ToolRegistry,
        send_upstream: Callable[[Event], None],
        *,
        runner: Runner | None = None,
        on_result: Callable[[ServerCall, ToolResult], None] | None = None,
    ) -> None:
        self._registry = registry
        self._names = frozenset(registry.names())
        self._send = send_upstream
        self._run: Runner = runner or (lambda tool, args: run_tool(tool, args))
        self._on_result = on_result
        self._items: dict[str, _Pending] = {}  # hidden function_call items by item id
        self._calls: dict[str, _Pending] = {}  # the same, by call_id: what a client may not use
        # The response each delegation streams now: a nested event names neither.
        self._responses: dict[str | None, str | None] = {}
        self._ours: set[str] = set()  # event_ids of the commands the gateway sends
        self._answering: set[asyncio.Task[None]] = set()
        self._browser_turn = BrowserTurn()

    @property
    def enabled(self) -> bool:
        return len(self._registry) > 0

    # -- client → upstream --------------------------------------------------------------------

    def client_event(self, event: Event) -> Event:
        """The command to send upstream; raises InvalidRequest for one that forges a server
        call."""
        kind = event.get("type")
        if kind == "response.item.create":
            self._check_item(event.get("item"))
            return event
        if kind == "response.create":
            self._browser_turn.continued()
            return event
        if kind == "session.update":
            patch = event.get("session")
            if isinstance(patch, dict) and "tools" in _responses_of(patch):
                # An update may leave the (unchangeable) type out; the session's is responses.
                typed = {**patch, "delegation": {"type": "responses", **patch["delegation"]}}
                merged = with_server_tools(typed, self._registry.definitions(), param="session")
                if "type" not in patch["delegation"]:
                    del merged["delegation"]["type"]
                return {**event, "session": merged}
        return event

    def _check_item(self, item: Any) -> None:
        if not isinstance(item, dict) or item.get("type") not in (
            "function_call",
            "function_call_output",
        ):
            return
        name, call_id = item.get("name"), item.get("call_id")
        if item["type"] == "function_call" and isinstance(name, str) and name in self._names:
            raise InvalidRequest(
                f"The tool name '{name}' is reserved by this gateway's server-side tools; "
                "a client may not add calls to it.",
                code="tool_name_reserved",
                param="item.name",
            )
        if isinstance(call_id, str) and call_id in self._calls:
            raise InvalidRequest(
                f"The call_id '{call_id[:100]}' belongs to a call of this gateway's "
                "server-side tools; a client may not add items to it.",
                code="tool_call_reserved",
                param="item.call_id",
            )

    # -- upstream → browser -------------------------------------------------------------------

    def server_event(self, event: Event) -> Event | None:
        """The event, or ``None`` to hide it from the browser. Sees every upstream event,
        whatever the browser may see."""
        kind = event.get("type")
        if kind == "error":
            return self._error(event)
        if kind != "response.event":
            return event
        nested = event.get("event")
        if not isinstance(nested, dict):
            return event
        delegation = event.get("delegation_id")
        delegation_id = delegation if isinstance(delegation, str) else None
        nested_kind = nested.get("type")
        if nested_kind == "response.created":
            response = nested.get("response")
            response_id = response.get("id") if isinstance(response, dict) else None
            self._responses[delegation_id] = response_id if isinstance(response_id, str) else None
            return event
        if nested_kind in ("response.output_item.added", "response.output_item.done"):
            return self._output_item(nested, delegation_id, event)
        if nested_kind == "response.function_call_arguments.delta":
            return None if self._is_hidden(nested.get("item_id")) else event
        if nested_kind == "response.function_call_arguments.done":
            pending = self._items.get(str(nested.get("item_id")))
            if pending is None:
                return event
            self._start(pending, nested.get("arguments"))
            return None
        if nested_kind in _RESPONSE_ENDED:
            response = nested.get("response")
            output = response.get("output") if isinstance(response, dict) else None
            self._response_ended(delegation_id, calls_browser_tools(output, self._names))
        return event

    def shown(self, event: Event) -> Event:
        """A session event as the browser sees it: without the server's tools."""
        session = event.get("session")
        if event.get("type") not in _SESSION_EVENTS or not isinstance(session, dict):
            return event
        visible = without_tools(session, self._names)
        return event if visible == session else {**event, "session": visible}

    def _is_hidden(self, item_id: Any) -> bool:
        return isinstance(item_id, str) and item_id in self._items

    def _output_item(self, nested: Event, delegation_id: str | None, event: Event) -> Event | None:
        item = nested.get("item")
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return event
        item_id, name = item.get("id"), item.get("name")
        if not isinstance(item_id, str):
            return event
        if item_id in self._items:
            pending = self._items[item_id]
        elif isinstance(name, str) and name in self._names:
            pending = _Pending(
                name=name,
                call_id=str(item.get("call_id")),
                delegation_id=delegation_id,
                response_id=self._responses.get(delegation_id),
            )
            self._items[item_id] = pending
            self._calls[pending.call_id] = pending
        else:
            return event
        if nested.get("type") == "response.output_item.done":
            # The finished item has the arguments too: a stream that skipped
            # function_call_arguments.done still gets its call run.
            self._start(pending, item.get("arguments"))
        return None

    def _start(self, pending: _Pending, arguments: Any) -> None:
        if pending.call is not None:
            return  # one owner, one run (§6)
        tool = self._registry.get(pending.name)
        if tool is None:
            return
        call = ServerCall(
            call_id=pending.call_id,
            name=tool.name,
            arguments=arguments if isinstance(arguments, str) else "{}",
            response_id=pending.response_id,
        )
        call.task = asyncio.get_running_loop().create_task(
            self._run(tool, call.arguments), name=f"tool-{tool.name}"
        )
        pending.call = call
        log.info("tool.started", tool=tool.name, tool_call_id=call.call_id, dialect="live")

    def _response_ended(self, delegation_id: str | None, browser_calls: bool) -> None:
        response_id = self._responses.pop(delegation_id, None)
        calls = [
            p.call
            for p in self._items.values()
            if p.call is not None
            and not p.call.answered
            and p.delegation_id == delegation_id
            and p.response_id == response_id
        ]
        if not calls:
            return
        if browser_calls:
            self._browser_turn.expect()
        for call in calls:
            call.answered = True
        task = asyncio.get_running_loop().create_task(self._answer(calls))
        self._answering.add(task)
        task.add_done_callback(self._answering.discard)

    def _error(self, event: Event) -> Event | None:
        error = event.get("error")
        echoed = event.get("client_event_id")
        if echoed is None and isinstance(error, dict):
            echoed = error.get("client_event_id")
        if echoed not in self._ours:
            return event
        code = error.get("code") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        log.warning("tool.upstream_error", code=code, message=message, dialect="live")
        return None

    # -- answering ----------------------------------------------------------------------------

    async def _answer(self, calls: list[ServerCall]) -> None:
        for item in await outputs(calls, self._on_result, dialect="live"):
            self._inject({"type": "response.item.create", "item": item})
        if await self._browser_turn.continues():
            return  # the browser's own response.create continues the delegate
        # No body: it continues the delegated response that waits for these outputs.
        self._inject({"type": "response.create"})

    def _inject(self, event: Event) -> None:
        event_id = new_event_id()
        self._ours.add(event_id)
        self._send({"event_id": event_id, **event})

    async def aclose(self) -> None:
        """Cancel running tools and pending answers; the session is over."""
        tasks: list[asyncio.Task[Any]] = list(self._answering)
        tasks += [
            p.call.task
            for p in self._items.values()
            if p.call is not None and p.call.task is not None and not p.call.task.done()
        ]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _responses_of(session: dict[str, Any]) -> dict[str, Any]:
    delegation = session.get("delegation")
    responses = delegation.get("responses") if isinstance(delegation, dict) else None
    return responses if isinstance(responses, dict) else {}
