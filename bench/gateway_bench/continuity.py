"""``bench --continuity``: the pause a browser hears when its call changes upstream session.

With continuity on, the gateway puts a new upstream session under a call whose session expired,
failed or vanished (reactive), or dials one ahead of a known expiry and cuts over at a quiet
moment (proactive). The browser keeps its peer; what it may notice is a pause in the audio.

Three phases, each with a gateway of its own (a child process, as in the other modes) whose
upstream is the built-in emulator, run *in this process* with short sessions
(:data:`SESSION_SECONDS`), so that this process can also end its calls abruptly:

* ``reactive, expiry``: ``GATEWAY_CONTINUITY_LEAD=0``; each session ends with
  ``session_expired`` and the gateway replaces it then;
* ``proactive``: ``GATEWAY_CONTINUITY_LEAD`` = :data:`LEAD_SECONDS`; replaced before it expires;
* ``reactive, killed leg``: lead 0, and every upstream leg is ended abruptly
  (``EmulatorCall.end("connection_lost")``) 2-3 s into its life, before it could expire.

Each browser is an aiortc peer on loopback that sends silence (so every moment is a quiet one)
and logs the arrival time, sequence number and timestamp of every RTP packet it receives, in
place of its jitter buffer. The emulator sends audio continuously (silence between answers), so
the arrivals are a steady 20 ms beat, and a swap shows as the largest interval between two
arrivals from 1 s before the swap began to 1 s after it ended (the interval straddling either
edge included). When the swap began, when it ended and for which call come from the gateway's
own ``continuity.swapped`` log lines (read as they are written; ``seconds`` is its own measure
of the swap), cross-checked against its ``realtime_gateway_upstream_swap*`` metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import re
import secrets
import sys
import time
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from gateway.rtc import compat
from gateway.rtc.client import BrowserClient
from gateway_bench.audio import SAMPLE_RATE, silence_packet
from gateway_bench.measure import LagProbe, load_average, machine_info
from gateway_bench.process import GatewayProcess, free_port, gateway_env
from gateway_bench.report import spread
from gateway_bench.stream import PacedPacketTrack
from gateway_bench.upstream import LOOPBACK

SESSION_SECONDS = 5.0  # the emulator's max_call_seconds: every session expires after this
LEAD_SECONDS = 2.0  # the proactive phase's GATEWAY_CONTINUITY_LEAD
KILL_AFTER = (2.0, 3.0)  # the killed-leg phase ends each leg this long (uniform) into its life
AROUND = 1.0  # a swap's gap is looked for from this long before it began to this long after
MOMENT = 0.05  # a swap is "under way" (for the other calls) from this before it began to after
TAIL = 1.5  # after the window: the last swaps' "after" lands before anything is looked at
MAX_RAMP = 1.0  # seconds between two call starts, at most: spreads the expiries
CONNECT_TIMEOUT = 20.0
FLOW_TIMEOUT = 15.0
HANGUP_TIMEOUT = 20.0
DRAIN_TIMEOUT = 10.0
KILL_POLL = 0.05
LAG_WARN_MS = 20.0
_SWAP_METRIC = re.compile(
    r"^realtime_gateway_upstream_swaps_total\{(?P<labels>[^}]*)\} (?P<v>\S+)$"
)
_LABEL = re.compile(r'(\w+)="([^"]*)"')

Progress = Callable[[str], None]


@dataclass(frozen=True)
class PhaseSpec:
    name: str
    lead: float  # GATEWAY_CONTINUITY_LEAD
    kill: bool  # end every upstream leg abruptly, before it expires
    reasons: tuple[str, ...]  # the swap reasons this phase is about


PHASES = (
    PhaseSpec("reactive, expiry", 0.0, False, ("expired",)),
    PhaseSpec("proactive", LEAD_SECONDS, False, ("renewed",)),
    PhaseSpec("reactive, killed leg", 0.0, True, ("failed", "vanished")),
)


@dataclass(frozen=True)
class ContinuityConfig:
    calls: int = 5
    seconds: float = 20.0
    session_seconds: float = SESSION_SECONDS
    source: Path | None = None  # --gateway-source


# -- the browser side --------------------------------------------------------------------------


class SilenceTrack(PacedPacketTrack):
    """A microphone sending one pre-encoded Opus packet of silence every 20 ms (no encoding)."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self._payload = payload

    def payload(self, index: int) -> bytes:
        return self._payload


