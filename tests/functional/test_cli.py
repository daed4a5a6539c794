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
        assert "emulator" in text and "gateway key:  gk_" in text
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


async def refused(*args: str, **env: str) -> str:
    """Run ``realtime-gateway`` expecting a configuration error: one line on stderr, exit 2."""
    proc = await run(*args, env=clean_env(**env))
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2, (out + err).decode()[-2000:]
    lines = [line for line in err.decode().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err.decode(), err.decode()
    assert not out.strip()  # nothing else, no banner
    return lines[0]


class TestConfigurationMistakes:
    async def test_a_module_that_is_not_there(self) -> None:
        """GATEWAY_TOOLS naming a missing module: one line naming the setting."""
        line = await refused("serve", GATEWAY_TOOLS="not.a.module")
        assert "GATEWAY_TOOLS" in line and "not.a.module" in line

    async def test_hooks_that_do_not_exist(self) -> None:
        """GATEWAY_HOOKS naming a missing module: one line naming the setting."""
        line = await refused("serve", GATEWAY_HOOKS="nope:thing")
        assert "GATEWAY_HOOKS" in line and "nope" in line

    async def test_a_port_out_of_range_on_the_command_line(self) -> None:
        """--port 99999: the flag is named, with what is allowed."""
        line = await refused("serve", "--port", "99999")
        assert "--port" in line and "65535" in line and "99999" in line

    async def test_a_web_directory_that_does_not_exist(self) -> None:
        """GATEWAY_WEB_DIR=/nonexistent stops startup instead of serving 404s."""
        line = await refused("serve", GATEWAY_WEB_DIR="/nonexistent-page-dir")
        assert "GATEWAY_WEB_DIR" in line

    async def test_the_config_command_checks_too(self) -> None:
        """`config` refuses what `serve` would."""
        line = await refused("config", GATEWAY_MEDIA="loud")
        assert "GATEWAY_MEDIA" in line and "passthrough" in line

    async def test_a_flag_overrides_a_bad_variable(self) -> None:
        """A malformed GATEWAY_PORT does not matter when --port overrides it."""
        proc = await run("config", "--port", "8123", env=clean_env(GATEWAY_PORT="eighty"))
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()
        assert "8123" in out.decode()


class TestConfigCommand:
    async def test_prints_the_effective_settings_with_secrets_hidden(self) -> None:
        """Every setting with its value; keys and passwords never printed; a misspelt
        variable is pointed out with the closest real name."""
        key, redis_password = "sk-test-HIDDEN-0123456789", "r3d1s-pw-HIDDEN"
        proc = await run(
            "config",
            env=clean_env(
                OPENAI_API_KEY=key,
                GATEWAY_API_KEY="gk_hidden-value-123",
                GATEWAY_REDIS_URL=f"redis://:{redis_password}@127.0.0.1:6379/0",
                GATEWAY_PROT="9000",
            ),
        )
        out, err = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        assert proc.returncode == 0, err.decode()
        for hidden in (key, "gk_hidden-value-123", redis_password):
            assert hidden not in text + err.decode()
        assert "OPENAI_API_KEY" in text and "(set, hidden)" in text
        assert "GATEWAY_PORT" in text and "8080" in text
        assert "GATEWAY_PROT is not a setting" in err.decode()
        assert "did you mean GATEWAY_PORT?" in err.decode()


class TestHelp:
    async def test_serve_help_points_to_the_settings(self) -> None:
        """serve --help documents its flags and says where the other settings are."""
        proc = await run("serve", "--help", env=clean_env())
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        for flag in ("--host", "--port", "--workers"):
            assert flag in text
        assert "Configuration" in text and "gateway config" in " ".join(text.split())

    async def test_emulator_help_describes_every_flag(self) -> None:
        """emulator --help has a description for each flag."""
        proc = await run("emulator", "--help", env=clean_env())
        out, _ = await asyncio.wait_for(proc.communicate(), 20)
        text = out.decode()
        for flag in ("--host", "--port", "--ice-addresses", "--api-key"):
            line = next(line for line in text.splitlines() if line.strip().startswith(flag))
            described = line.split(flag, 1)[1].strip()
            assert described, f"{flag} has no description"
