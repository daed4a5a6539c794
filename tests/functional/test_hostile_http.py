"""Regressions for what the fuzz found (tests/fuzz/FINDINGS.md): each answered 500, leaked a
key into the logs, or hung, before its fix."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
import logging
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.config import Secret
from gateway.log import RedactingFilter
from gateway.server.app import create_app
from gateway.server.heads import HEADS, GatewayRunner
from tests.functional.conftest import (
    GATEWAY_KEY,
    GatewayFactory,
    gateway_settings,
    mint,
)

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}
ICE = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\na=setup:actpass\r\n"
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=rtcp-mux\r\na=rtpmap:8 PCMA/8000\r\n"
APP = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"

UNANSWERABLE = {
    "no_direction": "v=0\r\n" + AUDIO + ICE + APP + ICE,
    "duplicate_mid": "v=0\r\n"
    + AUDIO
    + "a=sendrecv\r\na=mid:0\r\n"
    + ICE
    + AUDIO
    + "a=sendrecv\r\na=mid:0\r\n"
    + ICE
    + APP
    + "a=mid:1\r\n"
    + ICE,
    "two_data_channels": "v=0\r\n"
    + AUDIO
    + "a=sendrecv\r\n"
    + ICE
    + APP
    + ICE
    + APP
    + "a=mid:x\r\n"
    + ICE,
    "bundle_mismatch": "v=0\r\na=group:BUNDLE 0 1\r\n"
    + AUDIO
    + "a=sendrecv\r\na=mid:1\r\n"
    + ICE
    + APP
    + ICE,
}


def secrets_head(host: str, *headers: str) -> bytes:
    """The head of a raw ``POST /v1/realtime/client_secrets`` with the gateway key, JSON."""
    lines = (
        "POST /v1/realtime/client_secrets HTTP/1.1",
        f"Host: {host}",
        f"Authorization: Bearer {GATEWAY_KEY}",
        "Content-Type: application/json",
        *headers,
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cli_app() -> web.Application:
    return create_app(gateway_settings("unused", openai_api_key=None))  # its own emulator


@contextlib.asynccontextmanager
async def served_as_the_cli_serves(app: web.Application) -> AsyncIterator[tuple[str, int]]:
    """``app`` on loopback as ``realtime-gateway serve`` runs it: aiohttp's test server cancels a
    handler whose client left (production lets it finish) and has no head deadline."""
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


async def shaped(response: Any, status: int) -> dict[str, Any]:
    assert response.status == status, await response.text()
    body: dict[str, Any] = await response.json()
    assert set(body["error"]) == {"message", "type", "code", "param"}
    return body


@pytest.mark.parametrize("name", sorted(UNANSWERABLE))
async def test_offers_aiortc_cannot_answer_are_400(gateway: Client, name: str) -> None:
    """F1: offers aiortc parses but cannot answer get a 400 without Python internals."""
    response = await gateway.post(
        "/v1/realtime/calls",
        data=UNANSWERABLE[name],
        headers={**AUTH, "Content-Type": "application/sdp"},
    )
    body = await shaped(response, 400)
    assert body["error"]["code"] == "invalid_offer"
    assert "NoneType" not in body["error"]["message"]


async def test_deeply_nested_json_is_400(gateway: Client) -> None:
    """F2/F3: JSON nested past Python's recursion limit is a 400, on both minting endpoints."""
    deep = "[" * 5000 + "]" * 5000
    for path in ("/v1/realtime/client_secrets", "/v1/realtime/sessions"):
        response = await gateway.post(
            path, data=deep, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert response.status == 400, path
    nested = '{"a":' * 900 + "1" + "}" * 900
    response = await gateway.post(
        "/v1/realtime/sessions", data=nested, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status in (200, 400)


async def test_body_not_matching_its_encoding_is_400(gateway: Client) -> None:
    """F6: a body that is not the gzip it claims is a 400, not a 500."""
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    # aiohttp drops a connection whose body was broken, so this request closes its own.
    response = await gateway.post(
        "/v1/realtime/client_secrets",
        data=b"not gzip at all",
        headers={**headers, "Connection": "close"},
    )
    assert response.status == 400
    response = await gateway.post(
        "/v1/realtime/client_secrets", data=gzip.compress(b"{}"), headers=headers
    )
    assert response.status == 200


@pytest.mark.parametrize(
    "part_header",
    ["Content-Disposition form-data\r\n", "Content-\x01Disposition: form-data; name=sdp\r\n"],
)
async def test_malformed_multipart_is_400(gateway: Client, part_header: str) -> None:
    """F10/F11: a multipart body aiohttp cannot parse is a 400."""
    body = ("--b\r\n" + part_header + "\r\n" + "v=0\r\n" * 3000).encode()  # no closing boundary
    response = await gateway.post(
        "/v1/realtime/calls",
        data=body,
        headers={**AUTH, "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert 400 <= response.status < 500


async def test_errors_carry_security_headers(gateway: Client) -> None:
    """F12: error responses get the hardening headers too."""
    response = await gateway.post("/v1/realtime/calls")
    assert response.status == 401
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


async def test_trickling_body_times_out(gateway: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """F7: a body that never finishes arriving is answered 408, not held forever."""
    from gateway.server import body as body_module

    monkeypatch.setattr(body_module, "READ_DEADLINE", 0.5)
    token = await mint(gateway)
    host, port = gateway.server.host, gateway.server.port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        (
            f"POST /v1/realtime/calls HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/sdp\r\n"
            "Transfer-Encoding: chunked\r\n\r\n5\r\nv=0\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    await writer.wait_closed()
    assert b" 408 " in head


def test_stdlib_log_records_are_redacted() -> None:
    """F9: aiohttp's own log lines (a refused request quoted back) lose their secrets."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter([Secret(GATEWAY_KEY).reveal()]))
    logger = logging.getLogger("aiohttp.server.test")
    logger.addHandler(handler)
    try:
        try:
            raise ValueError(f"Bad request line: Authorization: Bearer {GATEWAY_KEY}")
        except ValueError:
            logger.exception("Error handling request %s", f"Bearer {GATEWAY_KEY} ek_abcdefgh12")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert GATEWAY_KEY not in text and "ek_abcdefgh12" not in text
    assert "Error handling request" in text and "ValueError" in text


async def test_static_file_errors_are_shaped(gateway: Client) -> None:
    """F4: a missing file, a failed If-Match and a bad Range no longer answer an empty body."""
    for path in ("/static/nope.js", "/static/..%5cpyproject.toml", "/static/../pyproject.toml"):
        body = await shaped(await gateway.get(path), 404)
        assert body["error"]["code"] == "not_found", path
    response = await gateway.get("/static/app.js", headers={"If-Match": '"x"'})
    assert (await shaped(response, 412))["error"]["code"] == "precondition_failed"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    whole = await gateway.get("/static/app.js")
    assert whole.status == 200 and whole.content_type == "text/javascript"
    # Range is ignored (RFC 9110 allows it): the whole file, never an empty 416.
    ranged = await gateway.get("/static/app.js", headers={"Range": "bytes=99999999-"})
    assert ranged.status == 200 and await ranged.read() == await whole.read()


async def test_static_files_are_cached_by_etag(gateway: Client) -> None:
    first = await gateway.get("/")
    etag = first.headers["ETag"]
    assert first.status == 200 and "<html" in (await first.text()).lower()
    again = await gateway.get("/", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert (await gateway.get("/", headers={"If-Match": etag})).status == 200
    head = await gateway.head("/static/style.css")
    assert head.status == 200 and head.content_type == "text/css"


async def test_only_plain_files_under_the_web_root_are_served(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    root = tmp_path / "web"
    (root / "ui").mkdir(parents=True)
    (root / "index.html").write_text("<html>page</html>")
    (root / "ui" / "a.js").write_text("export const a = 1;")
    (root / ".env").write_text("OPENAI_API_KEY=sk-secret")
    (tmp_path / "outside.txt").write_text("outside")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    (root / "inner.js").symlink_to(root / "ui" / "a.js")
    (root / "dirlink").symlink_to(tmp_path)
    client = await make_gateway(web_dir=str(root))
    for path in ("/static/ui/a.js", "/static/inner.js"):
        assert await (await client.get(path)).text() == "export const a = 1;"
    refused = ("/.env", "/link.txt", "/dirlink/outside.txt", "/index.html/", "/ui", "/ui/")
    for path in refused:
        await shaped(await client.get("/static" + path), 404)


async def test_unknown_expectation_is_a_shaped_417(gateway: Client) -> None:
    """F5: aiohttp answers an Expect it does not know before any middleware; still shaped."""
    response = await gateway.post(
        "/v1/realtime/client_secrets",
        data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Expect": "junk"},
    )
    body = await shaped(response, 417)
    assert body["error"]["code"] == "expectation_failed"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    response = await gateway.post(
        "/v1/realtime/client_secrets",
        data=b"{}",
        headers={**AUTH, "Content-Type": "application/json", "Expect": "100-continue"},
    )
    assert response.status == 200


async def test_client_leaving_mid_body_is_not_a_server_error() -> None:
    """F8: a client that hangs up halfway through its body is its own problem, not a 500.

    Served as ``realtime-gateway serve`` does: aiohttp's test server cancels a handler whose
    client left, production lets it finish, and finishing is what this is about.
    """
    async with served_as_the_cli_serves(cli_app()) as (host, port):
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                secrets_head(host, "Content-Length: 5000") + b'{"session": {"instructions": "'
            )
            await writer.drain()
            await asyncio.sleep(0.1)  # the handler is reading the body now
            writer.close()
            await writer.wait_closed()
        async with aiohttp.ClientSession(f"http://{host}:{port}") as http:
            route = 'route="/v1/realtime/client_secrets"'
            counted: list[str] = []
            for _ in range(50):  # the server notices the hang-ups asynchronously
                async with http.get("/metrics") as response:
                    text = await response.text()
                counted = [line for line in text.splitlines() if route in line and "_total" in line]
                if sum(float(line.split()[-1]) for line in counted) >= 3:
                    break
                await asyncio.sleep(0.1)
            assert counted == [
                route.join(("realtime_gateway_http_requests_total{", ',status="400"} 3.0'))
            ]
            async with http.post("/v1/realtime/client_secrets", json={}, headers=AUTH) as response:
                assert response.status == 200


async def test_compressed_bodies_are_inflated_by_the_gateway(gateway: Client) -> None:
    """F13: a deflate stream cut short or followed by junk is the gateway's own 400, at once,
    however the body arrives; whole gzip/deflate bodies (zlib-wrapped or raw) still work."""
    headers = {**AUTH, "Content-Type": "application/json"}
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    for coding, body in (
        ("gzip", gzip.compress(b"{}")),
        ("deflate", zlib.compress(b"{}")),
        ("deflate", raw.compress(b"{}") + raw.flush()),
        ("identity", b"{}"),
    ):
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            data=body,
            headers={**headers, "Content-Encoding": coding},
        )
        assert response.status == 200, (coding, await response.text())
    broken = {
        "cut short": zlib.compress(b"{}")[:-4],
        "junk after the stream": zlib.compress(b"{}") + b"junk",
        "not deflate": b"x",
    }
    host, port = gateway.server.host, gateway.server.port
    for name, body in broken.items():
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            secrets_head(host, "Content-Encoding: deflate", f"Content-Length: {len(body)}")
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # headers first, as over any real network
        writer.write(body)
        head = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        await writer.wait_closed()
        assert head.startswith(b"HTTP/1.1 400 ") and b'"invalid_body"' in head, (name, head)
    response = await gateway.post(
        "/v1/realtime/client_secrets", data=b"{}", headers={**headers, "Content-Encoding": "br"}
    )
    assert (await shaped(response, 415))["error"]["code"] == "unsupported_content_encoding"


async def test_a_compression_bomb_is_refused_by_its_inflated_size(gateway: Client) -> None:
    """The body limit counts what a compressed body inflates to, not what was sent."""
    bomb = gzip.compress(b'{"session": {"instructions": "' + b"a" * 10_000_000 + b'"}}')
    assert len(bomb) < 64 * 1024
    response = await gateway.post(
        "/v1/realtime/client_secrets",
        data=bomb,
        headers={**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    await shaped(response, 413)


async def test_cors_answers_carry_security_headers(make_gateway: GatewayFactory) -> None:
    """F14: a refused Origin's 403 and a preflight's 204 get the hardening headers too."""
    client = await make_gateway(cors_origins=("https://app.example",))
    refused = await client.get("/healthz", headers={"Origin": "https://evil.example"})
    preflight = await client.options(
        "/v1/realtime/calls",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert (refused.status, preflight.status) == (403, 204)
    for response in (refused, preflight):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Cache-Control"] == "no-store"


async def test_deeply_nested_sessions_are_refused_up_front(gateway: Client) -> None:
    """F15: a session no real client sends (hundreds of levels deep) is a 400 at minting and
    on a call, not an upstream failure (502) once the call is dialled."""
    deep = {"type": "realtime", "tools": json.loads("[" * 300 + "]" * 300)}
    response = await gateway.post(
        "/v1/realtime/client_secrets", json={"session": deep}, headers=AUTH
    )
    body = await shaped(response, 400)
    assert body["error"]["param"] == "session"
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("sdp", "v=0\r\n")
    form.add_field("session", json.dumps(deep))
    response = await gateway.post("/v1/realtime/calls", data=form, headers=AUTH)
    assert (await shaped(response, 400))["error"]["param"] == "session"
    nested_tool = {
        "type": "realtime",
        "tools": [{"type": "function", "parameters": {"a": [[[1]]]}}],
    }
    response = await gateway.post(
        "/v1/realtime/client_secrets", json={"session": nested_tool}, headers=AUTH
    )
    assert response.status == 200


async def test_a_head_that_never_ends_is_cut_off() -> None:
    """F16: a connection that sends no head, or half of one, is closed at the head deadline;
    a request being handled (its body still arriving) is not."""
    app = cli_app()
    app[HEADS].timeout = 0.5
    async with served_as_the_cli_serves(app) as (host, port):
        heads = {
            "nothing": b"",
            "half a head": b"POST /v1/realtime/calls HTTP/1.1\r\nHost: x\r\n",
        }
        for name, head in heads.items():
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(head)
            await writer.drain()
            assert await asyncio.wait_for(reader.read(), 5) == b"", name  # closed, unanswered
            writer.close()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(secrets_head(host, "Content-Length: 2"))
        await writer.drain()
        await asyncio.sleep(1.0)  # twice the head deadline, inside the request
        writer.write(b"{}")
        status = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        assert status.startswith(b"HTTP/1.1 200 "), status
        assert app[HEADS].closed == 2


async def test_a_request_aiohttp_cannot_parse_is_answered_in_openai_shape() -> None:
    """A request line or header past the parser's limits, or one that is not HTTP, is refused
    before any handler runs: still an OpenAI-shaped 400 that quotes nothing of the request."""
    app = cli_app()
    async with served_as_the_cli_serves(app) as (host, port):
        requests = {
            "long request line": f"GET /v1/realtime/calls/{'a' * 10_000}/content HTTP/1.1\r\n"
            f"Host: {host}\r\n\r\n",
            "long header": f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Big: {'b' * 9000}\r\n\r\n",
            "not a method": "GE(T / HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        for name, raw in requests.items():
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw.encode())
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            head, _, body = answer.partition(b"\r\n\r\n")
            # (HTTP/1.0: the request's own version could not be read.)
            assert head.split(b" ", 2)[1] == b"400", (name, head[:80])
            assert b"application/json" in head and b"nosniff" in head, name
            error = json.loads(body)["error"]
            assert set(error) == {"message", "type", "code", "param"}, name
            assert error["type"] == "invalid_request_error", name
            assert b"aaaa" not in body and b"bbbb" not in body, name
        # The process serves on.
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 ")
        writer.close()
