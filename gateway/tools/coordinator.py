"""Server-side tools inside one call: declared upstream, run here, invisible to the browser.

The coordinator sits on both event streams of a call:

* client → upstream: a browser ``session.update``/``response.create`` that sets ``tools`` gets
  the server's tools merged back in (OpenAI's browser SDK sends ``tools: []`` on connect, which
  would otherwise remove them); a browser tool named like a server tool is refused.
* upstream → client: the function-call events of server tools (``response.output_item.*``,
  ``response.function_call_arguments.*``, the ``conversation.item.*`` echoes, and their entries in
  ``response.done.output``) are hidden, server tool definitions are removed from the sessions the
  browser sees, and each call starts running the moment its arguments are complete.

When a response with server calls is done and every call has finished, the outputs go upstream
as ``function_call_output`` items followed by one ``response.create`` — sent only while no
response is active, and sent again after the next ``response.done`` if the upstream still says
``conversation_already_has_active_response``. A response that also called the browser's own
tools is continued once, not twice: the browser answers its calls and asks for the next
response itself, so the gateway's outputs go in first and its own ``response.create`` is left
out, unless the browser had already continued, or does not within :data:`BROWSER_GRACE`.

Hidden items stay hidden: the ``function_call`` items of server tools and the
``function_call_output`` items that answer them.

* Their ids never reach the browser: a server event whose ``previous_item_id`` names one gets
  the nearest visible item before it instead (``null`` if there is none, or if the hidden item's
  own predecessor was never seen).
* A browser event that names one is refused exactly as the upstream refuses an item that does
  not exist (``item_not_found``): ``conversation.item.retrieve``/``delete``/``truncate``, a
  ``conversation.item.create`` after it, a ``response.create`` whose ``response.input`` (or a
  content part in it) references it.
* The browser cannot forge them either: a ``function_call`` item named like a server tool, or one
  reusing a server call's ``call_id``, and a ``function_call_output`` for a server call, are
  refused (``tool_name_reserved``, ``tool_call_reserved``), in ``conversation.item.create`` and
  in ``response.create``'s ``response.input``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

import structlog

from gateway.errors import InvalidRequest
from gateway.protocol.events import new_event_id
from gateway.protocol.paths import MISSING
from gateway.tools import Tool, ToolRegistry, ToolResult, run_tool
from gateway.types import Event

log = structlog.get_logger(__name__)

Runner = Callable[[Tool, str], Coroutine[Any, Any, ToolResult]]

# How long the gateway's outputs wait for a browser that has calls of its own to answer to ask
# for the next response itself, before the gateway asks.
BROWSER_GRACE: Final = 5.0


class BrowserTurn:
    """Whether the browser will continue a response that called its tools too: one
    ``response.create`` continues it, whoever sends it."""

    def __init__(self) -> None:
        self._expected = False
        self._continued = asyncio.Event()

    def expect(self) -> None:
        """A response ended with calls of the browser's: it will ask for the next one."""
        self._expected = True
        self._continued.clear()

    def continued(self) -> None:
        """The browser asked for a response."""
        self._continued.set()

    async def continues(self) -> bool:
        """After the gateway's outputs went in: True if the browser asks for the next response
        (within :data:`BROWSER_GRACE`), so the gateway need not; False if it already had,
        before them."""
        if not self._expected or self._continued.is_set():
            self._expected = False
            return False
        try:
            async with asyncio.timeout(BROWSER_GRACE):
                await self._continued.wait()
        except TimeoutError:
            return False
        finally:
            self._expected = False
        return True


def calls_browser_tools(output: Any, server: frozenset[str]) -> bool:
    """Whether a finished response's ``output`` holds a function call the browser answers."""
    return isinstance(output, list) and any(
        isinstance(o, dict) and o.get("type") == "function_call" and o.get("name") not in server
        for o in output
    )


@dataclass
class ServerCall:
    call_id: str
    name: str
    arguments: str
    response_id: str | None
    task: asyncio.Task[ToolResult] | None = None
    answered: bool = False


