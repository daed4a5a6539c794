"""One phase of a run: N calls through the gateway, beside direct calls in the same window.

The baseline runs *at the same time* as the measured calls: a few direct calls (client peers
talking straight to the bench upstream, no gateway) are opened alongside the gateway's calls
and measured over the same window. On a shared, noisy machine a burst of someone else's work
then lands on both, so "added by the gateway" (gateway percentile minus direct percentile) is
not a comparison of two different moments.

A phase opens its calls one after another (``ramp`` apart, as real traffic arrives), waits
until audio flows both ways on all of them, lets them settle, then measures over a window of
``seconds``: latency and loss of what was *sent* in the window, the gateway's CPU over it, its
memory and descriptors at its end. A short tail lets the last packets land before the calls are
hung up. Every wait is bounded, and every call is hung up and closed whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from gateway_bench.measure import LagProbe, machine_busy, self_cpu, self_wait
from gateway_bench.peers import BenchClient, DialError, Target
from gateway_bench.probe import CallProbe, ProbeRegistry
from gateway_bench.process import GatewayProcess
from gateway_bench.upstream import BenchUpstream

CONNECT_TIMEOUT = 30.0
FLOW_TIMEOUT = 15.0
HANGUP_TIMEOUT = 30.0
DRAIN_TIMEOUT = 15.0

Progress = Callable[[str], None]


@dataclass
class LoadEnv:
    """What every phase of a run shares: the load process's HTTP client, upstream and probes."""

    http: aiohttp.ClientSession
    probes: ProbeRegistry
    upstream: BenchUpstream
    upstream_url: str
    events_per_second: float
    lag: LagProbe
    progress: Progress

    def direct_target(self) -> Target:
        return Target(self.upstream_url, self.upstream.api_key, via_gateway=False)


@dataclass(frozen=True)
class PhaseConfig:
    calls: int
    seconds: float
    direct_calls: int = 5  # the same-window baseline
    ramp: float = 0.05  # seconds between two call starts
    settle: float = 1.0  # after every call flows, before the window opens
    tail: float = 1.0  # after the window, before hanging up: the last packets land


@dataclass
class GatewayFigures:
    cpu_s: float = 0.0
    main_thread_cpu_s: float = 0.0
    main_thread_wait_s: float = 0.0  # runnable, but another process had the CPU
    rss_idle: int = 0
    rss_loaded: int = 0
    rss_after: int = 0
    fds_idle: int = 0
    fds_loaded: int = 0
    fds_after: int = 0
    threads_loaded: int = 0
    live_calls_loaded: int | None = None
    live_calls_after: int | None = None
    exit_code: int | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class CallGroup:
    """The calls of one kind in a phase: through the gateway, or direct."""

    requested: int
    probes: list[CallProbe]  # the calls that flowed: the measured ones
    answered: list[CallProbe]  # every call that got its SDP answer: for setup times
    failures: list[str]


@dataclass
class PhaseResult:
    name: str
    calls: CallGroup
    direct: CallGroup
    window: tuple[float, float]
    load_cpu_s: float
    upstream_open_after: int
    machine_busy_s: float = 0.0  # every CPU of the machine, every process, over the window
    load_wait_s: float = 0.0  # the load's event loop, runnable but without a CPU
    gateway: GatewayFigures | None = None

    @property
    def window_s(self) -> float:
        return self.window[1] - self.window[0]


