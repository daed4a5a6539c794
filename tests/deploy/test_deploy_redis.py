"""The start-up scripts of the compose and Kubernetes Redis, run for real (Debian's
redis-server): the password reaches Redis, and a missing one stops it with a message."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.deploy.support import K8S, load_yaml_all
from tests.deploy.test_deploy_compose import REQUIRED, compose
from tests.support.servers import REDIS, free_port, need

CONF = "/tmp/redis.conf"


def compose_redis() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["redis"]
    return service


def k8s_redis() -> dict[str, Any]:
    (deployment,) = [
        doc
        for doc in load_yaml_all(K8S / "redis.yaml")
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "realtime-gateway-redis"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = container
    return result


def local(script: str, conf: Path, port: int) -> str:
    """The script as the image runs it, but with its config file in a test directory and
    Redis on a free loopback port."""
    assert CONF in script and f"exec redis-server {CONF}" in script
    listen = f"--port {port} --bind 127.0.0.1"
    script = script.replace(f"exec redis-server {CONF}", f"exec redis-server {CONF} {listen}")
    return script.replace(CONF, str(conf))


async def run(script: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    need(REDIS, "redis-server")
    return await asyncio.create_subprocess_exec(
        "sh",
        "-c",
        script,
        env={"PATH": str(Path(REDIS or "").parent) + ":/usr/bin:/bin", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def answers(port: int, password: str | None) -> bool:
    # No retries: the caller polls while Redis starts.
    client = aioredis.Redis(
        host="127.0.0.1", port=port, password=password, retry=Retry(NoBackoff(), 0)
    )
    try:
        return bool(await client.ping())
    except redis.exceptions.AuthenticationError:
        return False
    except redis.exceptions.ResponseError as exc:  # NOAUTH
        assert "NOAUTH" in str(exc) or "auth" in str(exc).lower(), exc
        return False
    finally:
        await client.aclose()


async def started(process: asyncio.subprocess.Process, port: int, password: str) -> None:
    async with asyncio.timeout(10):
        while True:
            if process.returncode is not None:
                _, err = await process.communicate()
                pytest.fail(f"redis exited {process.returncode}: {err.decode()}")
            try:
                if await answers(port, password):
                    return
            except (ConnectionError, redis.exceptions.ConnectionError):
                pass
            await asyncio.sleep(0.05)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
    await asyncio.wait_for(process.communicate(), 10)


class TestComposeRedis:
    async def test_requires_the_password(self, tmp_path: Path) -> None:
        """Only with REDIS_PASSWORD; the healthcheck authenticates with it too."""
        service = compose_redis()
        script = service["entrypoint"][-1]
        password = REQUIRED["REDIS_PASSWORD"]
        port = free_port()
        process = await run(local(script, tmp_path / "redis.conf", port), service["environment"])
        try:
            await started(process, port, password)
            assert not await answers(port, None)
            assert not await answers(port, "wrong")
            check = service["healthcheck"]["test"]
            assert check[0] == "CMD-SHELL"
            if shutil.which("redis-cli"):
                health = await asyncio.create_subprocess_exec(
                    "sh",
                    "-c",
                    check[1].replace("redis-cli", f"redis-cli -p {port}"),
                    env=service["environment"],
                )
                assert await asyncio.wait_for(health.wait(), 10) == 0
        finally:
            await stop(process)
        assert (tmp_path / "redis.conf").stat().st_mode & 0o077 == 0  # umask 077

    async def test_refuses_to_start_without_a_password(self, tmp_path: Path) -> None:
        script = compose_redis()["entrypoint"][-1]
        process = await run(local(script, tmp_path / "redis.conf", free_port()), {})
        _, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 1
        assert "REDIS_PASSWORD" in err.decode()


class TestKubernetesRedis:
    def script(self) -> str:
        container = k8s_redis()
        assert container["command"] == ["sh", "-c"]
        (text,) = container["args"]
        result: str = text
        return result

    async def test_takes_the_password_from_the_gateways_url(self, tmp_path: Path) -> None:
        port = free_port()
        url = "redis://:s3cr3t0123456789@realtime-gateway-redis:6379/0"
        process = await run(
            local(self.script(), tmp_path / "redis.conf", port), {"GATEWAY_REDIS_URL": url}
        )
        try:
            await started(process, port, "s3cr3t0123456789")
            assert not await answers(port, None)
        finally:
            await stop(process)

    @pytest.mark.parametrize(
        "url",
        [
            "redis://:CHANGE-ME@realtime-gateway-redis:6379/0",
            "redis://realtime-gateway-redis:6379/0",
            "",
        ],
    )
    async def test_refuses_a_placeholder_or_no_password(self, tmp_path: Path, url: str) -> None:
        process = await run(
            local(self.script(), tmp_path / "redis.conf", free_port()), {"GATEWAY_REDIS_URL": url}
        )
        _, err = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 1
        assert "GATEWAY_REDIS_URL" in err.decode()

    def test_reads_the_url_from_the_gateways_secret(self) -> None:
        env = {e["name"]: e for e in k8s_redis()["env"]}
        ref = env["GATEWAY_REDIS_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "realtime-gateway", "key": "GATEWAY_REDIS_URL"}
