"""A real Prometheus (Debian's package) scrapes a live gateway after a call."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from tests.functional.conftest import mint
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]

PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and os.environ.get("CI") != "true",
    reason="prometheus is not installed (scripts/install-system installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def query(http: aiohttp.ClientSession, base: str, expr: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/api/v1/query", params={"query": expr}) as response:
        body = await response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


async def test_prometheus_sees_the_call(
    gateway: Client, peers: list[TestPeer], tmp_path: Path
) -> None:
    """After one call, sessions_total and events_total hold the right values in Prometheus."""
    assert PROMETHEUS is not None, "prometheus missing under CI: run scripts/install-system"
    peer = TestPeer()
    peers.append(peer)
    token = await mint(gateway)
    result = await peer.connect(gateway.session, str(gateway.make_url("/v1/realtime/calls")), token)
    await peer.wait_open()
    await peer.next_event("session.created")
    call_id = result.headers["Location"].rsplit("/", 1)[1]
    await gateway.post(
        f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
    )

    port = free_port()
    target = f"127.0.0.1:{gateway.server.port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: gateway\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    proc = await asyncio.create_subprocess_exec(
        PROMETHEUS,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            sessions: list[dict[str, Any]] = []
            for _ in range(150):  # the first scrape lands a few seconds after start
                try:
                    sessions = await query(
                        http, base, 'realtime_gateway_sessions_total{outcome="completed"}'
                    )
                except aiohttp.ClientConnectionError:
                    sessions = []
                if sessions:
                    break
                await asyncio.sleep(0.2)
            assert sessions, "Prometheus never scraped the gateway"
            assert float(sessions[0]["value"][1]) == 1.0
            created = await query(
                http,
                base,
                'realtime_gateway_events_total{direction="server",type="session.created"}',
            )
            assert float(created[0]["value"][1]) == 1.0
            up = await query(http, base, 'up{job="gateway"}')
            assert float(up[0]["value"][1]) == 1.0
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
