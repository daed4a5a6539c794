"""``realtime-gateway bench``: flags, processes and phases, in that order.

Process layout: this process is the *load*: the browser-side client peers and the bench
upstream (both cheap: pre-encoded audio out, no decoding in). The gateway runs as a child
process per media mode, so its CPU and memory are its own. Each mode's phase also runs a few
direct calls (clients straight to the bench upstream) in the same window: the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from gateway_bench import report as report_mod
from gateway_bench import table
from gateway_bench.audio import MarkerLoop
from gateway_bench.measure import LagProbe, load_average, machine_info
from gateway_bench.phase import LoadEnv, PhaseConfig, run_phase
from gateway_bench.probe import ProbeRegistry
from gateway_bench.process import GatewayProcess, free_port, gateway_env
from gateway_bench.report import RECORDING_PHASE
from gateway_bench.upstream import BenchUpstream

MODES = ("passthrough", "transcode")
CONTINUITY_CALLS = 5  # --continuity's default --calls
RECORDINGS_TIMEOUT = 120.0


@dataclass(frozen=True)
class Topology:
    """One phase's gateway: its name in the report, media path, Redis, workers, recording."""

    name: str
    media: str
    redis: bool = False
    workers: int = 1
    recording: bool = False


async def recording_figures(
    http: aiohttp.ClientSession, gateway: GatewayProcess, calls: int
) -> dict[str, Any]:
    """Once the gateway has made the stereo file of every call (or given up waiting): what
    its metrics say recording cost after the calls."""
    values: dict[str, float] = {}
    deadline = time.monotonic() + RECORDINGS_TIMEOUT
    while time.monotonic() < deadline:
        async with http.get(f"{gateway.root_url}/metrics") as response:
            values = _recording_metrics(await response.text())
        if values.get("written", 0) + values.get("failed", 0) >= calls:
            break
        await asyncio.sleep(0.5)
    written, seconds = values.get("written", 0.0), values.get("seconds", 0.0)
    cpu = values.get("cpu_s", 0.0)
    return {
        "calls": calls,
        "written": int(written),
        "failed": int(values.get("failed", 0)),
        "seconds": round(seconds, 1),
        "cpu_s": round(cpu, 4),
        "cpu_s_per_call_minute": round(cpu / (seconds / 60.0), 4) if seconds else None,
        "dropped_packets": int(values.get("dropped", 0)),
        "bytes_during_calls": int(values.get("bytes", 0)),
    }


