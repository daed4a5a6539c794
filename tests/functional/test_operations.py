"""What operators see: /metrics in real Prometheus text, readiness, capacity, drain, call logs."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from gateway.emulator import Emulator
from gateway.server.app import drain
from tests.functional.conftest import (
    GATEWAY_KEY,
    OPENAI_KEY,
    GatewayFactory,
    mint,
    state_of,
)
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]


async def scrape(gateway: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed by prometheus_client's own text parser."""
    response = await gateway.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def open_call(gateway: Client, peers: list[TestPeer]) -> tuple[TestPeer, str, str]:
    token = await mint(gateway)
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(gateway.session, str(gateway.make_url("/v1/realtime/calls")), token)
    assert result.status == 201, result.body
    await peer.wait_open()
    return peer, token, result.headers["Location"].rsplit("/", 1)[1]


class TestMetrics:
    async def test_a_call_shows_up_in_metrics(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Sessions, events, audio, tokens, setup and HTTP requests are all counted."""
        peer, token, call_id = await open_call(gateway, peers)
        await peer.next_event("session.created")
        during = await scrape(gateway)
        assert value(during, "realtime_gateway_sessions_active") == 1
        peer.mic.say(0.6)
        await peer.next_event("response.done", timeout=10)
        await peer.next_event("output_audio_buffer.stopped", timeout=10)
        response = await gateway.post(
            f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status == 200
        after = await scrape(gateway)
        assert value(after, "realtime_gateway_sessions_active") == 0
        assert value(after, "realtime_gateway_sessions_total", outcome="completed") == 1
        assert value(after, "realtime_gateway_session_duration_seconds_count") == 1
        assert (
            value(
                after, "realtime_gateway_events_total", direction="server", type="session.created"
            )
            == 1
        )
        assert (
            value(after, "realtime_gateway_events_total", direction="server", type="response.done")
            >= 1
        )
        assert value(after, "realtime_gateway_event_bytes_total", direction="server") > 100
        assert (
            value(after, "realtime_gateway_audio_packets_total", leg="browser", direction="in") > 20
        )
        assert (
            value(after, "realtime_gateway_audio_packets_total", leg="browser", direction="out")
            > 20
        )
        assert (
            value(after, "realtime_gateway_audio_packets_total", leg="upstream", direction="in")
            > 20
        )
        assert (
            value(
                after,
                "realtime_gateway_tokens_total",
                app="default",
                model="other",
                kind="input_audio",
            )
            > 0
        )
        assert (
            value(
                after,
                "realtime_gateway_tokens_total",
                app="default",
                model="other",
                kind="output_audio",
            )
            > 0
        )
        for stage in ("upstream_sdp", "answer", "browser_connected", "first_upstream_audio"):
            assert value(after, "realtime_gateway_setup_seconds_count", stage=stage) == 1, stage
        assert (
            value(
                after,
                "realtime_gateway_http_requests_total",
                route="/v1/realtime/calls",
                status="201",
            )
            == 1
        )
        assert value(after, "realtime_gateway_capacity_calls") == 100

    async def test_unknown_event_types_are_one_label(
        self, gateway: Client, peers: list[TestPeer]
    ) -> None:
        """Event types outside the documented set are counted as 'other', keeping labels bounded."""
        peer, _, _ = await open_call(gateway, peers)
        for i in range(3):
            peer.send({"type": f"made.up.{i}"})
        for _ in range(3):
            await peer.next_event("error")  # one per refused event: all three were counted
        samples = await scrape(gateway)
        assert (
            value(samples, "realtime_gateway_events_total", direction="client", type="other") == 3
        )
        assert not [k for k in samples if "made.up" in str(k)]

    async def test_rejections_and_secrets(self, gateway: Client, emulator: Emulator) -> None:
        """A refused call is counted; no key appears anywhere in the metrics text."""
        emulator.reject_next_call(500, {"message": "boom", "type": "server_error"})
        token = await mint(gateway)
        peer = TestPeer()
        try:
            result = await peer.connect(
                gateway.session, str(gateway.make_url("/v1/realtime/calls")), token
            )
        finally:
            await peer.close()
        assert result.status == 502
        text = await (await gateway.get("/metrics")).text()
        assert 'realtime_gateway_sessions_total{outcome="rejected"} 1.0' in text
        assert 'realtime_gateway_upstream_errors_total{kind="upstream_error"} 1.0' in text
        assert OPENAI_KEY not in text and GATEWAY_KEY not in text and token not in text


class TestReadinessAndCapacity:
    async def test_at_capacity(self, make_gateway: GatewayFactory, peers: list[TestPeer]) -> None:
        """At GATEWAY_MAX_CALLS, readiness is false and new calls get 503 + Retry-After."""
        gateway = await make_gateway(max_calls=1)
        ready = await gateway.get("/readyz")
        assert ready.status == 200 and (await ready.json())["status"] == "ready"
        await open_call(gateway, peers)
        busy = await gateway.get("/readyz")
        assert busy.status == 503 and (await busy.json())["status"] == "at_capacity"
        token = await mint(gateway)
        refused = await gateway.post(
            "/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "2"
        assert (await refused.json())["error"]["code"] == "at_capacity"
        assert (await gateway.get("/healthz")).status == 200


class TestDrain:
    async def test_drain_ends_calls_after_the_grace_period(
        self, gateway: Client, emulator: Emulator, peers: list[TestPeer]
    ) -> None:
        """Draining refuses new calls, waits, then ends live ones with an error event."""
        peer, _, _ = await open_call(gateway, peers)
        await peer.next_event("session.created")
        draining = asyncio.ensure_future(drain(gateway.app, grace=1.0))
        await asyncio.sleep(0.1)
        ready = await gateway.get("/readyz")
        assert ready.status == 503 and (await ready.json())["status"] == "draining"
        token = await mint(gateway)
        refused = await gateway.post(
            "/v1/realtime/calls",
            data="v=0\r\n",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert refused.status == 503 and refused.headers["Retry-After"] == "5"
        assert len(state_of(gateway).calls) == 1  # still live during the grace period
        await asyncio.wait_for(draining, 10)
        error = await peer.next_event("error")
        assert error["error"]["code"] == "gateway_shutdown"
        (upstream,) = emulator.calls.values()
        assert upstream.hung_up
        samples = await scrape(gateway)
        assert value(samples, "realtime_gateway_sessions_total", outcome="shutdown") == 1
        assert value(samples, "realtime_gateway_draining") == 1

    async def test_drain_finishes_early_when_calls_end(
        self, gateway: Client, peers: list[TestPeer]
    ) -> None:
        """A call that ends during the grace period lets the drain finish at once."""
        peer, token, call_id = await open_call(gateway, peers)
        draining = asyncio.ensure_future(drain(gateway.app, grace=30.0))
        await gateway.post(
            f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
        )
        await asyncio.wait_for(draining, 5)
        samples = await scrape(gateway)
        assert value(samples, "realtime_gateway_sessions_total", outcome="completed") == 1


class TestCallLog:
    async def test_one_summary_line_per_call(self, gateway: Client, peers: list[TestPeer]) -> None:
        """call.ended carries ids, outcome, duration, event counts, tokens and audio."""
        with capture_logs() as logs:
            peer, token, call_id = await open_call(gateway, peers)
            peer.send(
                {
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "hi"}],
                    },
                }
            )
            peer.send({"type": "response.create"})
            await peer.next_event("response.done", timeout=10)
            await gateway.post(
                f"/v1/realtime/calls/{call_id}/hangup", headers={"Authorization": f"Bearer {token}"}
            )
        ended = [entry for entry in logs if entry["event"] == "call.ended"]
        assert len(ended) == 1
        line = ended[0]
        assert line["call_id"] == call_id
        assert line["upstream_call_id"].startswith("rtc_")
        assert line["outcome"] == "completed" and line["reason"] == "hangup"
        assert line["client_events"] == 2 and line["server_events"] > 5
        assert line["tokens"]["output_audio"] > 0
        assert set(line["audio_dropped"]) == {"to_browser", "to_upstream"}
        assert all(token not in str(entry) and OPENAI_KEY not in str(entry) for entry in logs)


class TestAdmin:
    async def test_live_calls_are_listed_for_the_gateway_key_only(
        self, gateway: Client, peers: list[TestPeer]
    ) -> None:
        """GET /v1/realtime/calls lists live calls with age, state, events and usage."""
        peer, token, call_id = await open_call(gateway, peers)
        await peer.next_event("session.created")
        auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
        listing = await (await gateway.get("/v1/realtime/calls", headers=auth)).json()
        assert [c["id"] for c in listing["data"]] == [call_id]
        one = await (await gateway.get(f"/v1/realtime/calls/{call_id}", headers=auth)).json()
        assert one["upstream_call_id"].startswith("rtc_")
        assert one["state"]["browser"] == "connected"
        assert one["events"]["server"] >= 1
        browser = {"Authorization": f"Bearer {token}"}
        assert (await gateway.get("/v1/realtime/calls", headers=browser)).status == 401
        missing = await gateway.get("/v1/realtime/calls/rtc_nope", headers=auth)
        assert missing.status == 404
