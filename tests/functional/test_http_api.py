"""The browser-facing HTTP API: OpenAI's shapes, statuses and errors, and CORS."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.emulator import Emulator
from tests.functional.conftest import GATEWAY_KEY, GatewayFactory, mint, state_of
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
AUTH = {"Authorization": f"Bearer {GATEWAY_KEY}"}


async def offer_sdp() -> str:
    peer = TestPeer()
    try:
        return await peer.create_offer()
    finally:
        await peer.close()


async def assert_error(response: aiohttp.ClientResponse, status: int, code: str | None) -> None:
    assert response.status == status, await response.text()
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "code", "param"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


class TestClientSecrets:
    async def test_mint(self, gateway: Client) -> None:
        """The reply is OpenAI's: value (ek_), expires_at, and the resolved session."""
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            json={
                "expires_after": {"anchor": "created_at", "seconds": 120},
                "session": {"type": "realtime", "instructions": "Hi"},
            },
            headers=AUTH,
        )
        assert response.status == 200
        body = await response.json()
        assert body["value"].startswith("ek_")
        assert isinstance(body["expires_at"], int)
        assert body["session"]["instructions"] == "Hi"
        assert body["session"]["model"] == "gpt-realtime"

    @pytest.mark.parametrize(
        ("headers", "code"),
        [
            ({}, "missing_api_key"),
            ({"Authorization": "Bearer nope"}, "invalid_api_key"),
            ({"Authorization": "Basic abc"}, "missing_api_key"),
        ],
    )
    async def test_needs_the_gateway_key(
        self, gateway: Client, headers: dict[str, str], code: str
    ) -> None:
        """Only the app's backend (gateway key) mints."""
        response = await gateway.post("/v1/realtime/client_secrets", json={}, headers=headers)
        await assert_error(response, 401, code)

    async def test_a_client_secret_cannot_mint(self, gateway: Client) -> None:
        """A browser holding an ek_ cannot mint more."""
        token = await mint(gateway)
        response = await gateway.post(
            "/v1/realtime/client_secrets", json={}, headers={"Authorization": f"Bearer {token}"}
        )
        await assert_error(response, 401, "invalid_api_key")

    async def test_no_gateway_key_no_minting(self, make_gateway: GatewayFactory) -> None:
        """With a real OpenAI key and no GATEWAY_API_KEY, nothing can be minted."""
        gateway = await make_gateway(gateway_api_key=None)
        response = await gateway.post("/v1/realtime/client_secrets", json={}, headers=AUTH)
        await assert_error(response, 401, "gateway_key_not_configured")

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ("{", 400),
            ('{"expires_after":{"seconds":1}}', 400),
            ('{"session":{"type":"chat"}}', 400),
        ],
    )
    async def test_bad_bodies(self, gateway: Client, body: str, status: int) -> None:
        """Malformed bodies get a 400 naming the problem."""
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            data=body,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        await assert_error(response, status, None)