class ArrivalTap:
    """Stands in for an aiortc receiver's jitter buffer: logs each RTP packet, decodes none."""

    capacity = 16  # mirrors aiortc's JitterBuffer

    def __init__(self) -> None:
        self.at = array("d")
        self.seq = array("l")
        self.timestamp = array("q")

    def add(self, packet: Any) -> tuple[bool, None]:
        self.at.append(time.monotonic())
        self.seq.append(int(packet.sequence_number))
        self.timestamp.append(int(packet.timestamp))
        return False, None


class DialError(Exception):
    """A browser's call could not be set up."""


class Browser:
    """One browser-side call through the gateway: silence up, every packet down logged."""

    def __init__(self, index: int, payload: bytes) -> None:
        self.index = index
        self.call_id: str | None = None
        self.tap = ArrivalTap()
        self.states: list[tuple[float, str]] = []
        self.session_created = 0
        self.errors: list[str] = []
        self.channel_open = False
        self._track = SilenceTrack(payload)
        self._client = BrowserClient(self._track, ice_addresses=LOOPBACK, codec="opus")
        self._closed = False

    @property
    def flowing(self) -> bool:
        return self.channel_open and len(self.tap.at) > 0

    @property
    def state(self) -> str:
        pc = self._client.pc
        return "new" if pc is None else str(pc.connectionState)

    def connected_throughout(self) -> bool:
        """Connected now, and never anything else since it first was."""
        seen = [s for _, s in self.states]
        if "connected" not in seen or self.state != "connected":
            return False
        return all(s == "connected" for s in seen[seen.index("connected") :])

    async def connect(self, http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
        headers = {"Authorization": f"Bearer {gateway.key}"}
        try:
            async with http.post(
                f"{gateway.base_url}/realtime/client_secrets", json={}, headers=headers
            ) as response:
                if response.status != 200:
                    raise DialError(f"client secret: HTTP {response.status}")
                token = (await response.json())["value"]
        except aiohttp.ClientError as exc:
            raise DialError(f"client secret: {type(exc).__name__}: {exc}") from None
        client = self._client
        sdp = await client.create_offer()
        pc, channel, transceiver = client.pc, client.channel, client.transceiver
        assert pc is not None and channel is not None and transceiver is not None
        pc.on("connectionstatechange", lambda: self.states.append((time.monotonic(), self.state)))
        channel.on("open", self._on_open)
        channel.on("message", self._on_message)
        compat.check()
        compat.replace_jitter_buffer(transceiver.receiver, self.tap)
        try:
            result = await client.post_offer(
                http, f"{gateway.base_url}/realtime/calls", sdp, token=token
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DialError(f"offer: {type(exc).__name__}: {exc}") from None
        if result.status != 201:
            raise DialError(f"offer: HTTP {result.status}: {result.body[:200]}")
        self.call_id = result.call_id
        await client.accept_answer(result.body)

    def _on_open(self) -> None:
        self.channel_open = True

    def _on_message(self, message: str | bytes) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "session.created":
            self.session_created += 1
        elif kind == "error":
            error = event.get("error") or {}
            self.errors.append(f"{error.get('code')}: {str(error.get('message'))[:120]}")

    async def hangup(self, http: aiohttp.ClientSession, gateway: GatewayProcess) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self.call_id is not None:
                url = f"{gateway.base_url}/realtime/calls/{self.call_id}/hangup"
                headers = {"Authorization": f"Bearer {gateway.key}"}
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with asyncio.timeout(10.0):
                        async with http.post(url, headers=headers):
                            pass
        finally:
            await self.close()

    async def close(self) -> None:
        self._closed = True
        self._track.stop()
        await self._client.close()


# -- the gateway's side: its log and its metrics ------------------------------------------------


@dataclass(frozen=True)
class Swap:
    call_id: str
    reason: str
    seconds: float  # the gateway's own: from deciding to replace to the new session relaying
    at: float  # when its log line reached us (monotonic): the cut-over, give or take a pipe

    @property
    def began(self) -> float:
        return self.at - self.seconds


@dataclass
class GatewayLog:
    """Follows the gateway's JSON log as it is written (``GatewayProcess.on_line``)."""

    swaps: list[Swap] = field(default_factory=list)
    failed: list[tuple[float, str, str]] = field(default_factory=list)  # (at, call, reason)
    dial_failed: int = 0
    held_overflow: int = 0
    problems: list[str] = field(default_factory=list)

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        record: Any = None
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                record = json.loads(line)
        if not isinstance(record, dict):
            if any(k in line for k in ("Traceback", "ERROR", "CRITICAL")):
                self._problem(line)
            return
        event, level = record.get("event"), record.get("level")
        if event == "continuity.swapped":
            self.swaps.append(
                Swap(
                    str(record.get("call_id")),
                    str(record.get("reason")),
                    float(record.get("seconds") or 0.0),
                    now,
                )
            )
        elif event == "continuity.failed":
            self.failed.append((now, str(record.get("call_id")), str(record.get("reason"))))
        elif event == "continuity.dial_failed":
            self.dial_failed += 1
        elif event == "continuity.held_overflow":
            self.held_overflow += 1
        if level in ("warning", "error", "critical"):
            self._problem(line)

    def _problem(self, line: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(line[:300])


def swap_metrics(text: str) -> dict[str, Any]:
    """The gateway's own count of swaps (by reason and result) and its swap-seconds total."""
    counts: dict[str, float] = {}
    total = count = 0.0
    for line in text.splitlines():
        if match := _SWAP_METRIC.match(line):
            labels = dict(_LABEL.findall(match["labels"]))
            key = f"{labels.get('reason')}/{labels.get('result')}"
            counts[key] = counts.get(key, 0.0) + float(match["v"])
        elif line.startswith("realtime_gateway_upstream_swap_seconds_sum "):
            total = float(line.split()[-1])
        elif line.startswith("realtime_gateway_upstream_swap_seconds_count "):
            count = float(line.split()[-1])
    return {
        "swaps": {k: int(v) for k, v in sorted(counts.items())},
        "ok": int(sum(v for k, v in counts.items() if k.endswith("/ok"))),
        "failed": int(sum(v for k, v in counts.items() if k.endswith("/failed"))),
        "seconds_count": int(count),
        "seconds_mean_ms": round(1000.0 * total / count, 1) if count else None,
    }


# -- the figures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gap:
    """The largest pause in one browser's audio around one swap."""

    seconds: float
    resumed: bool  # audio arrived after the swap
    seq_step: int | None  # RTP sequence number step across the pause (1: nothing lost)
    rtp_seconds: float | None  # RTP timestamp advance across the pause


def gap_around(tap: ArrivalTap, start: float, end: float, cut: float, horizon: float) -> Gap:
    """The largest interval between two arrivals with one of them in ``[start, end]`` (so an
    interval straddling either edge counts whole); if nothing arrived after ``cut``, the pause
    is open and runs to ``horizon``."""
    at = tap.at
    n = len(at)
    lo = max(bisect_left(at, start) - 1, 0)
    hi = min(bisect_right(at, end), n - 1)  # the first arrival after ``end``, if any
    best, where = 0.0, None
    for k in range(lo, hi):
        interval = at[k + 1] - at[k]
        if interval > best:
            best, where = interval, k
    resumed = n > 0 and at[n - 1] > cut
    if not resumed:
        last = at[n - 1] if n else start
        return Gap(max(best, horizon - last), False, None, None)
    if where is None:
        return Gap(best, True, None, None)
    step = (tap.seq[where + 1] - tap.seq[where]) % 65536
    advance = (tap.timestamp[where + 1] - tap.timestamp[where]) % (1 << 32)
    return Gap(best, True, step, advance / SAMPLE_RATE)


def largest_interval(
    tap: ArrivalTap,
    window: tuple[float, float],
    avoid: Sequence[tuple[float, float]],
    within: Sequence[tuple[float, float]] | None = None,
) -> float | None:
    """The largest interval between two arrivals in ``window`` that overlaps no span of
    ``avoid`` (and, if given, overlaps one of ``within``)."""
    at = tap.at
    lo, hi = bisect_left(at, window[0]), bisect_right(at, window[1])
    best: float | None = None
    for k in range(lo, hi - 1):
        a, b = at[k], at[k + 1]
        if any(a < e and b > s for s, e in avoid):
            continue
        if within is not None and not any(a < e and b > s for s, e in within):
            continue
        if best is None or b - a > best:
            best = b - a
    return best


def _ms(values: Sequence[float]) -> dict[str, Any]:
    out = spread([v * 1000.0 for v in values])
    return {k: out[k] for k in ("count", "p50", "p95", "max")}


def summarize(
    spec: PhaseSpec,
    calls: int,
    browsers: list[Browser],
    failures: list[str],
    log: GatewayLog,
    metrics: dict[str, Any],
    window: tuple[float, float],
    horizon: float,
    killed: int,
) -> dict[str, Any]:
    by_call = {b.call_id: b for b in browsers if b.call_id is not None}
    swaps = [s for s in log.swaps if s.call_id in by_call and s.at <= window[1]]
    gaps: list[float] = []
    beyond: list[float] = []
    seq_jumps = not_resumed = 0
    skews: list[float] = []
    busy: dict[str, list[tuple[float, float]]] = {}
    for swap in swaps:
        start, end = swap.began - AROUND, swap.at + AROUND
        busy.setdefault(swap.call_id, []).append((start, end))
        gap = gap_around(by_call[swap.call_id].tap, start, end, swap.at, horizon)
        gaps.append(gap.seconds)
        beyond.append(gap.seconds - swap.seconds)
        not_resumed += not gap.resumed
        if gap.seq_step is not None and gap.seq_step != 1:
            seq_jumps += 1
        if gap.rtp_seconds is not None:
            skews.append(gap.rtp_seconds - gap.seconds)
    # The moments the gateway was busy swapping, call by call: did one call's swap make
    # another call's audio stall (collateral), and how large is a gap when none is under way?
    moments = {
        call_id: [(s.began - MOMENT, s.at + MOMENT) for s in swaps if s.call_id == call_id]
        for call_id in by_call
    }
    every_moment = [m for spans in moments.values() for m in spans]
    quiet: list[float] = []
    collateral: list[float] = []
    for b in browsers:
        own = busy.get(b.call_id or "", [])
        others = [m for c, spans in moments.items() if c != b.call_id for m in spans]
        if (g := largest_interval(b.tap, window, [*own, *every_moment])) is not None:
            quiet.append(g)
        if (g := largest_interval(b.tap, window, own, others)) is not None:
            collateral.append(g)
    lost = sum(_seq_lost(b.tap, window) for b in browsers)
    failed = [f for f in log.failed if f[1] in by_call]
    reasons = Counter(s.reason for s in swaps)
    return {
        "calls": {
            "requested": calls,
            "connected": len(browsers),
            "failed": len(failures),
            "errors": sorted(set(failures))[:5],
        },
        "swaps": {
            "done": len(swaps),
            "by_reason": dict(sorted(reasons.items())),
            "unexpected_reasons": sorted(set(reasons) - set(spec.reasons)),
            "failed": len(failed),
            "dial_attempts_failed": log.dial_failed,
            "legs_killed": killed if spec.kill else None,
        },
        "gap_ms": _ms(gaps),
        "gateway_swap_ms": _ms([s.seconds for s in swaps]),
        "gap_beyond_swap_ms": _ms(beyond),
        "gap_no_swap_under_way_ms": _ms(quiet),
        "gap_while_other_calls_swap_ms": _ms(collateral),
        "audio_resumed": {"swaps": len(swaps) - not_resumed, "of": len(swaps)},
        "rtp": {
            "seq_jumps_at_swaps": seq_jumps,
            "timestamp_minus_wall_ms": _ms(skews) if skews else None,
            "packets_lost": lost,
        },
        "browsers": {
            "connected_throughout": sum(b.connected_throughout() for b in browsers),
            "of": len(browsers),
            "states_at_end": dict(Counter(b.state for b in browsers)),
            "session_created_max": max((b.session_created for b in browsers), default=None),
            "errors": sorted({e for b in browsers for e in b.errors})[:5],
        },
        "metrics": metrics,
        "window_s": round(window[1] - window[0], 2),
    }


def _seq_lost(tap: ArrivalTap, window: tuple[float, float]) -> int:
    lo, hi = bisect_left(tap.at, window[0]), bisect_right(tap.at, window[1])
    lost = 0
    for k in range(lo, hi - 1):
        step = (tap.seq[k + 1] - tap.seq[k]) % 65536
        if 1 < step < 3000:
            lost += step - 1
    return lost


# -- a phase -------------------------------------------------------------------------------------


class LegKiller:
    """Ends every live emulator leg abruptly some seconds into its life (``KILL_AFTER``)."""

    def __init__(self, emulator: Emulator, seed: int = 7) -> None:
        self._emulator = emulator
        self._rng = random.Random(seed)
        self._seen: dict[str, tuple[float, float]] = {}  # call id: (first seen, kill age)
        self._ending: set[asyncio.Task[None]] = set()
        self.killed = 0

    async def run(self) -> None:
        try:
            while True:
                now = time.monotonic()
                for call in list(self._emulator.calls.values()):
                    if call.end_reason is not None or call.ended.is_set():
                        continue
                    first, age = self._seen.setdefault(
                        call.call_id, (now, self._rng.uniform(*KILL_AFTER))
                    )
                    if now - first >= age and age >= 0:
                        self._seen[call.call_id] = (first, -1.0)  # once
                        self._kill(call)
                await asyncio.sleep(KILL_POLL)
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10.0):
                    await asyncio.gather(*self._ending, return_exceptions=True)

    def _kill(self, call: EmulatorCall) -> None:
        self.killed += 1
        task = asyncio.get_running_loop().create_task(call.end("connection_lost"))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)


class ContinuityRunner:
    """The three phases; owns every gateway it starts (``cli`` stops them on a forced exit)."""

    def __init__(self, config: ContinuityConfig, progress: Progress) -> None:
        self.config = config
        self.gateways: list[GatewayProcess] = []
        self.interrupted = 0
        self._progress = progress
        self._payload = silence_packet()
        self.lag = LagProbe()

    def progress(self, message: str) -> None:
        self._progress(message)

    async def run(self) -> dict[str, Any]:
        with quiet_structlog():
            loadavg = load_average()
            connector = aiohttp.TCPConnector(force_close=True)
            self.lag.start()
            try:
                async with aiohttp.ClientSession(connector=connector) as http:
                    phases = {}
                    for spec in PHASES:
                        phases[spec.name] = await self.phase(http, spec)
            finally:
                await self.lag.stop()
        machine = machine_info()
        machine["loadavg_start"], machine["loadavg_end"] = list(loadavg), list(load_average())
        c = self.config
        report: dict[str, Any] = {
            "mode": "continuity",
            "config": {
                "calls": c.calls,
                "seconds": c.seconds,
                "session_seconds": c.session_seconds,
                "lead_seconds": LEAD_SECONDS,
                "kill_after_seconds": list(KILL_AFTER),
                "around_seconds": AROUND,
                "ramp": ramp_for(c),
                "gateway_source": str(c.source) if c.source else None,
            },
            "machine": machine,
            "phases": phases,
        }
        report["notes"] = notes(report)
        return report

    async def _start_gateway(
        self, http: aiohttp.ClientSession, spec: PhaseSpec, url: str, key: str
    ) -> GatewayProcess:
        settings = gateway_env(
            os.environ,
            media="passthrough",
            port=free_port(),
            upstream_base_url=url,
            upstream_key=key,
            gateway_key="gk_bench_" + secrets.token_urlsafe(16),
            max_calls=max(100, 2 * self.config.calls + 10),
        )
        settings.update(
            GATEWAY_CONTINUITY="true",
            GATEWAY_CONTINUITY_LEAD=f"{spec.lead:g}",
            GATEWAY_LOG_LEVEL="info",
            GATEWAY_LOG_FORMAT="json",
            GATEWAY_CALLS_PER_MINUTE_PER_TOKEN="1000000",
        )
        gateway = await GatewayProcess.start(settings, None, self.config.source)
        self.gateways.append(gateway)
        await gateway.wait_ready(http)
        return gateway

    async def phase(self, http: aiohttp.ClientSession, spec: PhaseSpec) -> dict[str, Any]:
        c = self.config
        key = "sk-bench-" + secrets.token_urlsafe(16)
        emulator = Emulator(
            EmulatorSettings(
                ice_addresses=LOOPBACK, api_key=key, max_call_seconds=c.session_seconds
            )
        )
        url = await emulator.start()
        browsers: list[Browser] = []
        failures: list[str] = []
        log = GatewayLog()
        killer: LegKiller | None = None
        killing: asyncio.Task[None] | None = None
        gateway: GatewayProcess | None = None
        try:
            gateway = await self._start_gateway(http, spec, url, key)
            gateway.on_line = log
            self.progress(f"{spec.name}: gateway ready (pid {gateway.proc.pid}); warm-up call")
            warm = await self._open(http, gateway, [], failures, 0)
            await self._wait_flowing([warm] if warm else [])
            if warm is None or not warm.flowing:
                said = "; ".join(log.problems[-3:]) or "; ".join(list(gateway.output)[-3:])
                raise RuntimeError(f"{spec.name}: the warm-up call failed ({said[:600]})")
            await warm.hangup(http, gateway)
            failures.clear()
            if spec.kill:
                # From before the calls open, so that every leg is seen as it is made.
                killer = LegKiller(emulator)
                killing = asyncio.create_task(killer.run())
            self.progress(f"{spec.name}: opening {c.calls} call(s), {ramp_for(c):g} s apart")
            tasks = []
            for i in range(c.calls):
                if i:
                    await asyncio.sleep(ramp_for(c))
                tasks.append(asyncio.create_task(self._open(http, gateway, browsers, failures, i)))
            await asyncio.gather(*tasks)
            await self._wait_flowing(browsers)
            for b in [b for b in browsers if not b.flowing]:
                failures.append("connected, but no audio or no open channel")
                browsers.remove(b)
                await b.hangup(http, gateway)
            self.progress(f"{spec.name}: {len(browsers)} call(s) for {c.seconds:g} s")
            start = time.monotonic()
            cpu0 = gateway.probe.cpu().total
            await asyncio.sleep(c.seconds)
            end = time.monotonic()
            cpu = gateway.probe.cpu().total - cpu0
            if killing is not None:
                killing.cancel()
                await asyncio.gather(killing, return_exceptions=True)
            await asyncio.sleep(TAIL)
            horizon = time.monotonic()
            metrics = swap_metrics(await _get_text(http, f"{gateway.root_url}/metrics"))
            # What its log said up to then, every call included: the two should agree.
            metrics["logged_ok"], metrics["logged_failed"] = len(log.swaps), len(log.failed)
            summary = summarize(
                spec,
                c.calls,
                browsers,
                failures,
                log,
                metrics,
                (start, end),
                horizon,
                killer.killed if killer else 0,
            )
        finally:
            if killing is not None and not killing.done():
                killing.cancel()
                await asyncio.gather(killing, return_exceptions=True)
            self.progress(f"{spec.name}: hanging up")
            await self._hangup_all(http, gateway, browsers)
            live: int | None = None
            code: int | None = None
            if gateway is not None:
                live = await _drained(http, gateway)
                code = await gateway.stop()
                self.gateways.remove(gateway)
            await emulator.aclose()
        summary["load_loop_lag_ms"] = _ms([ms / 1000.0 for ms in self.lag.window_ms(start, end)])
        summary["gateway"] = {
            "cpu_pct": round(100.0 * cpu / (end - start), 1),
            "live_calls_after": live,
            "exit_code": code,
            "held_overflow": log.held_overflow,
            "problems": log.problems[-10:],
        }
        return summary

    async def _open(
        self,
        http: aiohttp.ClientSession,
        gateway: GatewayProcess,
        into: list[Browser],
        failures: list[str],
        index: int,
    ) -> Browser | None:
        browser = Browser(index, self._payload)
        into.append(browser)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await browser.connect(http, gateway)
        except (DialError, TimeoutError) as exc:
            failures.append(str(exc) or f"no answer within {CONNECT_TIMEOUT:g} s")
            with contextlib.suppress(ValueError):
                into.remove(browser)
            await browser.hangup(http, gateway)
            return None
        return browser

    async def _wait_flowing(self, browsers: list[Browser]) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLOW_TIMEOUT):
                # Polled: "flowing" is facts set by aiortc callbacks, none awaitable.
                while not all(b.flowing for b in browsers):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

    async def _hangup_all(
        self, http: aiohttp.ClientSession, gateway: GatewayProcess | None, browsers: list[Browser]
    ) -> None:
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT):
                if gateway is not None:
                    await asyncio.gather(*(b.hangup(http, gateway) for b in browsers))
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANGUP_TIMEOUT):
                    await asyncio.gather(*(b.close() for b in browsers), return_exceptions=True)


