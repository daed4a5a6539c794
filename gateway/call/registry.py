"""The live calls of one gateway process, and the owner of every call's task.

Each call is also entered in the gateway's :class:`~gateway.stores.base.CallDirectory` while it
runs, so every process can find it (and its owner). A directory that cannot be reached never
touches a live call: the failure is logged, and the call goes on.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

import structlog

from gateway.call.call import Call
from gateway.call.outcomes import EndReason
from gateway.errors import NotFound
from gateway.stores.base import CallDirectory, CallEntry
from gateway.stores.memory import MemoryCallDirectory

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Node:
    """This process, as other processes know it."""

    name: str = "local"
    address: str = ""


class CallRegistry:
    def __init__(self, directory: CallDirectory | None = None, node: Node | None = None) -> None:
        self._directory: CallDirectory = directory or MemoryCallDirectory()
        self.node = node or Node()
        self._calls: dict[str, Call] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[Call]:
        return iter(list(self._calls.values()))

    def find(self, call_id: str) -> Call | None:
        """The live call ``call_id`` if this process runs it."""
        return self._calls.get(call_id)

    def get(self, call_id: str) -> Call:
        call = self._calls.get(call_id)
        if call is None:
            raise NotFound(f"No live call with id '{call_id}'.", param="call_id")
        return call

    def start(self, call: Call) -> None:
        """Register ``call`` and run it; the registry owns the task until the call ends."""
        self._calls[call.call_id] = call
        task = asyncio.get_running_loop().create_task(self._run(call), name=f"call-{call.call_id}")
        self._tasks[call.call_id] = task
        task.add_done_callback(functools.partial(self._finished, call.call_id))

    def entry(self, call: Call) -> CallEntry:
        digest = call.request.token_digest
        return CallEntry(
            call_id=call.call_id,
            owner=self.node.name,
            address=self.node.address,
            dialect=call.dialect,
            started_at=time.time() - (time.monotonic() - call.created_at),
            token_digest=digest.hex() if digest is not None else None,
            upstream_call_id=call.upstream_call_id,
            app=call.request.app,
        )

    async def _run(self, call: Call) -> None:
        await self._listed(self._directory.register(self.entry(call)), call.call_id)
        try:
            await call.run()
        finally:
            await self._listed(self._directory.unregister(call.call_id), call.call_id)

    async def _listed(self, change: Awaitable[None], call_id: str) -> None:
        try:
            await change
        except Exception as exc:
            log.warning("calls.directory_failed", call_id=call_id, error=type(exc).__name__)

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
