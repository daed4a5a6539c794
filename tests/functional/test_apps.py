"""Apps: several gateway keys, each an app with its own limits; and what each call cost.

A real gateway in front of the emulator, real aiortc browsers on loopback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient
from structlog.testing import capture_logs

from gateway.config.apps import read_apps_file
from gateway.emulator import Emulator, EmulatorCall, EmulatorSettings
from gateway.pricing import PUBLISHED, Price, Usage, cost
from gateway.server.app import create_app
from gateway.server.apps import reload_apps
from tests.functional.conftest import (
    GATEWAY_KEY,
    LOOPBACK,
    OPENAI_KEY,
    GatewayFactory,
    gateway_settings,
    state_of,
)
from tests.functional.fixtures.sample_hooks import Recorder
from tests.functional.test_cli import clean_env, free_port, refused, run
from tests.functional.test_http_api import assert_error
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]

SUPPORT_KEY = "gk_support_7f3e9a1c5b2d4e6f"
SALES_KEY = "gk_sales_1a2b3c4d5e6f7a8b9c"
OPS_KEY = "gk_ops_9e8d7c6b5a4f3e2d1c"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


TWO_APPS = f"""
[apps.support]
key_sha256 = "{sha(SUPPORT_KEY)}"
max_calls = 1

[apps.sales]
key = "{SALES_KEY}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "apps.toml"
    path.write_text(text)
    return path


def with_apps(path: Path) -> dict[str, Any]:
    """The settings GATEWAY_APPS=path makes (as Settings.from_env reads them)."""
    return {"apps_file": str(path), "apps_config": read_apps_file(str(path))}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def mint(client: Client, key: str, **body: Any) -> str:
    response = await client.post("/v1/realtime/client_secrets", json=body, headers=auth(key))
    assert response.status == 200, await response.text()
    return str((await response.json())["value"])


async def call(
    client: Client, peers: list[TestPeer], token: str, **options: Any
) -> tuple[TestPeer, int, str]:
    """A browser (or backend) call with ``token``: the peer, the status, and the call id (the
    error body if refused)."""
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(
        client.session, str(client.make_url("/v1/realtime/calls")), token, **options
    )
    if result.status != 201:
        return peer, result.status, result.body
    # Connected before the test goes on: a peer closed while still connecting can leave
    # aiortc's RTCP tasks behind for a moment.
    await peer.wait_open()
    return peer, result.status, result.headers["Location"].rsplit("/", 1)[-1]


async def hangup(client: Client, call_id: str, key: str) -> None:
    response = await client.post(f"/v1/realtime/calls/{call_id}/hangup", headers=auth(key))
    assert response.status == 200


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


