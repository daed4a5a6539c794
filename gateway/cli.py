"""``realtime-gateway``: ``serve`` runs the gateway; ``emulator`` runs the emulator alone."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from gateway import __version__
from gateway.config import ConfigError, Settings

# The flags that stand for a setting, and its variable.
FLAGS = (("host", "GATEWAY_HOST"), ("port", "GATEWAY_PORT"), ("workers", "GATEWAY_WORKERS"))
SETTINGS_HINT = (
    "Everything else is set by environment variables (GATEWAY_*, OPENAI_API_KEY, "
    "OPENAI_BASE_URL): the README's Configuration table describes each; `realtime-gateway "
    "config` prints the effective values."
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realtime-gateway",
        description="A WebRTC relay gateway for OpenAI's voice APIs: browsers call it as they "
        "would call OpenAI; it relays to OpenAI, or to a built-in emulator without a key.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve",
        help="run the gateway (on the built-in emulator if OPENAI_API_KEY is unset)",
        description="Run the gateway until SIGTERM/SIGINT, then drain its calls.",
        epilog=SETTINGS_HINT,
    )
    serve.add_argument(
        "--host", help="address to listen on (GATEWAY_HOST; default 127.0.0.1, 0.0.0.0: all)"
    )
    serve.add_argument("--port", help="port to listen on (GATEWAY_PORT; default 8080)")
    serve.add_argument(
        "--workers",
        help="worker processes sharing the port, or 'auto' for one per CPU (GATEWAY_WORKERS; "
        "default 1; more than one needs GATEWAY_REDIS_URL)",
    )
    config = commands.add_parser(
        "config",
        help="check the configuration and print the effective settings (secrets hidden)",
        description="Read the settings as `serve` would, print each with its effective value "
        "(secrets hidden), and exit: 0 if they are usable, 2 if not.",
        epilog=SETTINGS_HINT,
    )
    config.add_argument("--host", help="as for serve")
    config.add_argument("--port", help="as for serve")
    config.add_argument("--workers", help="as for serve")
    emulator = commands.add_parser(
        "emulator",
        help="run the Realtime emulator on its own (an OpenAI stand-in for tests)",
        description="Serve OpenAI's WebRTC call API (POST /v1/realtime/calls, hangup) with a "
        "test double that answers each turn with your own voice; point a gateway's "
        "OPENAI_BASE_URL at it.",
    )
    emulator.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    emulator.add_argument("--port", type=int, default=8090, help="port (default 8090)")
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
        help="measure the gateway: added latency, CPU and memory per call (needs "
        "realtime-gateway-bench)",
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
    if args.command == "config":
        return _config(args)
    return _emulator(args)


def _environ(args: argparse.Namespace) -> dict[str, str]:
    """The environment, with command-line flags in place of the variables they override (so
    a flag is checked exactly as its variable is, and a bad variable it overrides is moot)."""
    environ = dict(os.environ)
    for flag, name in (
        ("host", "GATEWAY_HOST"),
        ("port", "GATEWAY_PORT"),
        ("workers", "GATEWAY_WORKERS"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            environ[name] = str(value)
    return environ


def _settings(environ: dict[str, str]) -> Settings:
    """Settings, checked as far as can be before serving; ConfigError names what is wrong."""
    from gateway.config.names import unknown

    for name, close in unknown(environ):
        hint = f"; did you mean {close}?" if close else ""
        print(
            f"realtime-gateway: warning: {name} is not a setting and is ignored{hint}",
            file=sys.stderr,
        )
    settings = Settings.from_env(environ)
    if settings.web_dir is not None and not os.path.isdir(settings.web_dir):
        raise ConfigError(
            f"GATEWAY_WEB_DIR is not a directory: {settings.web_dir!r} (unset it to serve the "
            "built-in page)"
        )
    if settings.recordings_dir is not None:
        from gateway.recording.service import prepare_directory

        try:
            prepare_directory(Path(settings.recordings_dir))
        except OSError as exc:
            raise ConfigError(
                f"GATEWAY_RECORDINGS_DIR cannot hold recordings: {settings.recordings_dir!r} "
                f"({exc.strerror or exc})"
            ) from None
    if settings.workers != 1:
        from gateway.workers import worker_envs

        worker_envs(settings, environ, 1)  # refuses a cluster setting that cannot work
    return settings


def _refuse(error: Exception, args: argparse.Namespace | None = None) -> int:
    message = str(error)
    for flag, name in (
        ("host", "GATEWAY_HOST"),
        ("port", "GATEWAY_PORT"),
        ("workers", "GATEWAY_WORKERS"),
    ):
        if args is not None and getattr(args, flag, None) is not None:
            message = message.replace(name, f"--{flag}")
    print(f"realtime-gateway: configuration error: {message}", file=sys.stderr)
    return 2


def _config(args: argparse.Namespace) -> int:
    from gateway.config.names import describe

    try:
        settings = _settings(_environ(args))
        from gateway.server.app import services_from

        services_from(settings)  # tools and hooks import
    except ConfigError as exc:
        return _refuse(exc, args)
    width = max(len(name) for name, _ in describe(settings))
    for name, value in describe(settings):
        print(f"{name.ljust(width)}  {value}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from gateway import log
    from gateway.banner import banner
    from gateway.rtc.compat import IncompatibleStack
    from gateway.server.cluster import node_of, primary_address

    environ = _environ(args)
    try:
        settings = _settings(environ)
        if settings.workers != 1:
            from gateway.server.app import services_from
            from gateway.workers import supervise, worker_count

            services_from(settings)  # tools and hooks import, before any worker starts
            print(banner(settings, workers=worker_count(settings)), file=sys.stderr, flush=True)
            return supervise(settings, environ)
        from gateway.server.app import create_app

        app = create_app(settings)
    except (ConfigError, IncompatibleStack) as exc:
        return _refuse(exc, args)
    secrets = [s.reveal() for s in (settings.openai_api_key, settings.gateway_api_key) if s]
    if settings.redis_url is not None:
        secrets.append(settings.redis_url.reveal())
    log.configure(
        settings.log_level, settings.log_format, secrets, fields={"node": node_of(settings).name}
    )
    if not settings.worker_group:  # a worker's supervisor has said it all
        print(banner(settings, primary_address=primary_address()), file=sys.stderr, flush=True)
    try:
        asyncio.run(_run_gateway(settings, app))
    except OSError as exc:
        # Typically the port is taken; the message says which.
        print(
            f"realtime-gateway: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


async def _run_gateway(settings: Settings, app: web.Application) -> None:
    """Serve until SIGTERM/SIGINT, then drain: no new calls, live ones get up to the timeout."""
    import signal

    import structlog

    from gateway.server.app import drain, reload_on_signal
    from gateway.server.heads import GatewayRunner

    log = structlog.get_logger("gateway")
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
        loop.add_signal_handler(signal.SIGHUP, lambda: reload_on_signal(app))
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