class CallSet:
    """The client calls of a phase (or of a soak), with bounded open and hangup."""

    def __init__(self, env: LoadEnv, target: Target) -> None:
        self.env = env
        self.target = target
        self.clients: list[BenchClient] = []
        self.failures: list[str] = []

    def group(self, requested: int, flowing: list[CallProbe]) -> CallGroup:
        answered = [c.probe for c in self.clients if c.probe.answer_received is not None]
        return CallGroup(requested, flowing, answered, self.failures)

    async def open(self, count: int, ramp: float) -> None:
        tasks: list[asyncio.Task[BenchClient | None]] = []
        try:
            for i in range(count):
                if i:
                    await asyncio.sleep(ramp)
                tasks.append(asyncio.get_running_loop().create_task(self.open_one()))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def open_one(self) -> BenchClient | None:
        """Dial one call; on failure it is recorded, closed, and None returned."""
        client = BenchClient(self.env.probes.new(), self.target, self.env.events_per_second)
        self.clients.append(client)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await client.connect(self.env.http)
        except (DialError, TimeoutError) as exc:
            message = str(exc) or f"no answer within {CONNECT_TIMEOUT:g} s"
            client.probe.error = message
            self.failures.append(message)
            await self.drop(client)
            return None
        return client

    async def wait_flowing(self) -> list[CallProbe]:
        """Wait (bounded) for audio both ways and an open channel on every call."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLOW_TIMEOUT):
                # Polled: "flowing" is three facts set by aiortc callbacks, none awaitable.
                while not all(c.probe.flowing for c in self.clients):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        flowing = [c.probe for c in self.clients if c.probe.flowing]
        for client in self.clients:
            if not client.probe.flowing and client.probe.error is None:
                client.probe.error = "connected, but audio or events did not flow"
                self.failures.append(client.probe.error)
        return flowing

    async def drop(self, client: BenchClient) -> None:
        with contextlib.suppress(ValueError):
            self.clients.remove(client)
        await client.hangup(self.env.http)
        self.env.probes.forget(client.probe)

    async def hangup_all(self) -> None:
        clients, self.clients = self.clients, []
        try:
            async with asyncio.timeout(HANGUP_TIMEOUT):
                await asyncio.gather(*(c.hangup(self.env.http) for c in clients))
        except TimeoutError:
            # Some hangup hung: close the peers ourselves, and do not wait on that forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HANGUP_TIMEOUT):
                    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for client in clients:
            self.env.probes.forget(client.probe)


async def warm_up(env: LoadEnv, target: Target) -> None:
    """One call through, then hung up: imports and first-use costs leave the measurement."""
    calls = CallSet(env, target)
    try:
        await calls.open(1, 0.0)
        flowing = await calls.wait_flowing()
        if not flowing:
            raise RuntimeError(f"the warm-up call failed: {'; '.join(calls.failures)}")
    finally:
        await calls.hangup_all()


async def wait_drained(env: LoadEnv, gateway: GatewayProcess | None) -> int | None:
    """Wait (bounded) until the upstream has no call open and the gateway counts none live."""
    live: int | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            while True:
                live = await gateway.live_calls(env.http) if gateway is not None else 0
                if env.upstream.open_calls == 0 and not live:
                    break
                await asyncio.sleep(0.1)
    return live


async def run_phase(
    name: str, config: PhaseConfig, env: LoadEnv, gateway: GatewayProcess
) -> PhaseResult:
    figures = GatewayFigures()
    target = Target(gateway.base_url, gateway.key, via_gateway=True)
    env.progress(f"{name}: warm-up call")
    try:
        await warm_up(env, target)
    except RuntimeError as exc:
        await asyncio.sleep(0.2)  # the gateway's last output lines
        said = "; ".join(line[:300] for line in gateway.problems()[-3:])
        suffix = f"; the gateway said: {said}" if said else ""
        raise RuntimeError(f"{name}: {exc}{suffix}") from None
    await wait_drained(env, gateway)
    await asyncio.sleep(1.0)
    figures.rss_idle, figures.fds_idle = gateway.probe.rss(), gateway.probe.fds()
    calls, direct = CallSet(env, target), CallSet(env, env.direct_target())
    try:
        env.progress(f"{name}: opening {config.calls} call(s) + {config.direct_calls} direct")
        # Both ramps span the same time, so the direct calls are spread among the others.
        direct_ramp = config.ramp * config.calls / max(1, config.direct_calls)
        await asyncio.gather(
            calls.open(config.calls, config.ramp),
            direct.open(config.direct_calls, direct_ramp),
        )
        flowing, direct_flowing = await calls.wait_flowing(), await direct.wait_flowing()
        await asyncio.sleep(config.settle)
        env.progress(f"{name}: measuring {len(flowing)} call(s) for {config.seconds:g} s")
        start = time.monotonic()
        cpu0 = gateway.probe.cpu()
        load0, busy0, wait0 = self_cpu(), machine_busy(), self_wait()
        await asyncio.sleep(config.seconds)
        end = time.monotonic()
        load_cpu, busy, load_wait = self_cpu() - load0, machine_busy() - busy0, self_wait() - wait0
        cpu1 = gateway.probe.cpu()
        figures.cpu_s = cpu1.total - cpu0.total
        figures.main_thread_cpu_s = cpu1.main - cpu0.main
        figures.main_thread_wait_s = cpu1.main_wait - cpu0.main_wait
        figures.rss_loaded, figures.fds_loaded = gateway.probe.rss(), gateway.probe.fds()
        figures.threads_loaded = gateway.probe.threads()
        figures.live_calls_loaded = await gateway.live_calls(env.http)
        await asyncio.sleep(config.tail)
        groups = (
            calls.group(config.calls, flowing),
            direct.group(config.direct_calls, direct_flowing),
        )
    finally:
        env.progress(f"{name}: hanging up")
        await asyncio.gather(calls.hangup_all(), direct.hangup_all())
    figures.live_calls_after = await wait_drained(env, gateway)
    await asyncio.sleep(1.0)
    figures.rss_after, figures.fds_after = gateway.probe.rss(), gateway.probe.fds()
    return PhaseResult(
        name=name,
        calls=groups[0],
        direct=groups[1],
        window=(start, end),
        load_cpu_s=load_cpu,
        machine_busy_s=busy,
        load_wait_s=load_wait,
        upstream_open_after=env.upstream.open_calls,
        gateway=figures,
    )
