"""This process as one of several: its identity, its heartbeat, and the path to its siblings.

With shared stores (``GATEWAY_REDIS_URL``), every few seconds each process checks the store,
announces itself and refreshes the directory entries of its live calls; a process that dies
stops refreshing and its entries expire. A process alone (memory stores) does none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web

from gateway.call.registry import Node
from gateway.config import Settings
from gateway.server.forward import Forwarder, cluster_key
from gateway.server.state import STATE, GatewayState
from gateway.stores.base import NodeEntry
from gateway.stores.redis import REFRESH_INTERVAL

log = structlog.get_logger(__name__)


def node_of(settings: Settings) -> Node:
    """This process's name and the address the others reach it at."""
    name = settings.node_name or f"{socket.gethostname()}-{os.getpid()}"
    if settings.node_address:
        return Node(name=name, address=settings.node_address)
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = primary_address()
    if ":" in host:
        host = f"[{host}]"
    port = settings.internal_port or settings.port
    return Node(name=name, address=f"http://{host}:{port}")


def primary_address() -> str:
    """The address this host uses to reach others (no packet is sent to find it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routed, never reached
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def cluster_secret(settings: Settings) -> str:
    """What signs requests between processes: GATEWAY_CLUSTER_SECRET, or derived from the
    gateway key every process of one gateway shares."""
    for secret in (settings.cluster_secret, settings.gateway_api_key):
        if secret is not None:
            return secret.reveal()
    # No key at all: only one process can be this gateway; nothing will verify.
    return os.urandom(32).hex()


async def cluster(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the forwarding client, and the heartbeat when stores are shared."""
    state = app[STATE]
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        state.forwarder = Forwarder(
            http, state.calls.node, cluster_key(cluster_secret(state.settings))
        )
        heartbeat = (
            asyncio.create_task(_heartbeat(state), name="cluster-heartbeat")
            if state.stores.shared
            else None
        )
        try:
            yield
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
                with contextlib.suppress(Exception):
                    await state.stores.nodes.withdraw(state.calls.node.name)
            state.forwarder = None


async def _heartbeat(state: GatewayState) -> None:
    node = state.calls.node
    started = time.time()
    while True:
        if await state.stores.health.check():
            entry = NodeEntry(
                name=node.name,
                address=node.address,
                group=state.settings.worker_group,
                started_at=started,
                room=state.has_room(),
            )
            try:
                await state.stores.nodes.announce(entry)
                if state.settings.worker_group:
                    state.group_has_room = any(
                        n.room
                        for n in await state.stores.nodes.nodes()
                        if n.group == state.settings.worker_group and n.name != node.name
                    )
                await state.stores.calls.refresh([state.calls.entry(c) for c in state.calls])
            except Exception as exc:
                log.warning("cluster.heartbeat_failed", error=type(exc).__name__)
        await asyncio.sleep(REFRESH_INTERVAL)