def ramp_for(config: ContinuityConfig) -> float:
    """Calls start spread over one session's length (at most :data:`MAX_RAMP` apart), so that
    their sessions do not all expire at the same moment."""
    return round(min(MAX_RAMP, config.session_seconds / max(1, config.calls)), 3)


async def _get_text(http: aiohttp.ClientSession, url: str) -> str:
    try:
        async with asyncio.timeout(5.0):
            async with http.get(url) as response:
                return await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return ""


async def _drained(http: aiohttp.ClientSession, gateway: GatewayProcess) -> int | None:
    live: int | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            # Polled: the gateway says how many calls it holds only when asked.
            while (live := await gateway.live_calls(http)) not in (0, None):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    return live


@contextlib.contextmanager
def quiet_structlog() -> Any:
    """The emulator runs in this process and logs through structlog, to stdout by default:
    only its warnings, and on stderr, while a run lasts (stdout is the report's)."""
    saved = structlog.get_config()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


# -- the report ----------------------------------------------------------------------------------


def notes(report: dict[str, Any]) -> list[str]:
    """What in the figures should not pass unremarked."""
    out: list[str] = []
    for name, p in report["phases"].items():
        swaps, browsers = p["swaps"], p["browsers"]
        if p["calls"]["failed"]:
            out.append(f"{name}: {p['calls']['failed']} call(s) failed: {p['calls']['errors']}")
        if not swaps["done"]:
            out.append(f"{name}: no swap happened (run longer: --seconds)")
        if swaps["failed"]:
            out.append(f"{name}: {swaps['failed']} swap(s) failed (the call ended)")
        if swaps["unexpected_reasons"]:
            out.append(f"{name}: swaps for other reasons too: {swaps['unexpected_reasons']}")
        if browsers["connected_throughout"] != browsers["of"]:
            out.append(
                f"{name}: {browsers['of'] - browsers['connected_throughout']} browser peer(s) "
                f"did not stay connected (at the end: {browsers['states_at_end']})"
            )
        if browsers["errors"]:
            out.append(f"{name}: browsers got error events: {browsers['errors']}")
        if (browsers["session_created_max"] or 0) > 1:
            out.append(f"{name}: a browser got more than one session.created")
        resumed = p["audio_resumed"]
        if resumed["swaps"] != resumed["of"]:
            out.append(
                f"{name}: audio did not resume after {resumed['of'] - resumed['swaps']} swap(s)"
            )
        if p["rtp"]["seq_jumps_at_swaps"]:
            out.append(
                f"{name}: RTP sequence numbers jumped at {p['rtp']['seq_jumps_at_swaps']} swap(s)"
            )
        metric = p["metrics"]
        if (metric["ok"], metric["failed"]) != (metric["logged_ok"], metric["logged_failed"]):
            out.append(
                f"{name}: the gateway's metrics count {metric['ok']} swap(s) done and "
                f"{metric['failed']} failed, its log {metric['logged_ok']} and "
                f"{metric['logged_failed']}"
            )
        lag = p["load_loop_lag_ms"]["max"]
        if lag is not None and lag > LAG_WARN_MS:
            out.append(
                f"{name}: this process's event loop (the browsers and the emulator) lagged up to "
                f"{lag:.0f} ms: that much of a gap may be the bench's, not the gateway's"
            )
        gateway = p.get("gateway") or {}
        if gateway.get("problems"):
            out.append(
                f"{name}: the gateway logged {len(gateway['problems'])} warning(s)/error(s), "
                f"last: {gateway['problems'][-1][:200]}"
            )
    return out


