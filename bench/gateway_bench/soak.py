"""``bench --soak``: calls churn for the whole duration while ``--calls`` calls stay up.

What leaks shows as growth: the gateway's RSS and open descriptors are sampled every few
seconds. There is no admin endpoint, so "live calls" comes from the gateway's ``/readyz`` when
it reports them, and the bench upstream independently checks that the gateway hung up every
upstream call it opened. After the teardown, descriptors are given a bound to return to their
idle count (pooled HTTP connections to the upstream close on their keep-alive timeout).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from gateway_bench.measure import machine_info, slope
from gateway_bench.peers import Target
from gateway_bench.phase import CallSet, LoadEnv, wait_drained, warm_up
from gateway_bench.process import GatewayProcess
from gateway_bench.report import MIB, group_summary, spread

if TYPE_CHECKING:
    from gateway_bench.cli import Runner

FD_SETTLE_TIMEOUT = 20.0  # aiohttp's client keeps idle connections 15 s
FD_SLACK = 2
RSS_SLOPE_LIMIT = 0.2  # MiB per minute: 2 MiB over 10 minutes, one call's worth
MIN_TREND_S = 60.0  # a shorter span is allocator noise, not a trend


class _Churn:
    """Keeps ``slots`` calls opening, holding and hanging up until stopped."""

    def __init__(self, env: LoadEnv, target: Target, slots: int, hold: float) -> None:
        self.env, self.target, self.hold = env, target, hold
        self.opened = 0
        self.failures: list[str] = []
        self._tasks = [
            asyncio.get_running_loop().create_task(self._slot(), name=f"bench-churn-{i}")
            for i in range(slots)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _slot(self) -> None:
        while True:
            calls = CallSet(self.env, self.target)
            try:
                await calls.open(1, 0.0)
                flowing = await calls.wait_flowing()
                self.opened += 1
                self.failures += calls.failures
                if flowing:
                    await asyncio.sleep(self.hold)
                else:
                    await asyncio.sleep(1.0)  # do not spin on a failing gateway
            finally:
                await calls.hangup_all()


async def _sample(env: LoadEnv, gateway: GatewayProcess, origin: float) -> dict[str, Any]:
    return {
        "t": round(time.monotonic() - origin, 1),
        "rss_mib": round(gateway.probe.rss() / MIB, 2),
        "fds": gateway.probe.fds(),
        "threads": gateway.probe.threads(),
        "live_calls": await gateway.live_calls(env.http),
        "upstream_open": env.upstream.open_calls,
    }


async def _settle_fds(gateway: GatewayProcess, idle: int) -> tuple[int, float]:
    """Wait (bounded) for the descriptor count to return near idle; (count, seconds waited)."""
    start = time.monotonic()
    while time.monotonic() - start < FD_SETTLE_TIMEOUT:
        if gateway.probe.fds() <= idle + FD_SLACK:
            break
        await asyncio.sleep(0.5)
    return gateway.probe.fds(), time.monotonic() - start


async def run_soak(runner: Runner, env: LoadEnv, media: str) -> dict[str, Any]:
    args = runner.args
    gateway = await runner.start_gateway(env, media)
    steady: CallSet | None = None
    churn: _Churn | None = None
    idle_fds = fds_after = rss_after = 0
    fd_wait = 0.0
    live_after: int | None = None
    try:
        target = Target(gateway.base_url, gateway.key, via_gateway=True)
        env.progress("soak: warm-up call")
        await warm_up(env, target)
        await wait_drained(env, gateway)
        await asyncio.sleep(1.0)
        idle_rss, idle_fds = gateway.probe.rss(), gateway.probe.fds()
        steady = CallSet(env, target)
        env.progress(f"soak: opening {args.calls} steady call(s)")
        await steady.open(args.calls, args.ramp)
        flowing = await steady.wait_flowing()
        env.progress(f"soak: {args.seconds:g} s with {args.churn} call(s) churning")
        start = time.monotonic()
        cpu0 = gateway.probe.cpu()
        churn = _Churn(env, target, args.churn, args.churn_hold)
        samples = [await _sample(env, gateway, start)]
        while (left := start + args.seconds - time.monotonic()) > 0:
            await asyncio.sleep(min(args.sample_every, left))
            samples.append(await _sample(env, gateway, start))
        end = time.monotonic()
        cpu_s = gateway.probe.cpu().total - cpu0.total
        await churn.stop()
        await asyncio.sleep(1.0)  # the steady calls' last packets land
        steady_group = steady.group(args.calls, flowing)
    finally:
        env.progress("soak: hanging up")
        if churn is not None:
            await churn.stop()
        if steady is not None:
            await steady.hangup_all()
        live_after = await wait_drained(env, gateway)
        if gateway.proc.returncode is None:
            fds_after, fd_wait = await _settle_fds(gateway, idle_fds)
            rss_after = gateway.probe.rss()
        code = await runner.stop_gateway(gateway)
    summary = group_summary(steady_group, (start, end))
    lag = spread(env.lag.window_ms(start, end))
    counts = env.upstream.counts
    result: dict[str, Any] = {
        "mode": "soak",
        "config": {
            **runner.config((media,)),
            "churn": args.churn,
            "churn_hold": args.churn_hold,
            "sample_every": args.sample_every,
        },
        "machine": machine_info(),
        "steady": {**summary, "window_s": round(end - start, 2)},
        "load": {"loop_lag_ms": lag},
        "churn": {
            "calls": churn.opened,
            "failed": len(churn.failures),
            "errors": sorted(set(churn.failures))[:5],
        },
        "samples": samples,
        "gateway": {
            "media": media,
            "cpu_pct": round(100.0 * cpu_s / (end - start), 1),
            "rss_mib": {"idle": round(idle_rss / MIB, 1), "after": round(rss_after / MIB, 1)},
            "rss_slope_mib_per_min": {
                "first_half": _rss_slope(samples, "first"),
                "second_half": _rss_slope(samples, "second"),
            },
            "fds": {"idle": idle_fds, "after": fds_after, "settle_s": round(fd_wait, 1)},
            "live_calls_after": live_after,
            "exit_code": code,
            "problems": gateway.problems()[-10:],
        },
        "upstream": {
            "answered": counts.answered,
            "hung_up": counts.hung_up,
            "open_after": env.upstream.open_calls,
        },
    }
    result["checks"] = checks(result)
    return result


def _rss_slope(samples: list[dict[str, Any]], part: str) -> float | None:
    """RSS slope in MiB per minute over the first or the second half of the run.

    Allocators keep growing for minutes after the first calls (measured here: most of the
    growth of a 10-minute soak came in its first 3 minutes) and then level off; a leak keeps
    growing. So flatness is judged on the second half; the first is reported beside it.
    """
    if not samples:
        return None
    middle = samples[-1]["t"] / 2
    half = [s for s in samples if (s["t"] >= middle) == (part == "second")]
    if len(half) < 3 or half[-1]["t"] - half[0]["t"] < MIN_TREND_S:
        return None
    value = slope([s["t"] / 60.0 for s in half], [s["rss_mib"] for s in half])
    return None if value is None else round(value, 3)


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    g, up, steady = result["gateway"], result["upstream"], result["steady"]
    out: list[dict[str, Any]] = []

    def row(name: str, target: str, measured: str, ok: bool | None) -> None:
        out.append({"name": name, "target": target, "measured": measured, "pass": ok})

    live = g["live_calls_after"]
    row(
        "live calls after teardown",
        "0 (gateway /readyz)",
        str(live),
        None if live is None else live == 0,
    )
    row(
        "upstream calls hung up by the gateway",
        "every one",
        f"{up['hung_up']} of {up['answered']}, {up['open_after']} still open",
        up["hung_up"] == up["answered"] and up["open_after"] == 0,
    )
    fds = g["fds"]
    row(
        "descriptors after teardown",
        f"≤ idle + {FD_SLACK}",
        f"{fds['after']} (idle {fds['idle']})",
        fds["after"] <= fds["idle"] + FD_SLACK,
    )
    rss_slope = g["rss_slope_mib_per_min"]["second_half"]
    first = g["rss_slope_mib_per_min"]["first_half"]
    row(
        "memory flat",
        f"RSS slope over the second half ≤ {RSS_SLOPE_LIMIT} MiB/min (2 MiB per 10 min)",
        "too short to tell (run 10 minutes: --seconds 600)"
        if rss_slope is None
        else f"{rss_slope:+.3f} MiB/min (first half {first:+.3f})"
        if first is not None
        else f"{rss_slope:+.3f} MiB/min",
        None if rss_slope is None else rss_slope <= RSS_SLOPE_LIMIT,
    )
    losses = [steady["audio"][d]["loss_pct"] for d in ("up", "down")]
    row(
        "steady calls' packet loss",
        "< 0.5 % each direction",
        " / ".join("–" if v is None else f"{v:.3f} %" for v in losses),
        None if None in losses else all(v < 0.5 for v in losses),
    )
    churn = result["churn"]
    row(
        "churned calls set up",
        "all",
        f"{churn['calls'] - churn['failed']} of {churn['calls']}",
        churn["failed"] == 0,
    )
    return out


def render(result: dict[str, Any]) -> str:
    c, g = result["config"], result["gateway"]
    lines = [
        f"realtime-gateway bench --soak: {c['calls']} steady call(s) for {c['seconds']:g} s, "
        f"{c['churn']} churning ({c['churn_hold']:g} s each), media {g['media']}",
        f"machine: {result['machine']['cpus']} CPU(s), load average "
        f"{result['machine']['loadavg_start'][0]:.2f} → {result['machine']['loadavg_end'][0]:.2f}",
        "",
        f"{'t s':>7}  {'RSS MiB':>8}  {'fds':>5}  {'threads':>7}  {'live':>5}  {'upstream':>8}",
    ]
    for s in result["samples"]:
        lines.append(
            f"{s['t']:>7.1f}  {s['rss_mib']:>8.1f}  {s['fds']:>5}  {s['threads']:>7}  "
            f"{s['live_calls'] if s['live_calls'] is not None else '–':>5}  "
            f"{s['upstream_open']:>8}"
        )
    steady = result["steady"]["audio"]
    lines += [
        "",
        f"churned calls: {result['churn']['calls']} ({result['churn']['failed']} failed); "
        f"gateway CPU {g['cpu_pct']} % of a core; RSS idle {g['rss_mib']['idle']} → after "
        f"{g['rss_mib']['after']} MiB; fds idle {g['fds']['idle']} → after {g['fds']['after']}",
        f"steady calls' audio latency p50/p99 ms: up {steady['up']['latency_ms']['p50']} / "
        f"{steady['up']['latency_ms']['p99']}, down {steady['down']['latency_ms']['p50']} / "
        f"{steady['down']['latency_ms']['p99']}",
        "",
        "checks:",
    ]
    marks = {True: "meets", False: "misses", None: "n/a"}
    for check in result["checks"]:
        lines.append(
            f"  {marks[check['pass']]:>6}  {check['name']}: {check['target']}; "
            f"measured {check['measured']}"
        )
    return "\n".join(lines)