def _recording_metrics(text: str) -> dict[str, float]:
    names = {
        'realtime_gateway_recordings_total{result="written"}': "written",
        'realtime_gateway_recordings_total{result="failed"}': "failed",
        "realtime_gateway_recorded_seconds_total": "seconds",
        "realtime_gateway_recording_cpu_seconds_total": "cpu_s",
        "realtime_gateway_recording_bytes_total": "bytes",
    }
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key in names:
            out[names[key]] = float(value)
        elif key.startswith("realtime_gateway_recording_dropped_packets_total{"):
            out["dropped"] = out.get("dropped", 0.0) + float(value)
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realtime-gateway bench",
        description="Measure the gateway on this machine: added latency per direction against "
        "a direct no-gateway baseline, packet loss, CPU and memory per call, setup time and "
        "data-channel latency, for each media mode, in one run.",
    )
    p.add_argument(
        "--calls",
        type=_positive_int,
        default=10,
        metavar="N",
        help=f"concurrent calls (10; --continuity: {CONTINUITY_CALLS})",
    )
    p.add_argument(
        "--seconds",
        type=_positive_float,
        default=20.0,
        metavar="T",
        help="measurement window per phase, or the soak's duration (20)",
    )
    p.add_argument(
        "--media",
        choices=(*MODES, "both"),
        default=None,
        help="media path(s) to measure (default: both; a soak: passthrough)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="put the gateway on a core of its own; the load gets the others",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument(
        "--direct-calls",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="direct calls (no gateway) measured in the same window as the baseline "
        "(default: --calls, at most 5)",
    )
    p.add_argument(
        "--events-per-second",
        type=_non_negative_float,
        default=2.0,
        metavar="R",
        help="data-channel events per call and direction (2)",
    )
    p.add_argument(
        "--ramp",
        type=_non_negative_float,
        default=0.05,
        metavar="S",
        help="seconds between two call starts (0.05)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--gateway-source",
        type=_source_tree,
        default=None,
        metavar="DIR",
        help="run the gateway from this source tree (e.g. an export of another commit) "
        "instead of the installed one, to compare versions on the same machine",
    )
    scale = p.add_argument_group("scale-out")
    scale.add_argument(
        "--workers",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="measure passthrough three ways in one run: one process (in-memory stores), one "
        "process with Redis, and `serve --workers N` with Redis (needs redis-server on PATH)",
    )
    recording = p.add_argument_group("recording")
    recording.add_argument(
        "--recording",
        action="store_true",
        help="measure passthrough twice in one run, recording off then on: the CPU recording "
        "adds to each call, and the CPU each call's stereo file costs after it ends",
    )
    emulator = p.add_argument_group("emulator mode")
    emulator.add_argument(
        "--emulator-churn",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="instead of the rest: N whole calls, two at a time, through a gateway on its "
        "built-in emulator, sampling its memory (it should stay flat)",
    )
    continuity = p.add_argument_group("continuity")
    continuity.add_argument(
        "--continuity",
        action="store_true",
        help="instead of the rest: the audio pause a browser hears when its call changes "
        "upstream session, on --calls calls for --seconds per phase, through a gateway on the "
        "emulator with 5 s sessions: replaced on expiry, ahead of it, and on a killed leg",
    )
    soak = p.add_argument_group("soak")
    soak.add_argument(
        "--soak",
        action="store_true",
        help="hold --calls calls for --seconds while others open and hang up, "
        "sampling the gateway's memory and descriptors",
    )
    soak.add_argument(
        "--churn",
        type=_non_negative_int,
        default=2,
        metavar="N",
        help="calls churning at any moment during a soak (2)",
    )
    soak.add_argument(
        "--churn-hold",
        type=_positive_float,
        default=3.0,
        metavar="S",
        help="seconds each churning call stays up (3)",
    )
    soak.add_argument(
        "--sample-every",
        type=_positive_float,
        default=5.0,
        metavar="S",
        help="seconds between samples of the gateway during a soak (5)",
    )
    return p


def _source_tree(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "gateway" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text}: no gateway/__main__.py in it")
    return path


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def modes_of(args: argparse.Namespace) -> tuple[str, ...]:
    media = args.media or ("passthrough" if args.soak else "both")
    return MODES if media == "both" else (media,)


def plan_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None, str | None]:
    """(gateway CPUs, load CPUs, warning): the gateway gets the last allowed CPU."""
    if not pin:
        return None, None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None, "--pin needs at least 2 CPUs; running unpinned"
    return {allowed[-1]}, set(allowed[:-1]), None


