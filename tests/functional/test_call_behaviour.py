"""Call-level behaviour with one WebRTC leg: a real browser peer, a real gateway, and a fake
upstream session (tests/support/fake_upstream.py) that the test scripts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from gateway.call import watch
from gateway.call.outcomes import OUTCOMES, EndReason, farewell_for, outcome_of
from gateway.config import Secret, Settings
from gateway.errors import UpstreamError
from gateway.metrics import OUTCOMES as METRIC_OUTCOMES
from gateway.server.app import create_app
from tests.functional.conftest import GATEWAY_KEY, LOOPBACK, mint, state_of
from tests.functional.fixtures.sample_hooks import Recorder
from tests.support.fake_upstream import FakeUpstreams, Script
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]
Gateway = tuple[Client, FakeUpstreams, CollectorRegistry]


@pytest.fixture(name="fake_gateway")
def _fake_gateway(aiohttp_client: AiohttpClient) -> Callable[..., Awaitable[Gateway]]:
    async def make(script: Script | None = None, **overrides: Any) -> Gateway:
        values: dict[str, Any] = {
            "openai_api_key": Secret("sk-test-not-used"),
            "gateway_api_key": Secret(GATEWAY_KEY),
            "ice_addresses": LOOPBACK,
        }
        values.update(overrides)
        fakes = FakeUpstreams(script or Script())
        registry = CollectorRegistry()
        app = create_app(Settings(**values), registry=registry, upstreams=fakes)
        return await aiohttp_client(app), fakes, registry

    return make


async def connect(client: Client, peers: list[TestPeer]) -> TestPeer:
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(
        client.session, str(client.make_url("/v1/realtime/calls")), await mint(client)
    )
    assert result.status == 201, result.body
    await peer.wait_open()
    await peer.next_event("session.created")
    return peer


async def until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110  # polled with a bound
            await asyncio.sleep(0.02)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class TestOutcomes:
    def test_every_end_reason_has_a_known_outcome(self) -> None:
        """Each end reason maps to one of the outcome labels the metrics export."""
        assert set(OUTCOMES) == set(METRIC_OUTCOMES)
        for reason in EndReason:
            assert outcome_of(reason) in METRIC_OUTCOMES

    def test_a_vanished_browser_is_gone_not_failed(self) -> None:
        """browser_vanished is a browser that went away (it once fell through to another
        branch)."""
        assert outcome_of(EndReason.BROWSER_VANISHED) == "browser_gone"
        assert farewell_for(EndReason.BROWSER_VANISHED) is None

    def test_unknown_leg_reasons_fall_back_to_closed(self) -> None:
        """A leg's unexpected end reason still maps to a typed reason."""
        assert EndReason.of_leg("upstream", "weird") is EndReason.UPSTREAM_CLOSED
        assert EndReason.of_leg("browser", None) is EndReason.BROWSER_CLOSED


