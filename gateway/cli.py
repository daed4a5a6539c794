"""``realtime-gateway``: ``serve`` runs the gateway; ``emulator`` runs the emulator alone."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from aiohttp import web

from gateway import __version__
from gateway.config import ConfigError, Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-gateway",
        description="WebRTC relay gateway for the OpenAI Realtime API.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway (on the emulator if no key is set)")
    serve.add_argument("--host", help="address to listen on (GATEWAY_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (GATEWAY_PORT, default 8080)")
    serve.add_argument(
        "--workers",
        help="worker processes sharing the port, or 'auto' for one per CPU (GATEWAY_WORKERS, "
        "default 1; more than one needs GATEWAY_REDIS_URL)",
    )
    emulator = commands.add_parser("emulator", help="run the Realtime emulator on its own")
    emulator.add_argument("--host", default="127.0.0.1")
    emulator.add_argument("--port", type=int, default=8090)
    emulator.add_argument(
        "--ice-addresses",
        default="127.0.0.1",
        help="comma-separated addresses ICE offers (default 127.0.0.1)",
    )
    emulator.add_argument(
        "--api-key", default=None, help="require this Bearer key (default: accept any)"
    )
    commands.add_parser(
        "bench",
        help="measure the gateway: added latency, CPU and memory per call",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # The benchmark is a package of its own (not in the gateway's wheel or image); it owns
        # its flags: see `realtime-gateway bench --help`.
        try:
            from gateway_bench import main as bench_main
        except ImportError:
            print(
                "realtime-gateway: the benchmark is not installed; install realtime-gateway-bench "
                "(from a source checkout: pip install -e bench/)",
                file=sys.stderr,
            )
            return 2
        return bench_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return _emulator(args)


def _serve(args: argparse.Namespace) -> int:
    from gateway import log

    environ = dict(os.environ)
    if args.workers is not None:
        environ["GATEWAY_WORKERS"] = args.workers
    try:
        settings = Settings.from_env(environ, host=args.host, port=args.port)
        if settings.workers != 1:
            from gateway.workers import supervise, worker_envs

            worker_envs(settings, environ, 1)  # refuses a cluster setting that cannot work
    except ConfigError as exc:
        print(f"realtime-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    if settings.workers != 1:
        try:
            return supervise(settings, environ)
        except ConfigError as exc:
            print(f"realtime-gateway: configuration error: {exc}", file=sys.stderr)
            return 2
    secrets = [s.reveal() for s in (settings.openai_api_key, settings.gateway_api_key) if s]
    from gateway.server.cluster import node_of

    log.configure(
        settings.log_level, settings.log_format, secrets, fields={"node": node_of(settings).name}
    )
    url = f"http://{settings.host}:{settings.port}"
    if settings.uses_emulator:
        # Printed, not logged: the log redactor would mask it, and in emulator mode it
        # guards nothing that costs money.
        print(
            f"realtime-gateway {__version__}: no OPENAI_API_KEY set, so calls go to the built-in "
            f"Realtime emulator (a test double, not a model).\n"
            f"  page:        {url}/\n"
            + (
                f"  gateway key: {settings.gateway_api_key.reveal()}  (generated for this run; "
                "set GATEWAY_API_KEY to fix it)\n"
                if settings.gateway_api_key_generated and settings.gateway_api_key
                else ""
            ),
            file=sys.stderr,
            flush=True,
        )
    from gateway.rtc.compat import IncompatibleStack

    try:
        asyncio.run(_run_gateway(settings))
    except IncompatibleStack as exc:
        print(f"realtime-gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Typically the port is taken; the message says which.
        print(f"realtime-gateway: cannot serve on {url}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


async def _run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, then drain: no new calls, live ones get up to the timeout."""
    import signal

    import structlog

    from gateway.server.app import create_app, drain
    from gateway.server.heads import GatewayRunner

    log = structlog.get_logger("gateway")
    app = create_app(settings)
    runner = GatewayRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        # Workers of one host share the port; the kernel spreads connections among them.
        shared = bool(settings.worker_group)
        site = web.TCPSite(runner, settings.host, settings.port, reuse_port=shared or None)
        await site.start()
        if settings.internal_port is not None:
            # Where this worker's siblings reach it alone (forwarded requests, scrapes).
            await web.TCPSite(runner, settings.host, settings.internal_port).start()
        log.info(
            "gateway.started",
            host=settings.host,
            port=settings.port,
            upstream="emulator" if settings.uses_emulator else "openai",
            media=settings.media,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await drain(app, settings.drain_timeout)
    finally:
        await runner.cleanup()
        log.info("gateway.stopped")


def _emulator(args: argparse.Namespace) -> int:
    from gateway import log
    from gateway.emulator import Emulator, EmulatorSettings

    log.configure("info", "auto", [args.api_key] if args.api_key else [])
    addresses = tuple(a.strip() for a in args.ice_addresses.split(",") if a.strip())

    async def run() -> None:
        emulator = Emulator(EmulatorSettings(ice_addresses=addresses, api_key=args.api_key))
        base = await emulator.start(args.host, args.port)
        print(f"Realtime emulator listening: OPENAI_BASE_URL={base}", file=sys.stderr, flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await emulator.aclose()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
