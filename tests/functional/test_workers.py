"""``serve --workers``: several processes on one port act as one gateway, and one scrape adds
them up. A real supervisor, real workers, a real redis-server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cluster import GATEWAY_KEY, auth
from tests.support.peer import TestPeer
from tests.support.servers import free_port, redis_server


def children(pid: int) -> set[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(p) for p in path.read_text().split()} if path.exists() else set()


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    base.update(
        GATEWAY_API_KEY=GATEWAY_KEY,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_DRAIN_TIMEOUT="2",
        PYTHONUNBUFFERED="1",
    )
    base.update(extra)
    return base


async def serve(*args: str, environ: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        *args,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


class TestWorkers:
    async def test_two_workers_share_the_port_the_calls_and_one_scrape(self) -> None:
        """Calls made through the shared port land on both workers and are all listed; the
        scrape sums both; a killed worker is restarted; SIGTERM drains them all."""
        async with redis_server() as redis:
            port = free_port()
            proc = await serve(
                "--workers",
                "2",
                "--port",
                str(port),
                environ=env(GATEWAY_REDIS_URL=redis.url, GATEWAY_ICE_PORT_RANGE="42100-42199"),
            )
            base = f"http://127.0.0.1:{port}"
            peers: list[TestPeer] = []
            try:
                connector = aiohttp.TCPConnector(
                    force_close=True
                )  # every request: a new connection
                async with aiohttp.ClientSession(connector=connector) as http:
                    await _healthy(http, base)
                    async with asyncio.timeout(20):
                        while len(children(proc.pid)) < 2:
                            await asyncio.sleep(0.1)
                    # The kernel spreads connections over the workers by a hash: six calls
                    # all land on one about 3 % of the time. Calls go on (up to 16) until both
                    # workers have some, and the count is checked against what was made.
                    owners: set[str] = set()
                    while len(peers) < 6 or (len(owners) < 2 and len(peers) < 16):
                        async with http.post(
                            f"{base}/v1/realtime/client_secrets", json={}, headers=auth()
                        ) as r:
                            token = (await r.json())["value"]
                        peer = TestPeer()
                        peers.append(peer)
                        result = await peer.connect(http, f"{base}/v1/realtime/calls", token)
                        assert result.status == 201, result.body
                        ports = {int(p) for p in re.findall(r" (\d+) typ host", result.body)}
                        assert all(42100 <= p <= 42199 for p in ports), ports
                        await peer.wait_open()
                        async with http.get(f"{base}/v1/realtime/calls", headers=auth()) as r:
                            listed = (await r.json())["data"]
                        owners = {c["owner"] for c in listed}
                    assert len(listed) == len(peers)
                    assert len(owners) == 2, owners  # both workers took calls
                    for peer in peers:
                        async with http.post(
                            f"{base}/v1/realtime/calls/{peer.call_id}/hangup", headers=auth()
                        ) as r:
                            assert r.status == 200
                    async with http.get(f"{base}/metrics") as r:
                        text = await r.text()
                    completed = samples(text, "realtime_gateway_sessions_total")
                    assert completed[(("outcome", "completed"),)] == len(peers)
                    assert samples(text, "realtime_gateway_scrape_processes")[()] == 2
                    assert samples(text, "realtime_gateway_capacity_calls")[()] == 200
                    # A worker that dies is restarted.
                    victim = next(iter(children(proc.pid)))
                    os.kill(victim, signal.SIGKILL)
                    async with asyncio.timeout(20):
                        while victim in children(proc.pid) or len(children(proc.pid)) < 2:
                            await asyncio.sleep(0.1)
                    await _healthy(http, base)
            finally:
                for peer in peers:
                    await peer.close()
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0, err.decode()[-2000:]
            assert "restarting it" in err.decode()
            assert "Traceback" not in err.decode()

    async def test_more_than_one_worker_without_redis_is_refused(self) -> None:
        """--workers 2 without GATEWAY_REDIS_URL: one line naming the setting, exit code 2."""
        proc = await serve("--workers", "2", environ=env())
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 2
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1 and "GATEWAY_REDIS_URL" in lines[0]


async def _healthy(http: aiohttp.ClientSession, base: str) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                async with http.get(f"{base}/healthz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)


@pytest.fixture(autouse=True)
def _linux_only() -> Any:
    if not Path("/proc/self/task").exists():
        pytest.skip("reads worker pids from /proc")
