"""The live calls of one gateway process, and the owner of every call's task."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator

import structlog

from gateway.call.call import Call
from gateway.call.outcomes import EndReason
from gateway.errors import NotFound

log = structlog.get_logger(__name__)


class CallRegistry:
    def __init__(self) -> None:
        self._calls: dict[str, Call] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls.values()))

    def get(self, call_id: str) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"No live call with id '{call_id}'.", param="call_id")
        return call

    def start(self, call: Call) -> None:
        """Register ``call`` and run it; the registry owns the task until the call ends."""
        self._calls[call.call_id] = call
        task = asyncio.get_running_loop().create_task(call.run(), name=f"call-{call.call_id}")
        self._tasks[call.call_id] = task
        task.add_done_callback(functools.partial(self._finished, call.call_id))

    def _finished(self, call_id: str, task: asyncio.Task[None]) -> None:
        self._calls.pop(call_id, None)
        self._tasks.pop(call_id, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("call.crashed", call_id=call_id, exc_info=task.exception())

    async def close_all(self, reason: EndReason = EndReason.SHUTDOWN, grace: float = 10.0) -> None:
        """End every call cleanly; cancel what has not finished after ``grace`` seconds."""
        tasks = list(self._tasks.values())
        for call in list(self._calls.values()):
            call.stop(reason)
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=grace)
