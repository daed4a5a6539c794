"""Several real gateway processes (``python -m gateway serve``) sharing one redis-server, in
front of one emulator that plays OpenAI, behind a real haproxy that spreads every request."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from gateway.emulator import Emulator, EmulatorSettings
from tests.support.servers import RedisServer, free_port, haproxy, redis_server

GATEWAY_KEY = "gk_cluster-test-4d1f0a9b8c"
OPENAI_KEY = "sk-cluster-upstream-77aa"


@dataclass
class GatewayProc:
    name: str
    port: int
    env: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    output: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    _reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "serve",
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read(), name=f"output-{self.name}")
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(20):
                while True:
                    if self.process.returncode is not None:
                        raise RuntimeError(f"{self.name} exited: {list(self.output)[-10:]}")
                    try:
                        async with http.get(self.url + "/healthz") as response:
                            if response.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                    await asyncio.sleep(0.1)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.output.append(line.decode("utf-8", "replace").rstrip())

    def kill(self) -> None:
        """SIGKILL: no drain, no hangup, no unregistering."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def stop(self) -> None:
        if self.process is None:
            return
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def problems(self) -> list[str]:
        return [line for line in self.output if "Traceback" in line or '"level": "error"' in line]


@dataclass
class Cluster:
    redis: RedisServer
    emulator: Emulator
    gateways: list[GatewayProc]
    front: str
    """The haproxy URL every request can go through."""

    def gateway(self, name: str) -> GatewayProc:
        return next(g for g in self.gateways if g.name == name)


def gateway_env(
    redis_url: str, emulator_url: str, name: str, port: int, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    env.update(
        OPENAI_API_KEY=OPENAI_KEY,
        OPENAI_BASE_URL=emulator_url,
        GATEWAY_API_KEY=GATEWAY_KEY,
        GATEWAY_REDIS_URL=redis_url,
        GATEWAY_NODE_NAME=name,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        GATEWAY_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_UPSTREAM_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_LOG_FORMAT="json",
        GATEWAY_DRAIN_TIMEOUT="2",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@asynccontextmanager
async def cluster(size: int = 3, **settings: str) -> AsyncIterator[Cluster]:
    """``size`` gateways sharing a fresh redis-server, behind haproxy, upstream an emulator."""
    async with redis_server() as redis:
        emulator = Emulator(
            EmulatorSettings(ice_addresses=("127.0.0.1",), api_key=OPENAI_KEY, record_events=True)
        )
        emulator_url = await emulator.start()
        gateways = [
            GatewayProc(
                f"gw{i}", port, gateway_env(redis.url, emulator_url, f"gw{i}", port, **settings)
            )
            for i, port in enumerate(free_port() for _ in range(size))
        ]
        try:
            await asyncio.gather(*(g.start() for g in gateways))
            async with haproxy([g.port for g in gateways]) as front_port:
                yield Cluster(redis, emulator, gateways, f"http://127.0.0.1:{front_port}")
        finally:
            await asyncio.gather(*(g.stop() for g in gateways))
            await emulator.aclose()


def auth(key: str = GATEWAY_KEY) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {key}"}