def pin_self(cpus: set[int]) -> None:
    """Pin every thread of this process (affinity is per thread on Linux)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, PermissionError):
            pass


class Runner:
    """One benchmark run; owns the upstream, the HTTP client and every gateway it starts."""

    def __init__(self, args: argparse.Namespace, gateway_cpus: set[int] | None) -> None:
        self.args = args
        self.gateway_cpus = gateway_cpus
        self.gateways: list[GatewayProcess] = []
        self.notes: list[str] = []
        self.started = time.monotonic()
        self.interrupted = 0

    def progress(self, message: str) -> None:
        if not self.args.quiet:
            elapsed = time.monotonic() - self.started
            print(f"bench [{elapsed:5.1f} s]: {message}", file=sys.stderr, flush=True)

    async def start_gateway(
        self,
        env: LoadEnv,
        media: str,
        *,
        redis_url: str | None = None,
        workers: int = 1,
        recordings_dir: str | None = None,
    ) -> GatewayProcess:
        settings = gateway_env(
            os.environ,
            media=media,
            port=free_port(),
            upstream_base_url=env.upstream_url,
            upstream_key=env.upstream.api_key,
            gateway_key="gk_bench_" + secrets.token_urlsafe(16),
            max_calls=max(100, 2 * self.args.calls + self.args.churn + 10),
        )
        if redis_url is not None:
            settings["GATEWAY_REDIS_URL"] = redis_url
        if recordings_dir is not None:
            settings["GATEWAY_RECORDINGS_DIR"] = recordings_dir
        # Workers need more than one core: they are not pinned to the gateway's one.
        cpus = self.gateway_cpus if workers == 1 else None
        gateway = await GatewayProcess.start(
            settings, cpus, self.args.gateway_source, workers=workers
        )
        self.gateways.append(gateway)
        await gateway.wait_ready(env.http)
        self.progress(f"{media}: gateway ready (pid {gateway.proc.pid})")
        return gateway

    async def stop_gateway(self, gateway: GatewayProcess) -> int | None:
        code = await gateway.stop()
        self.gateways.remove(gateway)
        return code

    async def run(self) -> dict[str, Any]:
        self.progress("encoding the marker loop")
        probes = ProbeRegistry(MarkerLoop.build())
        upstream = BenchUpstream(
            probes,
            api_key="sk-bench-" + secrets.token_urlsafe(16),
            events_per_second=self.args.events_per_second,
        )
        lag = LagProbe()
        loadavg_start = load_average()
        # No keep-alive, here nor at the bench upstream: a pooled connection holds a descriptor
        # in the gateway, and its descriptor count must reflect calls, not idle connections.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            url = await upstream.start()
            lag.start()
            env = LoadEnv(
                http, probes, upstream, url, self.args.events_per_second, lag, self.progress
            )
            try:
                if self.args.soak:
                    from gateway_bench.soak import run_soak

                    result = await run_soak(self, env, modes_of(self.args)[0])
                else:
                    result = await self._phases(env)
            finally:
                await lag.stop()
                await upstream.aclose()
        result["machine"]["loadavg_start"] = list(loadavg_start)
        result["machine"]["loadavg_end"] = list(load_average())
        return result

    @property
    def direct_calls(self) -> int:
        chosen: int | None = self.args.direct_calls
        return min(self.args.calls, 5) if chosen is None else chosen

    def config(self, modes: Sequence[str]) -> dict[str, Any]:
        a = self.args
        return {
            "calls": a.calls,
            "direct_calls": self.direct_calls,
            "seconds": a.seconds,
            "media": list(modes),
            "events_per_second": a.events_per_second,
            "ramp": a.ramp,
            "gateway_cpus": sorted(self.gateway_cpus) if self.gateway_cpus else None,
            "gateway_source": str(a.gateway_source) if a.gateway_source else None,
        }

    def _topologies(self) -> list[Topology]:
        """What each phase of this run measures."""
        if self.args.workers:
            n = self.args.workers
            return [
                Topology("passthrough", "passthrough"),
                Topology("1 process + Redis", "passthrough", redis=True),
                Topology(f"{n} workers + Redis", "passthrough", redis=True, workers=n),
            ]
        if self.args.recording:
            return [
                Topology("passthrough", "passthrough"),
                Topology(RECORDING_PHASE, "passthrough", recording=True),
            ]
        return [Topology(media, media) for media in modes_of(self.args)]

    async def _phases(self, env: LoadEnv) -> dict[str, Any]:
        topologies = self._topologies()
        modes = [t.name for t in topologies]
        async with redis_for(any(t.redis for t in topologies)) as redis_url:
            return await self._run_phases(env, topologies, modes, redis_url)

    async def _run_phases(
        self,
        env: LoadEnv,
        topologies: list[Topology],
        modes: list[str],
        redis_url: str | None,
    ) -> dict[str, Any]:
        config = PhaseConfig(
            calls=self.args.calls,
            seconds=self.args.seconds,
            direct_calls=self.direct_calls,
            ramp=self.args.ramp,
        )
        phases: dict[str, dict[str, Any]] = {}
        for topology in topologies:
            media = topology.name
            with contextlib.ExitStack() as stack:
                recordings_dir = (
                    stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-recordings-"))
                    if topology.recording
                    else None
                )
                gateway = await self.start_gateway(
                    env,
                    topology.media,
                    redis_url=redis_url if topology.redis else None,
                    workers=topology.workers,
                    recordings_dir=recordings_dir,
                )
                recorded: dict[str, Any] | None = None
                try:
                    result = await run_phase(media, config, env, gateway)
                    if topology.recording:
                        self.progress(f"{media}: waiting for the recordings to be made")
                        # The phase's calls, and the warm-up call before them.
                        recorded = await recording_figures(
                            env.http, gateway, len(result.calls.probes) + 1
                        )
                finally:
                    self.progress(f"{media}: stopping the gateway")
                    code = await self.stop_gateway(gateway)
            assert result.gateway is not None
            result.gateway.exit_code = code
            result.gateway.problems = gateway.problems()
            phases[media] = report_mod.summarize(result, env.lag.window_ms(*result.window))
            if recorded is not None:
                phases[media]["recordings"] = recorded
        report = report_mod.build(self.config(modes), machine_info(), phases)
        report["notes"] = self.notes + report_mod.health_notes(report)
        return report


CLEANUP_LIMIT = 45.0  # after a Ctrl-C, the orderly teardown gets this long before a hard exit


class _Run(Protocol):
    """What :func:`_interruptible` needs of a run: the gateways it started, and its progress."""

    gateways: list[GatewayProcess]
    interrupted: int

    def progress(self, message: str) -> None: ...

    async def run(self) -> dict[str, Any]: ...


async def _interruptible(runner: _Run) -> dict[str, Any]:
    """Run, turning SIGINT/SIGTERM into an orderly, bounded teardown; a second one forces it.

    asyncio's own Ctrl-C handling raises KeyboardInterrupt inside whatever callback runs at the
    second press, which can leave aiortc's tasks unable to finish: handled here instead.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def hard_exit() -> None:
        for gateway in runner.gateways:
            gateway.kill_now()
        print("bench: forced exit", file=sys.stderr, flush=True)
        os._exit(130)

    def interrupt() -> None:
        runner.interrupted += 1
        if runner.interrupted > 1:
            hard_exit()
        runner.progress("interrupted: hanging up and stopping the gateway (again to force)")
        task.cancel()
        loop.call_later(CLEANUP_LIMIT, hard_exit)

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, interrupt)
    try:
        return await runner.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The flags, with the defaults that depend on the mode filled in."""
    # A namespace holding calls=None keeps argparse's default out: None means "not given".
    args = parser().parse_args(list(argv), namespace=argparse.Namespace(calls=None))
    if args.calls is None:
        args.calls = CONTINUITY_CALLS if args.continuity else 10
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    if args.continuity:
        return _continuity(args)
    if args.emulator_churn:
        from gateway_bench import churn

        def progress(line: str) -> None:
            if not args.quiet:
                print(f"bench: {line}", file=sys.stderr, flush=True)

        outcome = asyncio.run(churn.run(args.emulator_churn, progress, args.gateway_source))
        print(json.dumps(outcome, indent=2) if args.json else churn.render(outcome))
        return 0
    gateway_cpus, load_cpus, warning = plan_cpus(args.pin)
    if load_cpus is not None:
        pin_self(load_cpus)
    runner = Runner(args, gateway_cpus)
    if warning:
        runner.notes.append(warning)
    try:
        result = asyncio.run(_interruptible(runner))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for gateway in runner.gateways:  # only if teardown itself was cut short
            gateway.kill_now()
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    elif args.soak:
        from gateway_bench.soak import render

        print(render(result))
    else:
        print(table.render(result))
    return 0


def _continuity(args: argparse.Namespace) -> int:
    from gateway_bench import continuity

    started = time.monotonic()

    def progress(line: str) -> None:
        if not args.quiet:
            elapsed = time.monotonic() - started
            print(f"bench [{elapsed:5.1f} s]: {line}", file=sys.stderr, flush=True)

    config = continuity.ContinuityConfig(
        calls=args.calls, seconds=args.seconds, source=args.gateway_source
    )
    runner = continuity.ContinuityRunner(config, progress)
    try:
        result = asyncio.run(_interruptible(runner))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted; everything it started has been stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench: failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for gateway in runner.gateways:  # only if teardown itself was cut short
            gateway.kill_now()
    print(
        json.dumps(result, indent=2, ensure_ascii=False) if args.json else continuity.render(result)
    )
    return 0


def console() -> int:
    """``realtime-gateway-bench``: the same as ``realtime-gateway bench``."""
    import sys

    return main(sys.argv[1:])


@contextlib.asynccontextmanager
async def redis_for(needed: bool) -> AsyncIterator[str | None]:
    """A throwaway redis-server on loopback for the phases that share state through Redis."""
    if not needed:
        yield None
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("--workers needs redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.05)
                    continue
                writer.close()
                break
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        await proc.wait()
