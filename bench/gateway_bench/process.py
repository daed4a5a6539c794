"""The gateway under test: ``python -m gateway serve`` as a child process, and its teardown.

The child gets a session of its own (a terminal's Ctrl-C reaches only the benchmark, which
then stops the gateway in order) and dies with the benchmark whatever happens to it (see
``_exec.py``). :meth:`GatewayProcess.stop` asks politely (SIGINT: the gateway ends its calls
and hangs them up upstream) and kills after a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

from gateway_bench.measure import ProcessProbe

START_TIMEOUT = 20.0
EXEC_WRAPPER = Path(__file__).with_name("_exec.py")
STOP_TIMEOUT = 15.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_env(
    base: Mapping[str, str],
    *,
    media: str,
    port: int,
    upstream_base_url: str,
    upstream_key: str,
    gateway_key: str,
    max_calls: int,
) -> dict[str, str]:
    """The child's environment: the caller's, minus any gateway/OpenAI setting, plus ours."""
    env = {k: v for k, v in base.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    env.update(
        OPENAI_API_KEY=upstream_key,
        OPENAI_BASE_URL=upstream_base_url,
        GATEWAY_API_KEY=gateway_key,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_PORT=str(port),
        GATEWAY_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_UPSTREAM_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_MEDIA=media,
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_MAX_CALLS=str(max_calls),
        GATEWAY_DEMO="false",
        # Every benchmark call comes from 127.0.0.1: a per-address call rate limit meant for
        # the internet would refuse the load itself.
        GATEWAY_CALLS_PER_MINUTE_PER_IP="1000000",
        # Calls are hung up before the gateway is stopped; if some are not (an interrupted
        # run), the gateway's drain must end well within STOP_TIMEOUT.
        GATEWAY_DRAIN_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
    )
    return env


class GatewayProcess:
    def __init__(
        self, proc: asyncio.subprocess.Process, port: int, key: str, *, tree: bool = False
    ) -> None:
        self.proc = proc
        self.port = port
        self.key = key
        self.probe = ProcessProbe(proc.pid, tree=tree)
        self.output: deque[str] = deque(maxlen=200)
        # Called with every line of the gateway's output as it is read (e.g. to follow its log).
        self.on_line: Callable[[str], None] | None = None
        self._reader = asyncio.get_running_loop().create_task(
            self._read_output(), name="bench-gateway-output"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    async def start(
        cls,
        env: Mapping[str, str],
        cpus: set[int] | None,
        source: Path | None = None,
        *,
        workers: int = 1,
    ) -> GatewayProcess:
        """Start ``python -m gateway serve``; with ``source``, that tree's gateway (its cwd);
        with ``workers`` > 1, ``serve --workers`` (measured as the whole process tree)."""
        pin = ",".join(str(c) for c in sorted(cpus)) if cpus else "-"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            # By path, not as a module: it must work whichever tree the gateway runs from.
            str(EXEC_WRAPPER),
            pin,
            "--",
            sys.executable,
            "-m",
            "gateway",
            "serve",
            *(("--workers", str(workers)) if workers > 1 else ()),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            cwd=source,
        )
        return cls(proc, int(env["GATEWAY_PORT"]), env["GATEWAY_API_KEY"], tree=workers > 1)

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        """Poll ``/healthz`` until it answers; raise with the gateway's output if it exits."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(START_TIMEOUT):
                while self.proc.returncode is None:
                    if await self._healthy(http):
                        return
                    await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # let the reader catch the last lines
        tail = "\n".join(list(self.output)[-20:])
        raise RuntimeError(
            f"the gateway did not become healthy within {START_TIMEOUT:g} s "
            f"(exit code {self.proc.returncode}); its output:\n{tail}"
        )

    async def _healthy(self, http: aiohttp.ClientSession) -> bool:
        try:
            async with asyncio.timeout(2.0):
                async with http.get(f"{self.root_url}/healthz") as response:
                    return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def live_calls(self, http: aiohttp.ClientSession) -> int | None:
        """Calls the gateway itself counts as live (``/readyz``), if it says."""
        try:
            async with asyncio.timeout(3.0):
                async with http.get(f"{self.root_url}/readyz") as response:
                    body = json.loads(await response.text())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        calls = body.get("calls") if isinstance(body, dict) else None
        return calls if isinstance(calls, int) else None

    async def stop(self) -> int | None:
        """SIGINT, then SIGKILL after :data:`STOP_TIMEOUT`; returns the exit code."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        try:
            async with asyncio.timeout(2.0):
                await self._reader
        except (TimeoutError, asyncio.CancelledError):
            self._reader.cancel()
        return self.proc.returncode

    def kill_now(self) -> None:
        """Last resort from a synchronous ``finally``: the process group, without waiting."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def problems(self) -> list[str]:
        """Lines of the gateway's output that report errors or tracebacks."""
        keys = ("Traceback", "error", "ERROR", "exception", "crashed")
        return [line for line in self.output if any(k in line for k in keys)]

    async def _read_output(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode("utf-8", "replace").rstrip()
            self.output.append(text)
            if self.on_line is not None:
                self.on_line(text)