class TestKeys:
    async def test_each_key_authenticates_as_its_app(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """Two apps from a file and the single key: each key mints and calls as its own app,
        which the admin listing and call.ended name; no key shows anywhere."""
        gateway = await make_gateway(**with_apps(write(tmp_path, TWO_APPS)))
        with capture_logs() as logs:
            _, status, support_call = await call(gateway, peers, await mint(gateway, SUPPORT_KEY))
            assert status == 201, support_call
            _, status, sales_call = await call(gateway, peers, SALES_KEY)
            assert status == 201, sales_call
            _, status, default_call = await call(gateway, peers, await mint(gateway, GATEWAY_KEY))
            assert status == 201, default_call
            listing = await gateway.get("/v1/realtime/calls", headers=auth(GATEWAY_KEY))
            apps = {view["id"]: view["app"] for view in (await listing.json())["data"]}
            assert apps == {support_call: "support", sales_call: "sales", default_call: "default"}
            for call_id in (support_call, sales_call, default_call):
                await hangup(gateway, call_id, GATEWAY_KEY)
        ended = {e["call_id"]: e["app"] for e in logs if e["event"] == "call.ended"}
        assert ended == {support_call: "support", sales_call: "sales", default_call: "default"}
        minted = [e["app"] for e in logs if e["event"] == "client_secret.minted"]
        assert minted == ["support", "default"]
        text = json.dumps(logs, default=str) + json.dumps(await listing.json())
        for secret in (SUPPORT_KEY, SALES_KEY, GATEWAY_KEY, sha(SUPPORT_KEY)):
            assert secret not in text

    async def test_a_wrong_key_is_a_401_in_openais_shape(
        self, make_gateway: GatewayFactory, tmp_path: Path
    ) -> None:
        """A key of no app, or an app's key with one character changed: 401 invalid_api_key."""
        gateway = await make_gateway(**with_apps(write(tmp_path, TWO_APPS)))
        for key in ("gk_nobody_0000000000000000", SALES_KEY[:-1] + "X", sha(SUPPORT_KEY)):
            response = await gateway.post("/v1/realtime/client_secrets", json={}, headers=auth(key))
            await assert_error(response, 401, "invalid_api_key")
            assert key not in await response.text()

    async def test_an_app_sees_only_its_own_calls(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """One app's key cannot list, look up, hang up or attach a sideband to another app's
        call (the same 404 as no call); the single key, the operator's, reaches every app's."""
        gateway = await make_gateway(**with_apps(write(tmp_path, TWO_APPS)))
        _, status, support_call = await call(gateway, peers, SUPPORT_KEY)
        assert status == 201
        _, status, sales_call = await call(gateway, peers, SALES_KEY)
        assert status == 201

        async def listed(key: str) -> set[str]:
            response = await gateway.get("/v1/realtime/calls", headers=auth(key))
            return {view["id"] for view in (await response.json())["data"]}

        assert await listed(SALES_KEY) == {sales_call}
        assert await listed(SUPPORT_KEY) == {support_call}
        assert await listed(GATEWAY_KEY) == {support_call, sales_call}
        response = await gateway.get(f"/v1/realtime/calls/{support_call}", headers=auth(SALES_KEY))
        await assert_error(response, 404, "not_found")
        response = await gateway.post(
            f"/v1/realtime/calls/{support_call}/hangup", headers=auth(SALES_KEY)
        )
        await assert_error(response, 404, "not_found")
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
            await gateway.ws_connect(
                f"/v1/realtime?call_id={support_call}", headers=auth(SALES_KEY)
            )
        assert refused_ws.value.status == 404
        async with gateway.ws_connect(
            f"/v1/realtime?call_id={support_call}", headers=auth(SUPPORT_KEY)
        ):
            pass
        assert state_of(gateway).calls.find(support_call) is not None
        await hangup(gateway, support_call, GATEWAY_KEY)

    async def test_apps_without_the_single_key(
        self, make_gateway: GatewayFactory, tmp_path: Path
    ) -> None:
        """GATEWAY_APPS alone: the apps' keys work, and there is no 'default' app to guess."""
        gateway = await make_gateway(gateway_api_key=None, **with_apps(write(tmp_path, TWO_APPS)))
        await mint(gateway, SALES_KEY)
        response = await gateway.post(
            "/v1/realtime/client_secrets", json={}, headers=auth(GATEWAY_KEY)
        )
        await assert_error(response, 401, "invalid_api_key")


class TestLimits:
    async def test_max_calls_is_per_app(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """support has max_calls = 1: its second call (key or secret) is a 429 in OpenAI's
        shape, sales goes on calling, and support may call again once its call ended."""
        gateway = await make_gateway(**with_apps(write(tmp_path, TWO_APPS)))
        secret = await mint(gateway, SUPPORT_KEY)
        spare = await mint(gateway, SUPPORT_KEY)
        _, status, first = await call(gateway, peers, secret)
        assert status == 201
        for token in (spare, SUPPORT_KEY):
            peer = TestPeer()
            peers.append(peer)
            offer = await peer.create_offer()
            response = await gateway.post(
                "/v1/realtime/calls",
                data=offer,
                headers={**auth(token), "Content-Type": "application/sdp"},
            )
            await assert_error(response, 429, "rate_limit_exceeded")
            assert (await response.json())["error"]["type"] == "rate_limit_error"
            assert "support" in (await response.json())["error"]["message"]
            assert response.headers["Retry-After"] == "2"
        _, status, other = await call(gateway, peers, SALES_KEY)
        assert status == 201, other
        _, status, also = await call(gateway, peers, await mint(gateway, SALES_KEY))
        assert status == 201, also
        await hangup(gateway, first, SUPPORT_KEY)
        await until(lambda: state_of(gateway).app_calls("support") == 0)
        peer, status, again = await call(gateway, peers, spare)  # a refused call spends no secret
        assert status == 201, again
        await peer.wait_open()
        assert state_of(gateway).app_pending == {}

    async def test_calls_per_minute_is_per_app(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """An app's calls_per_minute holds its backend too (the single key's calls are not
        rate-limited)."""
        text = f'[apps.support]\nkey = "{SUPPORT_KEY}"\ncalls_per_minute = 1\n'
        gateway = await make_gateway(**with_apps(write(tmp_path, text)))
        _, status, _ = await call(gateway, peers, SUPPORT_KEY)
        assert status == 201
        peer = TestPeer()
        peers.append(peer)
        response = await gateway.post(
            "/v1/realtime/calls",
            data=await peer.create_offer(),
            headers={**auth(SUPPORT_KEY), "Content-Type": "application/sdp"},
        )
        await assert_error(response, 429, "rate_limit_exceeded")

    async def test_models_voices_and_session_defaults(
        self,
        make_gateway: GatewayFactory,
        emulator: Emulator,
        peers: list[TestPeer],
        tmp_path: Path,
    ) -> None:
        """An app's allowed models and voices are checked when a secret is minted and when a
        call opens; its session defaults reach the upstream; its locks hold the browser."""
        text = f"""
[apps.support]
key = "{SUPPORT_KEY}"
models = ["gpt-realtime-mini"]
voices = ["cedar"]

[apps.support.session]
model = "gpt-realtime-mini"
instructions = "Support desk."
audio = {{ output = {{ voice = "cedar" }} }}
"""
        gateway = await make_gateway(**with_apps(write(tmp_path, text)))
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            json={"session": {"type": "realtime", "model": "gpt-realtime"}},
            headers=auth(SUPPORT_KEY),
        )
        await assert_error(response, 400, "invalid_value")
        assert (await response.json())["error"]["param"] == "session.model"
        response = await gateway.post(
            "/v1/realtime/client_secrets",
            json={"session": {"type": "realtime", "audio": {"output": {"voice": "marin"}}}},
            headers=auth(SUPPORT_KEY),
        )
        await assert_error(response, 400, "invalid_value")
        secret = await mint(gateway, SUPPORT_KEY)
        # The browser asks for another voice at call setup: the app's lock removes it.
        peer, status, call_id = await call(
            gateway, peers, secret, multipart_session={"audio": {"output": {"voice": "marin"}}}
        )
        assert status == 201, call_id
        await peer.wait_open()
        (upstream,) = emulator.calls.values()
        assert upstream.initial_session is not None
        assert upstream.initial_session["instructions"] == "Support desk."
        assert upstream.initial_session["audio"]["output"]["voice"] == "cedar"
        # The backend itself is held to the list too.
        _, status, body = await call(
            gateway, peers, SUPPORT_KEY, multipart_session={"model": "gpt-realtime"}
        )
        assert status == 400 and "gpt-realtime-mini" in body


class TestReload:
    async def test_a_broken_file_keeps_the_old_apps(
        self, make_gateway: GatewayFactory, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """The reload SIGHUP runs: a broken file is refused with one line (static event, the
        reason, no key) and every old key still works; a good file then takes effect for new
        requests, while a call already running goes on."""
        path = write(tmp_path, TWO_APPS)
        gateway = await make_gateway(**with_apps(path))
        state = state_of(gateway)
        peer, status, running = await call(gateway, peers, SALES_KEY)
        assert status == 201
        await peer.wait_open()
        sales_secret = await mint(gateway, SALES_KEY)
        broken = (
            f'[apps.support]\nkey = "{SUPPORT_KEY}"\n[apps.ops]\nkey = "{OPS_KEY}"\nmax_call = 2\n'
        )
        for text in (broken, f'[apps.x]\nkey = "{SUPPORT_KEY}"\n[apps.y]\nkey = "{SUPPORT_KEY}"\n'):
            path.write_text(text)
            with capture_logs() as logs:
                assert await reload_apps(state) is False
            (line,) = [e for e in logs if e["event"] == "apps.reload_refused"]
            assert line["log_level"] == "error" and "GATEWAY_APPS" in line["reason"]
            assert SUPPORT_KEY not in json.dumps(logs) and OPS_KEY not in json.dumps(logs)
            await mint(gateway, SUPPORT_KEY)
            await mint(gateway, SALES_KEY)
        path.write_bytes(b"\x00" * 10)
        assert await reload_apps(state) is False
        path.unlink()
        assert await reload_apps(state) is False
        await mint(gateway, SALES_KEY)

        # A good file: ops is in, sales is out (its key, and the secret it minted).
        write(tmp_path, f'[apps.support]\nkey = "{SUPPORT_KEY}"\n[apps.ops]\nkey = "{OPS_KEY}"\n')
        with capture_logs() as logs:
            assert await reload_apps(state) is True
        assert [e["apps"] for e in logs if e["event"] == "apps.reloaded"] == [3]
        await mint(gateway, OPS_KEY)
        response = await gateway.post(
            "/v1/realtime/client_secrets", json={}, headers=auth(SALES_KEY)
        )
        await assert_error(response, 401, "invalid_api_key")
        _, status, body = await call(gateway, peers, sales_secret)
        assert status == 401 and "no longer configured" in body
        # support's max_calls = 1 is gone with the old file.
        for _ in range(2):
            _, status, _ = await call(gateway, peers, SUPPORT_KEY)
            assert status == 201
        assert state.calls.find(running) is not None  # the call of the removed app goes on


class TestCost:
    async def test_tokens_and_cost_by_app_match_usage_times_price(
        self, aiohttp_client: AiohttpClient, peers: list[TestPeer], tmp_path: Path
    ) -> None:
        """An upstream that is gpt-realtime: /metrics holds, per app, exactly the tokens of
        the emulator's response.done usages and their cost at the published prices (cached
        text included); call.ended, the admin view and on_session_end hooks carry the call's
        cost."""
        emulator = Emulator(
            EmulatorSettings(
                ice_addresses=LOOPBACK, api_key=OPENAI_KEY, model="gpt-realtime", record_events=True
            )
        )
        url = await emulator.start()
        try:
            # Long instructions: the second response reads a cached prefix of over 1024 tokens.
            instructions = "Answer briefly and kindly. " * 200
            text = (
                TWO_APPS
                + f'\n[apps.sales.session]\ninstructions = "{instructions}"\n'
                + "[apps.support.session]\ninstructions = 'Short.'\n"
            )
            path = write(tmp_path, text)
            Recorder.instances.clear()
            hooks = "tests.functional.fixtures.sample_hooks:Recorder"
            transcripts = tmp_path / "transcripts"
            transcripts.mkdir()
            settings = gateway_settings(
                url, hooks=hooks, transcripts_dir=str(transcripts), **with_apps(path)
            )
            gateway = await aiohttp_client(create_app(settings))
            peer, status, call_id = await call(gateway, peers, await mint(gateway, SALES_KEY))
            assert status == 201
            await peer.wait_open()
            await peer.next_event("session.created")
            for words in ("Hello there.", "And again."):
                peer.send(
                    {
                        "type": "conversation.item.create",
                        "item": {
                            "type": "message",
                            "role": "user",
                            "content": [{"type": "input_text", "text": words}],
                        },
                    }
                )
                peer.send({"type": "response.create"})
                await peer.next_event("response.done", timeout=10)
            peer.mic.say(0.6)  # and one spoken turn: audio in, audio out
            await peer.next_event("response.done", timeout=10)
            (upstream,) = emulator.calls.values()
            usages = [
                e["response"]["usage"] for e in upstream.sent_events if e["type"] == "response.done"
            ]
            assert len(usages) == 3
            parsed = [Usage.from_realtime(u) for u in usages]
            assert any(u.cached_text > 0 for u in parsed) and any(u.input_audio for u in parsed)
            expected_cost = 0.0
            for usage in parsed:  # summed in the order the gateway counted them
                expected_cost += cost(PUBLISHED["gpt-realtime"], usage)

            view = await (
                await gateway.get(f"/v1/realtime/calls/{call_id}", headers=auth(GATEWAY_KEY))
            ).json()
            assert view["app"] == "sales" and view["model"] == "gpt-realtime"
            assert view["cost_usd"] == expected_cost
            with capture_logs() as logs:
                await hangup(gateway, call_id, GATEWAY_KEY)
            (ended,) = [e for e in logs if e["event"] == "call.ended"]
            assert ended["app"] == "sales" and ended["cost_usd"] == expected_cost
            (summary,) = Recorder.instances[-1].ended  # what on_session_end hooks get
            assert summary.cost_usd == expected_cost
            lines = (transcripts / f"{call_id}.jsonl").read_text().splitlines()
            records = [json.loads(line) for line in lines]
            last = records[-1]
            assert last["kind"] == "call_ended" and last["app"] == "sales"
            assert last["cost_usd"] == expected_cost

            samples = await scrape(gateway)
            sales = {"app": "sales", "model": "gpt-realtime"}
            for kind in ("input_text", "input_audio", "output_text", "output_audio"):
                want = sum(getattr(u, kind) for u in parsed)
                got = value(samples, "realtime_gateway_tokens_total", **sales, kind=kind)
                assert got == want, kind
            cached = sum(u.cached_text + u.cached_audio for u in parsed)
            tokens = value(samples, "realtime_gateway_tokens_total", **sales, kind="input_cached")
            assert tokens == cached
            assert value(samples, "realtime_gateway_cost_usd_total", **sales) == expected_cost
            assert not [key for key in samples if ("app", "support") in key[1]]
        finally:
            await emulator.aclose()

    async def test_prices_from_the_apps_file(
        self,
        make_gateway: GatewayFactory,
        emulator: Emulator,
        peers: list[TestPeer],
        tmp_path: Path,
    ) -> None:
        """A [prices.<model>] table prices a model the published table lacks (the emulator's
        own name); before, its tokens were counted with no cost, under model="other"."""
        path = write(tmp_path, TWO_APPS)
        gateway = await make_gateway(**with_apps(path))

        async def one_turn() -> EmulatorCall:
            peer, status, call_id = await call(gateway, peers, SALES_KEY)
            assert status == 201
            await peer.wait_open()
            peer.send({"type": "response.create"})
            await peer.next_event("response.done", timeout=10)
            running = state_of(gateway).calls.find(call_id)
            assert running is not None and running.upstream_call_id is not None
            upstream = emulator.calls[running.upstream_call_id]
            await hangup(gateway, call_id, SALES_KEY)
            return upstream

        await one_turn()
        samples = await scrape(gateway)
        assert value(samples, "realtime_gateway_cost_usd_total", app="sales", model="other") == 0
        tokens = value(
            samples, "realtime_gateway_tokens_total", app="sales", model="other", kind="output_text"
        )
        assert tokens > 0

        price = Price(1.0, 0.5, 2.0, 3.0, 0.25, 4.0)
        fields = "\n".join(f"{k} = {v}" for k, v in vars(price).items())
        path.write_text(TWO_APPS + f'\n[prices."realtime-emulator"]\n{fields}\n')
        assert await reload_apps(state_of(gateway)) is True
        upstream = await one_turn()
        done = next(e for e in upstream.sent_events if e["type"] == "response.done")
        usage = Usage.from_realtime(done["response"]["usage"])
        samples = await scrape(gateway)
        got = value(
            samples, "realtime_gateway_cost_usd_total", app="sales", model="realtime-emulator"
        )
        assert got == cost(price, usage) > 0


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(client: Client) -> Samples:
    """Every sample of /metrics, parsed by prometheus_client's own text parser."""
    text = await (await client.get("/metrics")).text()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class TestProcess:
    async def test_a_broken_file_at_startup_exits_2_naming_the_setting(
        self, tmp_path: Path
    ) -> None:
        path = write(tmp_path, '[apps.a]\nkey = "too-short"\n')
        line = await refused("serve", GATEWAY_APPS=str(path))
        assert line.startswith("realtime-gateway: configuration error: GATEWAY_APPS")
        assert "too-short" not in line
        line = await refused("serve", GATEWAY_APPS=str(tmp_path / "missing.toml"))
        assert "GATEWAY_APPS" in line

    async def test_sighup_reloads_and_keeps_the_old_apps_on_a_broken_file(
        self, tmp_path: Path
    ) -> None:
        """The real process: SIGHUP with a broken file logs apps.reload_refused and goes on
        with the old keys; SIGHUP with a good one brings the new key in."""
        path = write(tmp_path, TWO_APPS)
        port = free_port()
        proc = await run(
            "serve",
            "--port",
            str(port),
            env=clean_env(
                GATEWAY_APPS=str(path),
                GATEWAY_ICE_ADDRESSES="127.0.0.1",
                GATEWAY_DRAIN_TIMEOUT="1",
                GATEWAY_LOG_FORMAT="json",
            ),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:

                async def status(key: str) -> int:
                    async with http.post(
                        f"{base}/v1/realtime/client_secrets", json={}, headers=auth(key)
                    ) as response:
                        return response.status

                async with asyncio.timeout(10):
                    while True:
                        try:
                            if await status(SALES_KEY) == 200:
                                break
                        except aiohttp.ClientConnectionError:
                            await asyncio.sleep(0.1)
                path.write_text("[apps.sales\n")
                proc.send_signal(signal.SIGHUP)
                await asyncio.sleep(0.5)
                assert await status(SALES_KEY) == 200
                assert await status(OPS_KEY) == 401
                path.write_text(f'[apps.ops]\nkey = "{OPS_KEY}"\n')
                proc.send_signal(signal.SIGHUP)
                async with asyncio.timeout(10):
                    while await status(OPS_KEY) != 200:
                        await asyncio.sleep(0.1)
                assert await status(SALES_KEY) == 401
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, err.decode()[-2000:]
        lines = [json.loads(line) for line in (out + err).decode().splitlines() if line[:1] == "{"]
        refusals = [e for e in lines if e.get("event") == "apps.reload_refused"]
        assert len(refusals) == 1 and "GATEWAY_APPS" in refusals[0]["reason"]
        assert [e["apps"] for e in lines if e.get("event") == "apps.reloaded"] == [1]
        text = (out + err).decode()
        for key in (SUPPORT_KEY, SALES_KEY, OPS_KEY):
            assert key not in text