def merge_tools(requested: Any, server: list[dict[str, Any]]) -> list[Any]:
    """The browser's tools plus the server's; a browser tool may not take a server tool's name."""
    browser = list(requested) if isinstance(requested, list) else []
    server_names = {t["name"] for t in server}
    for entry in browser:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in server_names:
            raise InvalidRequest(
                f"The tool name '{name}' is reserved by this gateway's server-side tools; "
                "rename the browser tool.",
                code="tool_name_reserved",
                param="session.tools",
            )
    return browser + server


class ToolCoordinator:
    def __init__(
        self,
        registry: ToolRegistry,
        send_upstream: Callable[[Event], None],
        *,
        runner: Runner | None = None,
        on_result: Callable[[ServerCall, ToolResult], None] | None = None,
    ) -> None:
        self._registry = registry
        self._send = send_upstream
        self._run: Runner = runner or (lambda tool, args: run_tool(tool, args))
        self._on_result = on_result
        self._hidden_items: set[str] = set()
        # What came before each hidden item, as the upstream said: how a visible item that
        # follows one finds its visible predecessor.
        self._previous: dict[str, str | None] = {}
        self._calls: dict[str, ServerCall] = {}
        self._ours: set[str] = set()  # event_ids of the events we inject
        self._active_response: str | None = None
        self._want_response = False
        self._answering: set[asyncio.Task[None]] = set()
        self._browser_turn = BrowserTurn()

    @property
    def enabled(self) -> bool:
        return len(self._registry) > 0

    def definitions(self) -> list[dict[str, Any]]:
        return self._registry.definitions()

    # -- client → upstream --------------------------------------------------------------------

    def client_event(self, event: Event) -> Event:
        """Merge server tools into a browser's tool list; raises InvalidRequest on a clash, or
        when the event names a hidden item or forges a server tool's item."""
        kind = event.get("type")
        if kind in _ITEM_ID_EVENTS:
            self._check_reference(event.get("item_id"), "item_id")
            return event
        if kind == "conversation.item.create":
            self._check_reference(event.get("previous_item_id"), "previous_item_id")
            self._check_item(event.get("item"), "item")
            return event
        if kind == "session.update":
            key = "session"
        elif kind == "response.create":
            self._browser_turn.continued()
            key = "response"
            response = event.get("response")
            items = response.get("input") if isinstance(response, dict) else None
            if isinstance(items, list):
                for index, item in enumerate(items):
                    where = f"response.input[{index}]"
                    if isinstance(item, dict):
                        self._check_reference(item.get("id"), f"{where}.id")
                    self._check_item(item, where)
        else:
            return event
        body = event.get(key)
        if not isinstance(body, dict) or "tools" not in body:
            return event
        merged = merge_tools(body["tools"], self.definitions())
        return {**event, key: {**body, "tools": merged}}

    def _check_reference(self, item_id: Any, param: str) -> None:
        if self._is_hidden(item_id):
            # Word for word what the upstream answers for an item it does not have.
            raise InvalidRequest(
                f"Item with item_id not found: {item_id}.", code="item_not_found", param=param
            )

    def _check_item(self, item: Any, where: str) -> None:
        """Refuse a browser item that names a hidden item or passes for a server tool's."""
        if not isinstance(item, dict):
            return
        content = item.get("content")
        if isinstance(content, list):
            for index, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "item_reference":
                    self._check_reference(part.get("id"), f"{where}.content[{index}].id")
        kind = item.get("type")
        if kind not in ("function_call", "function_call_output"):
            return
        name, call_id = item.get("name"), item.get("call_id")
        if kind == "function_call" and isinstance(name, str) and name in self._registry:
            raise InvalidRequest(
                f"The tool name '{name}' is reserved by this gateway's server-side tools; "
                "a client may not add calls to it.",
                code="tool_name_reserved",
                param=f"{where}.name",
            )
        if isinstance(call_id, str) and call_id in self._calls:
            raise InvalidRequest(
                f"The call_id '{call_id}' belongs to a call of this gateway's server-side "
                "tools; a client may not add items to it.",
                code="tool_call_reserved",
                param=f"{where}.call_id",
            )

    # -- upstream → client --------------------------------------------------------------------

    def server_event(self, event: Event) -> Event | None:
        """The event as the browser should see it, or None to hide it."""
        kind = event.get("type")
        handler = _SERVER_HANDLERS.get(kind) if isinstance(kind, str) else None
        shown = handler(self, event) if handler else event
        previous = shown.get("previous_item_id") if shown is not None else None
        if shown is not None and isinstance(previous, str) and previous in self._hidden_items:
            return {**shown, "previous_item_id": self._visible_before(previous)}
        return shown

    def _is_hidden(self, item_id: Any) -> bool:
        return isinstance(item_id, str) and item_id in self._hidden_items

    def _hide(self, item_id: Any, event: Event) -> None:
        """Remember ``item_id`` as hidden, and its predecessor if ``event`` names it."""
        if not isinstance(item_id, str):
            return
        self._hidden_items.add(item_id)
        previous = event.get("previous_item_id", MISSING)
        if previous is None or isinstance(previous, str):
            self._previous[item_id] = previous

    def _visible_before(self, item_id: str) -> str | None:
        """The nearest item before hidden ``item_id`` that the browser may see."""
        current, seen = item_id, set[str]()
        while current in self._hidden_items:
            if current in seen:  # a loop in what the upstream said must not hang the call
                return None
            seen.add(current)
            before = self._previous.get(current)
            if before is None:
                return None
            current = before
        return current

    def _session(self, event: Event) -> Event:
        session = event.get("session")
        if not isinstance(session, dict) or not isinstance(session.get("tools"), list):
            return event
        names = set(self._registry.names())
        visible = [
            t for t in session["tools"] if not (isinstance(t, dict) and t.get("name") in names)
        ]
        return {**event, "session": {**session, "tools": visible}}

    def _response_created(self, event: Event) -> Event:
        response = event.get("response")
        self._active_response = response.get("id") if isinstance(response, dict) else "unknown"
        return event

    def _output_item(self, event: Event) -> Event | None:
        item = event.get("item")
        if not isinstance(item, dict):
            return event
        if _is_server_call(item, self._registry):
            self._hide(item.get("id"), event)
            return None
        if self._is_hidden(item.get("id")):
            return None
        return event

    def _conversation_item(self, event: Event) -> Event | None:
        item = event.get("item")
        if not isinstance(item, dict):
            return event
        if (
            self._is_hidden(item.get("id"))
            or _is_server_call(item, self._registry)
            or (
                item.get("type") == "function_call_output"
                and isinstance(item.get("call_id"), str)
                and item["call_id"] in self._calls
            )
        ):
            self._hide(item.get("id"), event)
            return None
        return event

    def _arguments_delta(self, event: Event) -> Event | None:
        return None if self._is_hidden(event.get("item_id")) else event

    def _arguments_done(self, event: Event) -> Event | None:
        name = event.get("name")
        tool = self._registry.get(name) if isinstance(name, str) else None
        if tool is None:
            return event
        call = ServerCall(
            call_id=str(event.get("call_id")),
            name=tool.name,
            arguments=str(event.get("arguments") or "{}"),
            response_id=event.get("response_id")
            if isinstance(event.get("response_id"), str)
            else None,
        )
        if isinstance(event.get("item_id"), str):
            self._hidden_items.add(event["item_id"])
        call.task = asyncio.get_running_loop().create_task(
            self._run(tool, call.arguments), name=f"tool-{tool.name}"
        )
        self._calls[call.call_id] = call
        log.info("tool.started", tool=tool.name, tool_call_id=call.call_id)
        return None

    def _response_done(self, event: Event) -> Event:
        response = event.get("response")
        response_id = response.get("id") if isinstance(response, dict) else None
        self._active_response = None
        pending = [
            c for c in self._calls.values() if c.response_id == response_id and not c.answered
        ]
        if pending and isinstance(response, dict):
            if calls_browser_tools(response.get("output"), frozenset(self._registry.names())):
                self._browser_turn.expect()
        if pending:
            task = asyncio.get_running_loop().create_task(self._answer(pending))
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)
        elif self._want_response:
            self._request_response()
        if isinstance(response, dict) and isinstance(response.get("output"), list):
            names = set(self._registry.names())
            output = [
                o
                for o in response["output"]
                if not (
                    isinstance(o, dict)
                    and o.get("type") == "function_call"
                    and o.get("name") in names
                )
            ]
            if len(output) != len(response["output"]):
                return {**event, "response": {**response, "output": output}}
        return event

    def _error(self, event: Event) -> Event | None:
        error = event.get("error")
        if not isinstance(error, dict) or error.get("event_id") not in self._ours:
            return event
        if error.get("code") == "conversation_already_has_active_response":
            # Not fatal: the model is still talking; ask again once it is done.
            self._want_response = True
        else:
            log.warning("tool.upstream_error", code=error.get("code"), message=error.get("message"))
        return None

    # -- answering ----------------------------------------------------------------------------

    async def _answer(self, calls: list[ServerCall]) -> None:
        for call in calls:
            call.answered = True
        for item in await outputs(calls, self._on_result):
            self._inject({"type": "conversation.item.create", "item": item})
        if await self._browser_turn.continues():
            return  # the browser's own response.create reads these outputs too
        self._request_response()

    def _request_response(self) -> None:
        if self._active_response is not None:
            self._want_response = True
            return
        self._want_response = False
        self._inject({"type": "response.create"})

    def _inject(self, event: Event) -> None:
        event_id = new_event_id()
        self._ours.add(event_id)
        self._send({"event_id": event_id, **event})

    async def aclose(self) -> None:
        """Cancel running tools and pending answers; the call is over."""
        tasks: list[asyncio.Task[Any]] = list(self._answering)
        tasks += [c.task for c in self._calls.values() if c.task is not None and not c.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def outputs(
    calls: list[ServerCall],
    on_result: Callable[[ServerCall, ToolResult], None] | None,
    **log_fields: Any,
) -> list[dict[str, Any]]:
    """Wait for ``calls`` to finish; each is logged and reported, and its
    ``function_call_output`` item returned, in order."""
    results = await asyncio.gather(*(c.task for c in calls if c.task is not None))
    items: list[dict[str, Any]] = []
    for call, result in zip(calls, results, strict=True):
        log.info(
            "tool.completed",
            tool=call.name,
            tool_call_id=call.call_id,
            status=result.status,
            seconds=round(result.seconds, 3),
            **log_fields,
        )
        if on_result is not None:
            on_result(call, result)
        items.append(
            {"type": "function_call_output", "call_id": call.call_id, "output": result.output}
        )
    return items


def _is_server_call(item: dict[str, Any], registry: ToolRegistry) -> bool:
    name = item.get("name")
    return item.get("type") == "function_call" and isinstance(name, str) and name in registry


# Client events that name an existing item in ``item_id``.
_ITEM_ID_EVENTS: Final = frozenset(
    {"conversation.item.retrieve", "conversation.item.delete", "conversation.item.truncate"}
)

_SERVER_HANDLERS: dict[str, Callable[[ToolCoordinator, Event], Event | None]] = {
    "session.created": ToolCoordinator._session,
    "session.updated": ToolCoordinator._session,
    "response.created": ToolCoordinator._response_created,
    "response.output_item.added": ToolCoordinator._output_item,
    "response.output_item.done": ToolCoordinator._output_item,
    "conversation.item.added": ToolCoordinator._conversation_item,
    "conversation.item.done": ToolCoordinator._conversation_item,
    "conversation.item.created": ToolCoordinator._conversation_item,
    "response.function_call_arguments.delta": ToolCoordinator._arguments_delta,
    "response.function_call_arguments.done": ToolCoordinator._arguments_done,
    "response.done": ToolCoordinator._response_done,
    "error": ToolCoordinator._error,
}
