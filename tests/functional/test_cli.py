"""The entry point as a user runs it: a real process, real signals."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    env.update(extra)
    return env


class TestCli:
    async def test_serve_on_the_emulator_and_stop_cleanly(self) -> None:
        """serve without a key says it runs the emulator, answers /healthz, drains on SIGTERM."""
        port = free_port()
        proc = await run(
            "serve",
            "--port",
            str(port),
            env=clean_env(GATEWAY_ICE_ADDRESSES="127.0.0.1", GATEWAY_DRAIN_TIMEOUT="1"),
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                            assert r.status == 200
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError("gateway did not come up in 10 s")
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()
        text = err.decode()
        assert "emulator" in text and "gateway key: gk_" in text
        assert "gateway.draining" in text and "gateway.stopped" in text
        assert "Traceback" not in text

    async def test_bad_configuration_exits_2_with_a_message(self) -> None:
        """A malformed setting stops startup with a one-line explanation, no traceback."""
        proc = await run("serve", env=clean_env(GATEWAY_PORT="eighty"))
        _, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 2
        assert "GATEWAY_PORT must be a whole number" in err.decode()
        assert "Traceback" not in err.decode()

    async def test_openai_key_is_never_printed(self) -> None:
        """With a real key configured, startup output does not contain it."""
        port = free_port()
        key = "sk-test-NEVERPRINT-1234567890"
        proc = await run(
            "serve",
            "--port",
            str(port),
            env=clean_env(
                OPENAI_API_KEY=key,
                OPENAI_BASE_URL="http://127.0.0.1:9/v1",
                GATEWAY_API_KEY="gk_test_abcdefgh123",
                GATEWAY_LOG_LEVEL="debug",
            ),
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        async with http.get(f"http://127.0.0.1:{port}/healthz"):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert key not in out.decode() + err.decode()
        assert "gk_test_abcdefgh123" not in out.decode() + err.decode()