class TestCalls:
    async def _post(self, gateway: Client, body: Any, token: str, ctype: str) -> Any:
        return await gateway.post(
            "/v1/realtime/calls",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": ctype},
        )

    async def test_auth_errors(self, gateway: Client) -> None:
        """Missing, unknown and reused client secrets are 401s."""
        sdp = await offer_sdp()
        response = await gateway.post(
            "/v1/realtime/calls", data=sdp, headers={"Content-Type": "application/sdp"}
        )
        await assert_error(response, 401, "missing_api_key")
        response = await self._post(gateway, sdp, "ek_notarealtoken123", "application/sdp")
        await assert_error(response, 401, "invalid_api_key")

    async def test_single_use_secret(self, gateway: Client, peers: list[TestPeer]) -> None:
        """A client secret opens one call; the second attempt is refused."""
        token = await mint(gateway)
        url = str(gateway.make_url("/v1/realtime/calls"))
        first, second = TestPeer(), TestPeer()
        peers += [first, second]
        assert (await first.connect(gateway.session, url, token)).status == 201
        result = await second.connect(gateway.session, url, token)
        assert result.status == 401

    async def test_a_bad_offer_does_not_burn_the_secret(
        self, gateway: Client, peers: list[TestPeer]
    ) -> None:
        """A refused offer leaves the single-use secret usable."""
        token = await mint(gateway)
        response = await self._post(gateway, "v=0\r\n", token, "application/sdp")
        await assert_error(response, 400, "invalid_offer")
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
        )
        assert result.status == 201

    @pytest.mark.parametrize(
        ("mutate", "needle"),
        [
            (lambda sdp: "garbage", "v=0"),
            (lambda sdp: sdp.split("m=application")[0], "no data channel"),
            (lambda sdp: _drop_audio(sdp), "no audio"),
        ],
    )
    async def test_bad_offers(self, gateway: Client, mutate: Any, needle: str) -> None:
        """Unparseable offers, and offers without audio or a data channel, are 400s."""
        token = await mint(gateway)
        response = await self._post(gateway, mutate(await offer_sdp()), token, "application/sdp")
        await assert_error(response, 400, "invalid_offer")
        assert needle in (await response.json())["error"]["message"]

    async def test_too_large(self, gateway: Client) -> None:
        """Bodies over the SDP limit are 413s."""
        token = await mint(gateway)
        response = await self._post(
            gateway, "v=0\r\n" + "a=x\r\n" * 20000, token, "application/sdp"
        )
        await assert_error(response, 413, "payload_too_large")

    async def test_wrong_content_type(self, gateway: Client) -> None:
        """Only application/sdp and multipart/form-data are accepted."""
        token = await mint(gateway)
        response = await self._post(gateway, "{}", token, "application/json")
        await assert_error(response, 415, "unsupported_content_type")

    async def test_multipart_with_gateway_key(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """The server-to-server flow: multipart sdp + session with the gateway key."""
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            gateway.session,
            str(gateway.make_url("/v1/realtime/calls")),
            GATEWAY_KEY,
            multipart_session={"type": "realtime", "instructions": "From the backend."},
        )
        assert result.status == 201
        await peer.wait_open()
        (call,) = emulator.calls.values()
        assert call.initial_session is not None
        assert call.initial_session["instructions"] == "From the backend."

    async def test_multipart_without_sdp(self, gateway: Client) -> None:
        """A multipart body without an sdp part is a 400 naming the parameter."""
        form = aiohttp.FormData()
        form.add_field("session", "{}", content_type="application/json")
        response = await gateway.post("/v1/realtime/calls", data=form, headers=AUTH)
        await assert_error(response, 400, "missing_required_parameter")
        assert (await response.json())["error"]["param"] == "sdp"

    @pytest.mark.parametrize(
        ("upstream_status", "error", "status", "code"),
        [
            (
                429,
                {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                    "param": None,
                },
                429,
                "insufficient_quota",
            ),
            (
                401,
                {
                    "message": "Incorrect API key provided: sk-abc***xyz",
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                },
                502,
                "upstream_auth_failed",
            ),
            (
                400,
                {
                    "message": "Invalid value: 'robot'. Supported values are: 'marin'.",
                    "type": "invalid_request_error",
                    "code": "invalid_value",
                    "param": "session.audio.output.voice",
                },
                400,
                "invalid_value",
            ),
            (
                500,
                {"message": "The server had an error", "type": "server_error"},
                502,
                "upstream_error",
            ),
        ],
    )
    async def test_upstream_refusals(
        self,
        gateway: Client,
        emulator: Emulator,
        upstream_status: int,
        error: dict[str, Any],
        status: int,
        code: str,
    ) -> None:
        """Upstream errors come back OpenAI-shaped with a status the browser can act on."""
        emulator.reject_next_call(upstream_status, error)
        token = await mint(gateway)
        response = await self._post(gateway, await offer_sdp(), token, "application/sdp")
        await assert_error(response, status, code)
        assert "sk-abc" not in await response.text()
        assert len(state_of(gateway).calls) == 0

    async def test_unreachable_upstream(self, make_gateway: GatewayFactory) -> None:
        """An upstream that is not there is a 502, not a hang or a traceback."""
        gateway = await make_gateway(openai_base_url="http://127.0.0.1:9/v1")
        token = await mint(gateway)
        response = await self._post(gateway, await offer_sdp(), token, "application/sdp")
        await assert_error(response, 502, "upstream_unreachable")


def _drop_audio(sdp: str) -> str:
    head, _, rest = sdp.partition("m=audio")
    _, _, app = rest.partition("m=application")
    return head + "m=application" + app


class TestMisc:
    async def test_unknown_route_is_openai_shaped(self, gateway: Client) -> None:
        """Even aiohttp's own 404/405 leave as OpenAI-shaped errors."""
        await assert_error(await gateway.get("/v1/nothing"), 404, "not_found")
        await assert_error(
            await gateway.get("/v1/realtime/client_secrets"), 405, "method_not_allowed"
        )

    async def test_unknown_call_hangup(self, gateway: Client) -> None:
        """Hanging up an unknown call is a 404."""
        response = await gateway.post("/v1/realtime/calls/rtc_nope/hangup", headers=AUTH)
        await assert_error(response, 404, "not_found")

    async def test_healthz(self, gateway: Client) -> None:
        """Health answers without auth."""
        response = await gateway.get("/healthz")
        assert response.status == 200 and (await response.json()) == {"status": "ok"}


class TestCors:
    async def test_preflight_allows_openai_sdk_headers(self, gateway: Client) -> None:
        """The preflight of OpenAI's browser SDK is answered and Location is exposed."""
        response = await gateway.options(
            "/v1/realtime/calls",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-openai-agents-sdk",
            },
        )
        assert response.status == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        allowed = response.headers["Access-Control-Allow-Headers"].lower()
        for header in ("authorization", "content-type", "x-openai-agents-sdk"):
            assert header in allowed
        assert "POST" in response.headers["Access-Control-Allow-Methods"]

    async def test_errors_carry_cors_headers(self, gateway: Client) -> None:
        """A cross-origin caller can read the error body."""
        response = await gateway.post(
            "/v1/realtime/calls", headers={"Origin": "https://app.example"}
        )
        assert response.status == 401
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert response.headers["Access-Control-Expose-Headers"] == "Location"

    async def test_allowlist(self, make_gateway: GatewayFactory) -> None:
        """With an allowlist, listed origins are echoed and others refused."""
        gateway = await make_gateway(cors_origins=("https://good.example",))
        ok = await gateway.options(
            "/v1/realtime/calls",
            headers={"Origin": "https://good.example", "Access-Control-Request-Method": "POST"},
        )
        assert ok.status == 204
        assert ok.headers["Access-Control-Allow-Origin"] == "https://good.example"
        assert "Origin" in ok.headers.get("Vary", "")
        bad = await gateway.options(
            "/v1/realtime/calls",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        await assert_error(bad, 403, "origin_not_allowed")
        bad_post = await gateway.post(
            "/v1/realtime/client_secrets",
            json={},
            headers={**AUTH, "Origin": "https://evil.example"},
        )
        await assert_error(bad_post, 403, "origin_not_allowed")