def _f(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "–"
    return f"{value:.{digits}f}"


def _spread_cell(data: dict[str, Any] | None, keys: Sequence[str] = ("p50", "p95", "max")) -> str:
    if not data:
        return "–"
    return " / ".join(_f(data.get(k)) for k in keys)


ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("calls connected/requested", lambda p: f"{p['calls']['connected']}/{p['calls']['requested']}"),
    ("swaps done", lambda p: str(p["swaps"]["done"])),
    (
        "  by reason",
        lambda p: ", ".join(f"{k} {v}" for k, v in p["swaps"]["by_reason"].items()) or "–",
    ),
    (
        "swaps failed / dial attempts failed",
        lambda p: f"{p['swaps']['failed']} / {p['swaps']['dial_attempts_failed']}",
    ),
    ("upstream legs killed", lambda p: _f(p["swaps"]["legs_killed"])),
    ("audio gap at browser ms p50 / p95 / max", lambda p: _spread_cell(p["gap_ms"])),
    (
        "gateway's swap ms p50 / max",
        lambda p: _spread_cell(p["gateway_swap_ms"], ("p50", "max")),
    ),
    (
        "  metric: swaps / mean ms",
        lambda p: f"{p['metrics']['seconds_count']} / {_f(p['metrics']['seconds_mean_ms'])}",
    ),
    (
        "gap minus swap ms p50 / max",
        lambda p: _spread_cell(p["gap_beyond_swap_ms"], ("p50", "max")),
    ),
    (
        "largest gap elsewhere ms: no swap / others'",
        lambda p: (
            f"{_f(p['gap_no_swap_under_way_ms']['max'])} / "
            f"{_f(p['gap_while_other_calls_swap_ms']['max'])}"
        ),
    ),
    (
        "audio resumed after swaps",
        lambda p: f"{p['audio_resumed']['swaps']}/{p['audio_resumed']['of']}",
    ),
    (
        "RTP ts advance minus gap ms p50 / max",
        lambda p: _spread_cell(p["rtp"]["timestamp_minus_wall_ms"], ("p50", "max")),
    ),
    (
        "RTP seq jumps at swaps / lost",
        lambda p: f"{p['rtp']['seq_jumps_at_swaps']} / {p['rtp']['packets_lost']}",
    ),
    (
        "browsers connected throughout",
        lambda p: f"{p['browsers']['connected_throughout']}/{p['browsers']['of']}",
    ),
    (
        "browser session.created / errors",
        lambda p: f"{_f(p['browsers']['session_created_max'])} / {len(p['browsers']['errors'])}",
    ),
    (
        "gateway CPU % of a core",
        lambda p: _f(p["gateway"]["cpu_pct"], 1),
    ),
    (
        "bench loop lag ms p95 / max",
        lambda p: _spread_cell(p["load_loop_lag_ms"], ("p95", "max")),
    ),
    (
        "gateway live calls after / exit",
        lambda p: f"{p['gateway']['live_calls_after']} / {p['gateway']['exit_code']}",
    ),
]


def render(report: dict[str, Any]) -> str:
    c, m, phases = report["config"], report["machine"], report["phases"]
    lines = [
        f"realtime-gateway bench --continuity: {c['calls']} call(s) × {c['seconds']:g} s per "
        f"phase, emulator sessions of {c['session_seconds']:g} s, proactive lead "
        f"{c['lead_seconds']:g} s, killed legs at {c['kill_after_seconds'][0]:g}-"
        f"{c['kill_after_seconds'][1]:g} s",
        f"machine: {m['cpus']} CPU(s), load average {m['loadavg_start'][0]:.2f} → "
        f"{m['loadavg_end'][0]:.2f}, aiortc {m['aiortc']}, Python {m['python']}",
        f"gap: the largest interval between RTP packets at the browser, from "
        f"{c['around_seconds']:g} s before each swap began to {c['around_seconds']:g} s after "
        "it ended",
        "",
    ]
    names = list(phases)
    table = [["", *names]]
    for label, cell in ROWS:
        row = [label]
        for name in names:
            try:
                row.append(cell(phases[name]))
            except (KeyError, TypeError):
                row.append("–")
        table.append(row)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for row in table:
        cells = [
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)