class TestEnds:
    async def test_a_failing_pump_is_a_failed_call_and_the_browser_is_told(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """A fault inside the gateway ends the call as ``failed`` (not ``completed``), with an
        error event to the browser, and the upstream session hung up."""
        client, fakes, registry = await fake_gateway()
        peer = await connect(client, peers)
        fakes.script.send_raises = RuntimeError("a bug in the gateway")
        with capture_logs() as logs:
            peer.send({"type": "response.create"})
            error = await peer.next_event("error")
            await until(lambda: len(state_of(client).calls) == 0)
        assert error["error"]["code"] == "gateway_error"
        assert fakes.last.hung_up and fakes.last.closed
        assert sample(registry, "realtime_gateway_sessions_total", outcome="failed") == 1
        assert sample(registry, "realtime_gateway_sessions_total", outcome="completed") == 0
        ended = [e for e in logs if e["event"] == "call.ended"]
        assert ended[0]["outcome"] == "failed" and ended[0]["reason"] == "internal_error"
        assert any(e["event"] == "call.failed" for e in logs)

    async def test_the_upstream_vanishing_ends_the_call_with_a_farewell(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """The upstream's transport failing: upstream_error, and the browser is told why."""
        client, fakes, registry = await fake_gateway()
        peer = await connect(client, peers)
        fakes.last.vanish()
        error = await peer.next_event("error")
        assert error["error"]["code"] == "upstream_ended"
        await until(lambda: len(state_of(client).calls) == 0)
        assert sample(registry, "realtime_gateway_sessions_total", outcome="upstream_error") == 1

    async def test_a_silent_upstream_is_taken_for_gone(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """An upstream that sends no audio and no events for peer_timeout ends the call."""
        client, fakes, registry = await fake_gateway(Script(audio=False), peer_timeout=1.0)
        peer = await connect(client, peers)
        error = await peer.next_event("error", timeout=5)
        assert error["error"]["code"] == "upstream_ended"
        await until(lambda: len(state_of(client).calls) == 0)
        assert fakes.last.hung_up

    async def test_a_refused_session_is_a_clean_error(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """The upstream refusing the session: its error reaches the caller, nothing stays."""
        refusal = UpstreamError("Model not found.", upstream_status=400, code="model_not_found")
        client, fakes, _ = await fake_gateway(Script(refuse=refusal))
        peer = TestPeer()
        peers.append(peer)
        result = await peer.connect(
            client.session, str(client.make_url("/v1/realtime/calls")), await mint(client)
        )
        assert result.status == 502
        assert json.loads(result.body)["error"]["code"] == "model_not_found"
        assert fakes.last.closed
        assert len(state_of(client).calls) == 0


class TestFigures:
    async def test_the_jitter_gauge_is_the_highest_of_the_live_calls(
        self,
        fake_gateway: Callable[..., Awaitable[Gateway]],
        peers: list[TestPeer],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Two calls' upstream jitter: the gauge shows the higher, then the one left, then 0."""
        monkeypatch.setattr(watch, "STATS_INTERVAL", 0.05)
        client, fakes, registry = await fake_gateway()

        def upstream_jitter() -> float:
            return sample(registry, "realtime_gateway_audio_jitter_seconds", leg="upstream")

        fakes.script = Script(jitter=4800)  # 0.1 s at 48 kHz
        low = await connect(client, peers)
        fakes.script = Script(jitter=9600)
        high = await connect(client, peers)
        await until(lambda: upstream_jitter() == pytest.approx(0.2))
        await high.close()
        await until(lambda: upstream_jitter() == pytest.approx(0.1))
        await low.close()
        await until(lambda: upstream_jitter() == 0.0)

    async def test_dropped_messages_are_reported(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """Messages a leg dropped are in call.ended and in the metrics."""
        client, fakes, registry = await fake_gateway(Script(messages_dropped=3))
        peer = await connect(client, peers)
        with capture_logs() as logs:
            await peer.close()
            await until(lambda: len(state_of(client).calls) == 0)
        (ended,) = [e for e in logs if e["event"] == "call.ended"]
        assert ended["messages_dropped"] == {"browser": 0, "upstream": 3}
        assert sample(registry, "realtime_gateway_messages_dropped_total", leg="upstream") == 3


class TestRefusedSecretReuse:
    async def test_a_call_refused_for_a_reused_secret_fires_no_hooks(
        self,
        fake_gateway: Callable[..., Awaitable[Gateway]],
        peers: list[TestPeer],
        tmp_path: Path,
    ) -> None:
        """Two calls racing on one single-use secret: one runs; the other is refused (401)
        without starting hooks or a transcript, and its upstream session is hung up."""
        Recorder.instances.clear()
        client, fakes, registry = await fake_gateway(
            Script(connect_delay=0.3),
            hooks="tests.functional.fixtures.sample_hooks:Recorder",
            transcripts_dir=str(tmp_path),
        )
        token = await mint(client)
        url = str(client.make_url("/v1/realtime/calls"))
        first, second = TestPeer(), TestPeer()
        peers.extend([first, second])
        results = await asyncio.gather(
            first.connect(client.session, url, token), second.connect(client.session, url, token)
        )
        assert sorted(r.status for r in results) == [201, 401]
        winner = (first, second)[[r.status for r in results].index(201)]
        await winner.wait_open()
        (recorder,) = Recorder.instances
        assert len(recorder.started) == 1
        # The refused call's session is already hung up; the running one's is not.
        assert [f.hung_up and f.closed for f in fakes.made].count(True) == 1
        for peer in peers:
            await peer.close()
        await until(lambda: len(state_of(client).calls) == 0)
        assert len(recorder.ended) == 1
        assert len(list(tmp_path.iterdir())) == 1
        assert sample(registry, "realtime_gateway_sessions_total", outcome="rejected") == 1


class TestServerToolsWithoutASecondLeg:
    async def test_a_server_tool_runs_and_its_output_goes_upstream(
        self, fake_gateway: Callable[..., Awaitable[Gateway]], peers: list[TestPeer]
    ) -> None:
        """The upstream asks for a server tool: the gateway runs it, answers upstream, and the
        browser sees none of it."""
        client, fakes, _ = await fake_gateway(tools=("tests.functional.fixtures.sample_tools",))
        peer = await connect(client, peers)
        fake = fakes.last
        assert fake.session is not None
        names = [t["name"] for t in fake.session["tools"]]
        assert "lookup_order" in names
        fake.emit({"type": "response.created", "response": {"id": "resp_1"}})
        fake.emit(
            {
                "type": "response.function_call_arguments.done",
                "response_id": "resp_1",
                "item_id": "item_fc",
                "call_id": "call_1",
                "name": "lookup_order",
                "arguments": json.dumps({"order_id": "A-1"}),
            }
        )
        fake.emit({"type": "response.done", "response": {"id": "resp_1", "output": []}})
        output = await fake.next_sent("conversation.item.create")
        assert output["item"]["type"] == "function_call_output"
        assert output["item"]["call_id"] == "call_1"
        assert "shipped-7731" in output["item"]["output"]
        await fake.next_sent("response.create")
        await peer.next_event("response.done")
        assert not any("function_call" in json.dumps(e) for e in peer.events)
