"""``bench --emulator-churn N``: does a gateway on its built-in emulator hold its memory flat?

Emulator mode is what a newcomer runs first, and it keeps both sides of every call in one
process: the gateway's legs and the emulator's. N calls are made one after another (two at a
time), each a whole conversation: connect, a text turn answered with audio, hang up. The
gateway's resident memory is sampled as they go; after a warm-up it must stay flat.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from gateway.emulator.audio import PacedAudioTrack
from gateway.emulator.vad import Samples
from gateway.rtc.client import BrowserClient
from gateway_bench.measure import slope
from gateway_bench.process import GatewayProcess, free_port

MIB = 1024 * 1024
CONCURRENCY = 2
SAMPLE_EVERY = 25
WARM_UP_CALLS = 50
TURN_TIMEOUT = 15.0


class _Silence(PacedAudioTrack):
    def next_samples(self) -> Samples:
        return np.zeros(960, dtype=np.int16)


def churn_env(port: int, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
    env.update(
        GATEWAY_API_KEY=key,
        GATEWAY_PORT=str(port),
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_ICE_ADDRESSES="127.0.0.1",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_CALLS_PER_MINUTE_PER_IP="1000000",
        GATEWAY_CALLS_PER_MINUTE_PER_TOKEN="1000000",
        GATEWAY_DRAIN_TIMEOUT="5",
        PYTHONUNBUFFERED="1",
    )
    return env


async def _one_call(http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
    auth = {"Authorization": f"Bearer {gateway.key}"}
    async with http.post(
        f"{gateway.base_url}/realtime/client_secrets", json={}, headers=auth
    ) as response:
        token = (await response.json())["value"]
    client = BrowserClient(_Silence())
    try:
        sdp = await client.create_offer()
        assert client.channel is not None
        done = asyncio.Event()
        opened = asyncio.Event()
        client.channel.on("open", opened.set)

        def on_message(message: Any) -> None:
            if json.loads(message).get("type") == "response.done":
                done.set()

        client.channel.on("message", on_message)
        result = await client.post_offer(
            http, f"{gateway.base_url}/realtime/calls", sdp, token=token
        )
        if result.status != 201:
            raise RuntimeError(f"call refused: HTTP {result.status}: {result.body[:200]}")
        await client.accept_answer(result.body)
        async with asyncio.timeout(TURN_TIMEOUT):
            await opened.wait()
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello there"}],
            }
            client.channel.send(json.dumps({"type": "conversation.item.create", "item": item}))
            client.channel.send(json.dumps({"type": "response.create"}))
            await done.wait()
        async with http.post(
            f"{gateway.base_url}/realtime/calls/{result.call_id}/hangup", headers=auth
        ):
            pass
    finally:
        client.microphone.stop()
        await client.close()


async def run(calls: int, progress: Any, source: Path | None = None) -> dict[str, Any]:
    port, key = free_port(), "gk_bench-" + os.urandom(8).hex()
    gateway = await GatewayProcess.start(churn_env(port, key), None, source)
    samples: list[tuple[int, float]] = []
    failures: list[str] = []
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            await gateway.wait_ready(http)
            samples.append((0, gateway.probe.rss() / MIB))
            done = 0
            next_index = 0
            lock = asyncio.Lock()

            async def worker() -> None:
                nonlocal done, next_index
                while True:
                    async with lock:
                        if next_index >= calls:
                            return
                        next_index += 1
                    try:
                        await _one_call(http, gateway)
                    except Exception as exc:  # a failed call is reported, not fatal
                        failures.append(f"{type(exc).__name__}: {exc}"[:200])
                    done += 1
                    if done % SAMPLE_EVERY == 0:
                        samples.append((done, gateway.probe.rss() / MIB))
                        progress(f"{done}/{calls} calls, RSS {samples[-1][1]:.1f} MiB")

            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
            await asyncio.sleep(1.0)
            live = await gateway.live_calls(http)
    finally:
        await gateway.stop()
    after = [(n, rss) for n, rss in samples if n >= WARM_UP_CALLS]
    trend = slope([float(n) for n, _ in after], [rss for _, rss in after])
    per_100 = (trend or 0.0) * 100
    return {
        "calls": calls,
        "failures": failures,
        "seconds": round(time.monotonic() - started, 1),
        "rss_mib": [(n, round(rss, 2)) for n, rss in samples],
        "growth_mib_per_100_calls_after_warm_up": round(per_100, 3),
        "live_calls_after": live,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"emulator churn: {result['calls']} calls in {result['seconds']} s, "
        f"{len(result['failures'])} failed, {result['live_calls_after']} live after",
        "calls  RSS MiB",
    ]
    lines += [f"{n:5d}  {rss:7.2f}" for n, rss in result["rss_mib"]]
    lines.append(
        f"growth after {WARM_UP_CALLS} calls: "
        f"{result['growth_mib_per_100_calls_after_warm_up']:+.3f} MiB per 100 calls"
    )
    lines += [f"failure: {f}" for f in result["failures"][:5]]
    return "\n".join(lines)
