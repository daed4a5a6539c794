"""The HTTP contract of POST /v1/realtime/calls and .../hangup, including every error status."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from aiortc import RTCConfiguration, RTCPeerConnection
from pytest_aiohttp import AiohttpClient

from gateway.emulator import Emulator, EmulatorSettings
from gateway.rtc import ice
from tests.emulator.helpers import TOKEN, EmulatorFactory, Running
from tests.support.peer import TestPeer

CALLS = "/v1/realtime/calls"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def make_offer(*, audio: bool = True, channel: bool = True) -> str:
    """A real aiortc offer, with or without its audio section and data channel."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        if channel:
            pc.createDataChannel("oai-events")
        if audio:
            pc.addTransceiver("audio", direction="sendrecv")
        offer = await pc.createOffer()
        with ice.host_addresses(("127.0.0.1",)):
            await pc.setLocalDescription(offer)
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def assert_openai_error(body: Any, code: str | None) -> None:
    """OpenAI's error shape: exactly message, type, code and param."""
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert isinstance(error["message"], str) and error["message"]
    assert error["code"] == code


async def post_sdp(
    client: TestClient[Any, Any], body: Any, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    sent = {**AUTH, "Content-Type": "application/sdp", **(headers or {})}
    response: aiohttp.ClientResponse = await client.post(CALLS, data=body, headers=sent)
    return response


@pytest.fixture(name="emulator")
def _emulator() -> Emulator:
    return Emulator(EmulatorSettings(api_key=TOKEN, record_events=True))


@pytest.fixture(name="client")
async def _client(aiohttp_client: AiohttpClient, emulator: Emulator) -> TestClient[Any, Any]:
    """The emulator's app served by aiohttp's test client: no start(); shutdown ends calls."""
    return await aiohttp_client(emulator.app)


class TestCreateCall:
    async def test_raw_sdp_offer_is_answered_201(
        self, client: TestClient[Any, Any], emulator: Emulator
    ) -> None:
        """201, application/sdp answer with its candidates, Location of the new call."""
        offer = await make_offer()
        response = await post_sdp(client, offer, {"OpenAI-Beta": "realtime=v1"})
        assert response.status == 201
        assert response.headers["Content-Type"] == "application/sdp"
        location = response.headers["Location"]
        assert re.fullmatch(r"/v1/realtime/calls/rtc_[0-9a-f]{32}", location)
        answer = await response.text()
        assert answer.startswith("v=0")
        assert "a=candidate:" in answer and " 127.0.0.1 " in answer
        call = emulator.calls[location.rsplit("/", 1)[1]]
        assert call.request_kind == "sdp"
        assert call.initial_session is None
        assert "Authorization" not in call.request_headers
        assert TOKEN not in str(dict(call.request_headers))
        assert call.request_headers["openai-beta"] == "realtime=v1"

    async def test_multipart_offer_with_session(
        self, peer: TestPeer, http: aiohttp.ClientSession, running: Running
    ) -> None:
        """The multipart session is merged into session.created; the model stays honest."""
        session = {"type": "realtime", "model": "gpt-realtime", "instructions": "Be brief."}
        result = await peer.connect(http, running.calls_url, TOKEN, multipart_session=session)
        assert result.status == 201
        assert result.headers["Content-Type"] == "application/sdp"
        await peer.wait_open()
        created = (await peer.next_event("session.created"))["session"]
        assert created["instructions"] == "Be brief."
        assert created["model"] == "realtime-emulator"
        assert result.call_id is not None
        call = running.emulator.calls[result.call_id]
        assert call.request_kind == "multipart"
        assert call.initial_session == session

    async def test_multipart_session_needs_type_realtime(
        self, peer: TestPeer, http: aiohttp.ClientSession, running: Running
    ) -> None:
        result = await peer.connect(
            http, running.calls_url, TOKEN, multipart_session={"instructions": "x"}
        )
        assert result.status == 400
        assert result.call_id is None
        assert running.emulator.calls == {}

    async def test_a_session_nested_too_deep_is_a_400_not_a_500(
        self, peer: TestPeer, http: aiohttp.ClientSession, running: Running
    ) -> None:
        deep: list[object] = []
        for _ in range(500):  # deep enough to break the emulator's recursive merge
            deep = [deep]
        result = await peer.connect(
            http, running.calls_url, TOKEN, multipart_session={"type": "realtime", "tools": deep}
        )
        assert result.status == 400 and "nested too deeply" in result.body
        assert running.emulator.calls == {}


class TestErrors:
    @pytest.mark.parametrize(
        "headers",
        [
            {},
            {"Authorization": "Basic abc"},
            {"Authorization": "Bearer "},
            {"Authorization": "Bearer sk-wrong"},
        ],
    )
    async def test_missing_or_wrong_key_is_401(
        self, client: TestClient[Any, Any], headers: dict[str, str]
    ) -> None:
        sent = {"Content-Type": "application/sdp", **headers}
        response = await client.post(CALLS, data=await make_offer(), headers=sent)
        assert response.status == 401
        body = await response.json()
        assert_openai_error(body, "invalid_api_key")
        assert "sk-wrong" not in body["error"]["message"]

    async def test_any_bearer_token_without_a_configured_key(
        self, http: aiohttp.ClientSession, running: Running
    ) -> None:
        headers = {"Authorization": "Bearer anything", "Content-Type": "application/sdp"}
        async with http.post(running.calls_url, data=await make_offer(), headers=headers) as r:
            assert r.status == 201

    async def test_other_content_type_is_415(self, client: TestClient[Any, Any]) -> None:
        headers = {**AUTH, "Content-Type": "application/json"}
        response = await client.post(CALLS, data=b'{"sdp": "v=0"}', headers=headers)
        assert response.status == 415
        assert_openai_error(await response.json(), "unsupported_content_type")

    @pytest.mark.parametrize("chunked", [False, True])
    async def test_body_over_64_kib_is_413(
        self, client: TestClient[Any, Any], chunked: bool
    ) -> None:
        """Refused by Content-Length, or while reading when the body is chunked."""
        big = b"v=0\r\n" + b"a=x\r\n" * 14_000

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        response = await post_sdp(client, chunks() if chunked else big)
        assert response.status == 413
        assert_openai_error(await response.json(), "payload_too_large")

    @pytest.mark.parametrize("case", ["garbage", "no_audio", "no_datachannel", "unusable"])
    async def test_bad_offers_are_400(
        self, client: TestClient[Any, Any], emulator: Emulator, case: str
    ) -> None:
        """inspect_offer refuses the first three; aiortc refuses an offer with no ICE ufrag."""
        if case == "garbage":
            body = "hello, I am not SDP"
        elif case == "unusable":
            offer = await make_offer()
            body = "\r\n".join(line for line in offer.split("\r\n") if "ice-ufrag" not in line)
        else:
            body = await make_offer(audio=case != "no_audio", channel=case != "no_datachannel")
        response = await post_sdp(client, body)
        assert response.status == 400
        assert_openai_error(await response.json(), "invalid_offer")
        assert emulator.calls == {}

    async def test_unknown_route_and_method_are_openai_shaped(
        self, client: TestClient[Any, Any]
    ) -> None:
        response = await client.post("/v1/nope", headers=AUTH)
        assert response.status == 404
        assert_openai_error(await response.json(), None)
        response = await client.get(CALLS, headers=AUTH)
        assert response.status == 405
        assert_openai_error(await response.json(), None)

    async def test_no_new_calls_once_closed(
        self, client: TestClient[Any, Any], emulator: Emulator
    ) -> None:
        await emulator.aclose()
        response = await post_sdp(client, await make_offer())
        assert response.status == 503
        assert_openai_error(await response.json(), "unavailable")

    async def test_reject_next_call_answers_once(
        self, client: TestClient[Any, Any], emulator: Emulator
    ) -> None:
        error = {
            "message": "quota",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
            "param": None,
        }
        emulator.reject_next_call(429, error)
        response = await post_sdp(client, await make_offer())
        assert response.status == 429
        assert await response.json() == {"error": error}
        response = await post_sdp(client, await make_offer())
        assert response.status == 201


class TestHangup:
    async def test_unknown_call_is_404(self, client: TestClient[Any, Any]) -> None:
        response = await client.post(f"{CALLS}/rtc_nope/hangup", headers=AUTH)
        assert response.status == 404
        assert_openai_error(await response.json(), "call_id_not_found")

    async def test_hangup_needs_the_key(self, client: TestClient[Any, Any]) -> None:
        response = await client.post(f"{CALLS}/rtc_nope/hangup")
        assert response.status == 401

    async def test_hangup_ends_the_call(
        self, peer: TestPeer, http: aiohttp.ClientSession, start_emulator: EmulatorFactory
    ) -> None:
        """200; the call is over (ended, hung_up, reason) and the peer sees it close."""
        running = await start_emulator(EmulatorSettings(api_key=TOKEN, record_events=True))
        result = await peer.connect(http, running.calls_url, TOKEN)
        await peer.wait_open()
        assert result.call_id is not None
        url = f"{running.calls_url}/{result.call_id}/hangup"
        async with http.post(url, headers=AUTH) as response:
            assert response.status == 200
        call = running.emulator.calls[result.call_id]
        assert call.ended.is_set()
        assert call.hung_up and call.end_reason == "hangup"
        await peer.wait_closed()
        async with http.post(url, headers=AUTH) as response:
            assert response.status == 200  # hanging up an ended call is harmless
