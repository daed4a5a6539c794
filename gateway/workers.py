"""``serve --workers N``: N gateway processes sharing one HTTP port, one per core.

One Python process relays on about one core. The supervisor here starts N workers (each a plain
``python -m gateway serve``), all listening on the same port (``SO_REUSEPORT``: the kernel spreads
connections among them), each with its own slice of ``GATEWAY_ICE_PORT_RANGE`` and a private port
its siblings reach it at. They share client secrets, the call directory and rate windows through
Redis (``GATEWAY_REDIS_URL`` is required: a call set up on one worker can be hung up through
another). The supervisor restarts a worker that dies, and on SIGTERM/SIGINT passes the signal on
and waits while every worker drains.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import ConfigError, Settings

# A worker that dies this many times within RESTART_WINDOW seconds is not restarted again:
# something is wrong that restarting will not fix.
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
POLL = 0.2


def worker_count(settings: Settings) -> int:
    """``workers`` (0: the CPUs this process may use)."""
    if settings.workers:
        return settings.workers
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def port_slices(span: tuple[int, int] | None, count: int) -> list[tuple[int, int] | None]:
    """``span`` split into ``count`` contiguous slices, as even as can be (None: no range)."""
    if span is None:
        return [None] * count
    low, high = span
    size = high - low + 1
    if size < count:
        raise ConfigError(
            f"GATEWAY_ICE_PORT_RANGE has {size} port(s) for {count} workers: give each worker "
            "at least one (better: as many as its calls need)"
        )
    out: list[tuple[int, int] | None] = []
    start = low
    for index in range(count):
        width = size // count + (1 if index < size % count else 0)
        out.append((start, start + width - 1))
        start += width
    return out


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host if host not in ("", "0.0.0.0", "::") else "127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Worker:
    index: int
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    deaths: list[float] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], env=self.env, stdin=subprocess.DEVNULL
        )


def worker_envs(settings: Settings, environ: Mapping[str, str], count: int) -> list[dict[str, str]]:
    """Each worker's environment: the operator's, plus what makes it one of ``count``."""
    if settings.redis_url is None:
        raise ConfigError(
            "--workers needs GATEWAY_REDIS_URL: workers share client secrets, the live calls "
            "and call rates through Redis (or run one worker)"
        )
    slices = port_slices(settings.ice_port_range, count)
    group = f"{socket.gethostname()}-{os.getpid()}"
    base = dict(environ)
    if settings.gateway_api_key is not None:
        base["GATEWAY_API_KEY"] = settings.gateway_api_key.reveal()  # generated keys: one for all
    if settings.cluster_secret is None and settings.gateway_api_key is None:
        base["GATEWAY_CLUSTER_SECRET"] = secrets.token_urlsafe(32)
    advertise = settings.host if settings.host not in ("", "0.0.0.0", "::") else None
    envs = []
    for index, ports in enumerate(slices):
        internal = _free_port(settings.host)
        env = dict(base)
        env.update(
            GATEWAY_WORKERS="1",
            GATEWAY_WORKER_GROUP=group,
            GATEWAY_NODE_NAME=f"{settings.node_name or socket.gethostname()}-w{index}",
            GATEWAY_INTERNAL_PORT=str(internal),
            GATEWAY_HOST=settings.host,
            GATEWAY_PORT=str(settings.port),
        )
        if advertise is not None:
            host = f"[{advertise}]" if ":" in advertise else advertise
            env["GATEWAY_NODE_ADDRESS"] = f"http://{host}:{internal}"
        else:
            env.pop("GATEWAY_NODE_ADDRESS", None)  # each worker derives it from its own port
        if ports is not None:
            env["GATEWAY_ICE_PORT_RANGE"] = f"{ports[0]}-{ports[1]}"
        envs.append(env)
    return envs


def supervise(settings: Settings, environ: Mapping[str, str]) -> int:
    """Run the workers until SIGTERM/SIGINT; returns the exit code."""
    count = worker_count(settings)
    workers = [Worker(i, env) for i, env in enumerate(worker_envs(settings, environ, count))]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)

    def reload(signum: int, frame: object) -> None:
        # Each worker reads GATEWAY_APPS again itself (and keeps its apps if the file is broken).
        for worker in workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    print(
        f"realtime-gateway: {count} workers on port {settings.port}",
        file=sys.stderr,
        flush=True,
    )
    for worker in workers:
        worker.start()
    failed = False
    while not stopping:
        time.sleep(POLL)
        for worker in workers:
            assert worker.process is not None
            code = worker.process.poll()
            if code is None or stopping:
                continue
            now = time.monotonic()
            deaths = [t for t in (worker.deaths or []) if now - t < RESTART_WINDOW] + [now]
            worker.deaths = deaths
            if len(deaths) > MAX_RESTARTS:
                print(
                    f"realtime-gateway: worker {worker.index} keeps exiting (code {code}); "
                    "stopping",
                    file=sys.stderr,
                    flush=True,
                )
                failed = True
                stop(signal.SIGTERM, None)
                break
            print(
                f"realtime-gateway: worker {worker.index} exited (code {code}); restarting it",
                file=sys.stderr,
                flush=True,
            )
            worker.start()
    # Drain: each worker ends its calls within GATEWAY_DRAIN_TIMEOUT, then exits.
    deadline = time.monotonic() + settings.drain_timeout + 15
    for worker in workers:
        if worker.process is None:
            continue
        try:
            worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
    return 1 if failed else 0
