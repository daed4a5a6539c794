"""Real servers for tests: redis-server and haproxy from Debian, on loopback, owned by a test.

Without the binary, a test that needs one skips on a developer's machine and fails under CI
(``CI=true``), where scripts/install-system installs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REDIS = shutil.which("redis-server")
HAPROXY = shutil.which("haproxy")


def need(binary: str | None, name: str) -> str:
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} missing under CI: run scripts/install-system")
        pytest.skip(f"{name} is not installed (scripts/install-system installs it)")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _wait_for_port(port: int, process: asyncio.subprocess.Process, what: str) -> None:
    async with asyncio.timeout(10):
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"{what} exited with {process.returncode}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            async with asyncio.timeout(5):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class RedisServer:
    port: int
    password: str
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = need(REDIS, "redis-server")
        self.process = await asyncio.create_subprocess_exec(
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            self.password,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await _wait_for_port(self.port, self.process, "redis-server")

    async def stop(self) -> None:
        if self.process is not None:
            await _stop(self.process)
            self.process = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(port=free_port(), password="test-" + os.urandom(6).hex())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def haproxy(backends: Sequence[int]) -> AsyncIterator[int]:
    """A round-robin HTTP front (no stickiness, every request spread) on a port it returns."""
    binary = need(HAPROXY, "haproxy")
    port = free_port()
    servers = "\n".join(
        f"    server gw{i} 127.0.0.1:{backend} check inter 500"
        for i, backend in enumerate(backends)
    )
    config = f"""
global
    maxconn 256
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    option http-server-close
frontend front
    bind 127.0.0.1:{port}
    default_backend gateways
backend gateways
    balance roundrobin
{servers}
"""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "haproxy.cfg"
        path.write_text(config)
        process = await asyncio.create_subprocess_exec(
            binary,
            "-f",
            str(path),
            "-db",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await _wait_for_port(port, process, "haproxy")
            yield port
        finally:
            await _stop(process)
