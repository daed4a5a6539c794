"""deploy/caddy/Caddyfile: the compose stack's TLS front, run for real (Debian's caddy) in front
of a stand-in backend that records what reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from tests.deploy.support import DEPLOY, PRIVATE_REQUESTS, PUBLIC_REQUESTS, tool
from tests.support.servers import free_port

CADDYFILE = DEPLOY / "caddy" / "Caddyfile"
CADDY_HINT = "apt-get install caddy"
# The product's global options block, where the test adds its own ports and storage.
GLOBAL_ANCHOR = "\tskip_install_trust\n"


def caddy(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("caddy", CADDY_HINT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def adapted(env: dict[str, str] | None = None) -> dict[str, object]:
    result = caddy("adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile", env=env)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout)
    return loaded


def site_hosts(config: dict[str, object]) -> list[str]:
    servers = config["apps"]["http"]["servers"]  # type: ignore[index]
    (server,) = servers.values()
    (route,) = server["routes"]
    (match,) = route["match"]
    hosts: list[str] = match["host"]
    return hosts


class TestCaddyfile:
    def test_is_formatted(self) -> None:
        """As `caddy fmt` writes it (Caddy warns at every start otherwise)."""
        result = caddy("fmt", str(CADDYFILE))
        assert result.returncode == 0, result.stderr
        assert result.stdout == CADDYFILE.read_text()

    def test_site_is_localhost_without_a_domain(self) -> None:
        """No GATEWAY_DOMAIN: https://localhost, a name only Caddy's local CA certifies."""
        env = {k: v for k, v in os.environ.items() if k != "GATEWAY_DOMAIN"}
        result = subprocess.run(
            [tool("caddy", CADDY_HINT), "adapt", "--config", str(CADDYFILE)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert site_hosts(json.loads(result.stdout)) == ["localhost"]

    def test_site_is_the_domain(self) -> None:
        assert site_hosts(adapted({"GATEWAY_DOMAIN": "gateway.example.com"})) == [
            "gateway.example.com"
        ]


@dataclass
class Front:
    """Caddy on loopback ports, proxying to a backend that records every request."""

    https_port: int
    http_port: int
    root_ca: Path
    # The site's name: what the client asks for (SNI, Host); Caddy listens on 127.0.0.1.
    site: str
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.root_ca))

    async def request(
        self, method: str, target: str, headers: dict[str, str] | None = None, *, tls: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """One request written byte for byte (no client-side path clean-up), over TLS to the
        site, its certificate verified against Caddy's local CA."""
        port = self.https_port if tls else self.http_port
        reader, writer = await asyncio.open_connection(
            "127.0.0.1",
            port,
            ssl=self.context() if tls else None,
            server_hostname=self.site if tls else None,
        )
        try:
            lines = [f"{method} {target} HTTP/1.1", f"Host: {self.site}", "Connection: close"]
            lines += ["Content-Length: 0"] if method in ("POST", "DELETE") else []
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        response_headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            response_headers[name.strip().lower()] = value.strip()
        return int(status_line.split()[1]), response_headers, body


@pytest.fixture
async def front(
    request: pytest.FixtureRequest, tmp_path: Path, aiohttp_server: AiohttpServer
) -> AsyncIterator[Front]:
    """Caddy for the site GATEWAY_DOMAIN=127.0.0.1, or (parametrized with "localhost") for
    the site it serves when GATEWAY_DOMAIN is unset."""
    binary = tool("caddy", CADDY_HINT)
    site = getattr(request, "param", "127.0.0.1")
    https_port, http_port = free_port(), free_port()
    storage = tmp_path / "caddy-storage"
    seen: list[tuple[str, str, dict[str, str]]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.method, request.raw_path, dict(request.headers)))
        return web.json_response({"backend": True}, headers={"X-Backend": "1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    backend = await aiohttp_server(app)

    text = CADDYFILE.read_text()
    assert GLOBAL_ANCHOR in text
    options = (
        f"{GLOBAL_ANCHOR}\tadmin off\n\thttp_port {http_port}\n\thttps_port {https_port}\n"
        f"\tstorage file_system {storage}\n"
    )
    config = tmp_path / "Caddyfile"
    config.write_text(text.replace(GLOBAL_ANCHOR, options, 1))
    log = tmp_path / "caddy.log"
    env = {
        **{k: v for k, v in os.environ.items() if k != "GATEWAY_DOMAIN"},
        **({} if site == "localhost" else {"GATEWAY_DOMAIN": site}),
        "CADDY_UPSTREAM": f"127.0.0.1:{backend.port}",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }
    with log.open("w") as output:
        process = await asyncio.create_subprocess_exec(
            binary,
            "run",
            "--config",
            str(config),
            "--adapter",
            "caddyfile",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=output,
        )
    result = Front(https_port, http_port, storage / "pki/authorities/local/root.crt", site, seen)
    try:
        async with asyncio.timeout(30):
            while True:
                if process.returncode is not None:
                    pytest.fail(f"caddy exited {process.returncode}: {log.read_text()[-3000:]}")
                if result.root_ca.exists():
                    with contextlib.suppress(OSError, ssl.SSLError):
                        await result.request("GET", "/readyz")
                        break
                await asyncio.sleep(0.1)
        seen.clear()
        yield result
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 15)


class TestFront:
    async def test_routes_only_the_public_api(self, front: Front) -> None:
        """The call API, the page and the probes reach the gateway unchanged; /metrics, the
        admin API, the sideband and every other path (dot segments and encoded ones included)
        get Caddy's 404 and never reach it."""
        wrong = []
        for method, target in PUBLIC_REQUESTS:
            front.seen.clear()
            status, headers, _ = await front.request(method, target)
            reached = [(m, p) for m, p, _ in front.seen]
            if status != 200 or headers.get("x-backend") != "1" or reached != [(method, target)]:
                wrong.append(f"public {method} {target}: {status}, backend saw {reached}")
        for method, target in PRIVATE_REQUESTS:
            front.seen.clear()
            status, _, body = await front.request(method, target)
            if status != 404 or front.seen:
                wrong.append(f"private {method} {target}: {status}, backend saw {front.seen}")
            elif method != "HEAD" and json.loads(body)["error"]["code"] != "not_found":
                wrong.append(f"private {method} {target}: body {body!r}")
        assert not wrong, "\n".join(wrong)

    async def test_sideband_websocket_is_not_routed(self, front: Front) -> None:
        status, _, _ = await front.request(
            "GET",
            "/v1/realtime?call_id=rtc_0123abcd",
            {
                "Upgrade": "websocket",
                "Connection": "Upgrade",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                "Authorization": "Bearer gk_not-the-point",
            },
        )
        assert status == 404 and not front.seen

    async def test_client_address_cannot_be_forged(self, front: Front) -> None:
        """The gateway trusts the front's X-Forwarded-For (GATEWAY_TRUSTED_PROXIES), so the
        front must write it from the connection and drop a client's own Forwarded header."""
        status, _, _ = await front.request(
            "POST",
            "/v1/realtime/calls",
            {"X-Forwarded-For": "203.0.113.7", "Forwarded": "for=203.0.113.8"},
        )
        assert status == 200
        ((_, _, headers),) = front.seen
        assert headers.get("X-Forwarded-For") == "127.0.0.1"
        assert "Forwarded" not in headers

    async def test_http_redirects_to_https(self, front: Front) -> None:
        status, headers, _ = await front.request("GET", "/", tls=False)
        assert status in (301, 308)
        assert headers["location"].startswith("https://127.0.0.1")
        assert not front.seen

    @pytest.mark.parametrize("front", ["localhost"], indirect=True)
    async def test_without_a_domain_serves_localhost_from_its_own_ca(self, front: Front) -> None:
        """GATEWAY_DOMAIN unset: https://localhost, certified by Caddy's local CA (the
        request verifies the certificate against that CA's root)."""
        status, headers, _ = await front.request("GET", "/healthz")
        assert status == 200 and headers.get("x-backend") == "1"
