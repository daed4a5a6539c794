"""``realtime-gateway bench`` end to end: real processes, real peers, sane numbers, clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}


async def bench(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "bench",
        *args,
        env=clean_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.timeout(90)
async def test_two_calls_for_three_seconds() -> None:
    """Passthrough beside direct calls: every call measured, payloads forwarded intact, no loss,
    small latencies, a gateway that did work and stopped cleanly with no call left."""
    proc = await bench("--calls", "2", "--seconds", "3", "--media", "passthrough", "--json")
    out, err = await asyncio.wait_for(proc.communicate(), 80)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert set(report["phases"]) == {"passthrough"}
    phase = report["phases"]["passthrough"]
    for name, group in (("gateway", phase), ("direct", phase["direct"])):
        assert group["calls"]["measured"] == 2, (name, group["calls"])
        for direction in ("up", "down"):
            audio = group["audio"][direction]
            assert audio["method"] == "payload" and audio["identical_payload_pct"] == 100
            assert audio["sent"] >= 2 * 3 * 50 * 0.9
            assert audio["loss_pct"] < 1.0, (name, direction, audio)
            assert 0 < audio["latency_ms"]["p50"] < 50, (name, direction, audio)
            events = group["events"][direction]
            assert events["sent"] > 0 and events["received"] == events["sent"], events
    gateway = phase["gateway"]
    assert gateway["cpu_pct"] > 0 and gateway["rss_mib"]["loaded"] > 10
    assert gateway["exit_code"] == 0 and gateway["live_calls"]["after"] in (0, None)
    assert report["targets"] and "Traceback" not in err.decode()


@pytest.mark.timeout(120)
async def test_recording_off_and_on_in_one_run() -> None:
    """``--recording``: passthrough twice, the second recording every call; the report has
    what recording added during the calls and what each stereo file cost after them."""
    proc = await bench("--recording", "--calls", "2", "--seconds", "3", "--json")
    out, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert set(report["phases"]) == {"passthrough", "passthrough, recording"}
    made = report["phases"]["passthrough, recording"]["recordings"]
    assert made["written"] == 3 and made["failed"] == 0  # the two calls and the warm-up
    assert made["seconds"] > 2 * 3 and made["cpu_s"] > 0 and made["dropped_packets"] == 0
    assert 0 < made["cpu_s_per_call_minute"] < 1
    assert isinstance(report["comparison"]["recording_cpu_added_pct"], float)
    names = {t["name"] for t in report["targets"]}
    assert {"recording: CPU added per call", "recording: stereo file after the call"} <= names
    assert "recordings" not in report["phases"]["passthrough"]


@pytest.mark.timeout(60)
async def test_ctrl_c_stops_the_gateway() -> None:
    """SIGINT mid-run: calls hung up, the gateway child stopped and reaped, exit status 130."""
    proc = await bench("--soak", "--calls", "1", "--seconds", "60", "--churn", "0")
    assert proc.stderr is not None
    pid = None
    lines: list[str] = []
    async with asyncio.timeout(40):
        while not any("soak: 60 s" in line for line in lines):
            line = (await proc.stderr.readline()).decode()
            assert line, "".join(lines)
            lines.append(line)
            if match := re.search(r"gateway ready \(pid (\d+)\)", line):
                pid = int(match.group(1))
    assert pid is not None and Path(f"/proc/{pid}").exists()
    proc.send_signal(signal.SIGINT)
    _, rest = await asyncio.wait_for(proc.communicate(), 40)
    assert proc.returncode == 130, "".join(lines) + rest.decode()
    assert not Path(f"/proc/{pid}").exists(), "the gateway outlived the benchmark"
