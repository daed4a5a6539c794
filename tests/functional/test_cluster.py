"""Several gateway processes behind one URL act as one gateway: real processes, a real
redis-server, a real haproxy spreading every request round-robin, an emulator as OpenAI."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.support.cluster import GATEWAY_KEY, auth, cluster
from tests.support.peer import TestPeer


async def mint(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(f"{base}/v1/realtime/client_secrets", json={}, headers=auth()) as r:
        assert r.status == 200, await r.text()
        return str((await r.json())["value"])


async def dial(
    http: aiohttp.ClientSession, base: str, token: str, peers: list[TestPeer]
) -> tuple[TestPeer, int, str | None]:
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(http, f"{base}/v1/realtime/calls", token)
    return peer, result.status, result.call_id


async def calls_listed(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    async with http.get(f"{base}/v1/realtime/calls", headers=auth()) as r:
        assert r.status == 200, await r.text()
        return {c["id"]: c["owner"] for c in (await r.json())["data"]}


async def until(check: Callable[[], Any], limit: float = 15.0) -> None:
    async with asyncio.timeout(limit):
        while not await check():
            await asyncio.sleep(0.1)


@pytest.fixture(name="peers")
async def _peers() -> Any:
    made: list[TestPeer] = []
    yield made
    for peer in made:
        await peer.close()


class TestOneGateway:
    async def test_secrets_calls_hangups_and_the_sideband_work_wherever_they_land(
        self, peers: list[TestPeer]
    ) -> None:
        """Minted on one process, redeemed on another once; GET, the sideband and hangup of a
        call reach its owner from any process; the listing has every call with its owner."""
        async with cluster(3) as c, aiohttp.ClientSession() as http:
            gw0, gw1, gw2 = (g.url for g in c.gateways)
            token = await mint(http, gw0)
            # Single use across processes: two processes race to redeem one secret.
            first, second = TestPeer(), TestPeer()
            peers += [first, second]
            results = await asyncio.gather(
                first.connect(http, f"{gw1}/v1/realtime/calls", token),
                second.connect(http, f"{gw2}/v1/realtime/calls", token),
            )
            assert sorted(r.status for r in results) == [201, 401]
            winner, result = next(
                (p, r) for p, r in zip((first, second), results, strict=True) if r.status == 201
            )
            owner = "gw1" if result is results[0] else "gw2"
            call_id = result.call_id
            assert call_id is not None
            await winner.wait_open()
            await winner.next_event("session.created")
            other = next(g.url for g in c.gateways if g.name not in (owner,))
            # The admin GET, from a process that does not run the call.
            async with http.get(f"{other}/v1/realtime/calls/{call_id}", headers=auth()) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["owner"] == owner
            # Every process lists it, naming its owner, as the owner reports it (not just what
            # the directory knows).
            for g in c.gateways:
                assert (await calls_listed(http, g.url)) == {call_id: owner}
                async with http.get(f"{g.url}/v1/realtime/calls", headers=auth()) as r:
                    (view,) = (await r.json())["data"]
                    assert view["state"] != "unknown" and "events" in view, view
            # The sideband, through a process that does not run the call.
            url = other.replace("http", "ws") + f"/v1/realtime?call_id={call_id}"
            async with http.ws_connect(url, headers=auth(), protocols=("realtime",)) as ws:
                winner.send({"type": "response.create", "event_id": "from-browser"})
                kinds = []
                async with asyncio.timeout(10):
                    async for message in ws:
                        kinds.append(json.loads(message.data)["type"])
                        if kinds[-1] == "response.done":
                            break
                assert "response.created" in kinds
                # A client event sent through the relayed sideband reaches the upstream.
                await ws.send_str(json.dumps({"type": "input_audio_buffer.clear"}))
                upstream = next(iter(c.emulator.calls.values()))
                await upstream.wait_for_event("input_audio_buffer.clear", timeout=5)
            # Hangup through the front: haproxy may send it anywhere.
            async with http.post(
                f"{c.front}/v1/realtime/calls/{call_id}/hangup", headers=auth()
            ) as r:
                assert r.status == 200
            await winner.wait_closed(timeout=10)
            assert upstream.hung_up
            for g in c.gateways:
                assert (await calls_listed(http, g.url)) == {}
            async with http.post(
                f"{other}/v1/realtime/calls/{call_id}/hangup", headers=auth()
            ) as r:
                assert r.status == 404
            assert not any(g.problems() for g in c.gateways)

    async def test_the_browsers_own_secret_hangs_up_its_call_anywhere(
        self, peers: list[TestPeer]
    ) -> None:
        """A browser hanging up with its client secret, through another process, works; a
        different secret gets the same 404 as a call that does not exist."""
        async with cluster(2) as c, aiohttp.ClientSession() as http:
            gw0, gw1 = (g.url for g in c.gateways)
            token = await mint(http, gw0)
            peer, status, call_id = await dial(http, gw0, token, peers)
            assert status == 201
            await peer.wait_open()
            stranger = await mint(http, gw0)
            url = f"{gw1}/v1/realtime/calls/{call_id}/hangup"
            async with http.post(url, headers=auth(stranger)) as r:
                assert r.status == 404
            async with http.post(url, headers=auth(token)) as r:
                assert r.status == 200
            await peer.wait_closed(timeout=10)

    async def test_call_rates_per_address_count_across_processes(
        self, peers: list[TestPeer]
    ) -> None:
        """GATEWAY_CALLS_PER_MINUTE_PER_IP is one budget for the whole gateway."""
        async with (
            cluster(2, GATEWAY_CALLS_PER_MINUTE_PER_IP="3") as c,
            aiohttp.ClientSession() as http,
        ):
            statuses = []
            for i in range(4):
                base = c.gateways[i % 2].url
                token = await mint(http, base)
                _, status, _ = await dial(http, base, token, peers)
                statuses.append(status)
            assert statuses == [201, 201, 201, 429]


class TestCapacity:
    async def test_a_full_process_passes_a_new_call_to_one_with_room(
        self, peers: list[TestPeer]
    ) -> None:
        """Behind a shared port or a balancer that ignores readiness, a call that lands on a
        full process is answered by one with room; when all are full, 503 at_capacity."""
        async with cluster(2, GATEWAY_MAX_CALLS="1") as c, aiohttp.ClientSession() as http:
            gw0 = c.gateways[0].url
            owners = []
            for _ in range(2):
                peer, status, call_id = await dial(http, gw0, await mint(http, gw0), peers)
                assert status == 201 and call_id is not None
                await peer.wait_open()
                owners.append((await calls_listed(http, gw0))[call_id])
            assert sorted(owners) == ["gw0", "gw1"]
            _, status, _ = await dial(http, gw0, await mint(http, gw0), peers)
            assert status == 503


class TestFailures:
    async def test_a_killed_process_takes_only_its_calls_and_they_leave_the_listing(
        self, peers: list[TestPeer]
    ) -> None:
        """SIGKILL one process mid-call: its calls leave every listing within seconds and a
        hangup for them is a prompt 404; the other process's call goes on."""
        async with cluster(2) as c, aiohttp.ClientSession() as http:
            gw0, gw1 = c.gateways
            doomed, status, doomed_id = await dial(http, gw0.url, await mint(http, gw0.url), peers)
            assert status == 201
            survivor, status, survivor_id = await dial(
                http, gw1.url, await mint(http, gw1.url), peers
            )
            assert status == 201
            await asyncio.gather(doomed.wait_open(), survivor.wait_open())
            assert set(await calls_listed(http, gw1.url)) == {doomed_id, survivor_id}
            gw0.kill()
            killed_at = time.monotonic()

            async def gone() -> bool:
                return set(await calls_listed(http, gw1.url)) == {survivor_id}

            await until(gone, limit=20)
            print(
                f"killed process's call left the listing after {time.monotonic() - killed_at:.1f} s"
            )
            started = time.monotonic()
            async with http.post(
                f"{gw1.url}/v1/realtime/calls/{doomed_id}/hangup", headers=auth()
            ) as r:
                assert r.status == 404
            assert time.monotonic() - started < 3
            mark = survivor.received.mark()
            survivor.send({"type": "response.create"})
            await survivor.next_event("response.done", timeout=10)
            await survivor.received.wait_energy(frames=1, threshold=0.0, since=mark, timeout=5)

    async def test_redis_restarting_leaves_live_calls_alone_and_new_calls_recover(
        self, peers: list[TestPeer]
    ) -> None:
        """Redis down: the live call goes on, readiness says store_unavailable, a new call
        gets 503 with Retry-After; Redis back: new calls work, and the live call is listed
        again, without restarting anything."""
        async with cluster(2) as c, aiohttp.ClientSession() as http:
            gw0, gw1 = (g.url for g in c.gateways)
            live, status, live_id = await dial(http, gw0, await mint(http, gw0), peers)
            assert status == 201
            await live.wait_open()
            token = await mint(http, gw1)  # minted before Redis goes away: now unreachable
            await c.redis.stop()
            refused = TestPeer()
            peers.append(refused)
            async with http.post(
                f"{gw1}/v1/realtime/calls",
                data=await refused.create_offer(),
                headers={**auth(token), "Content-Type": "application/sdp"},
            ) as r:
                assert r.status == 503
                assert r.headers["Retry-After"].isdigit()
                assert (await r.json())["error"]["code"] == "store_unavailable"

            async def unready() -> bool:
                async with http.get(f"{gw0}/readyz") as r:
                    return r.status == 503 and (await r.json())["status"] == "store_unavailable"

            await until(unready)
            live.send({"type": "response.create"})
            await live.next_event("response.done", timeout=10)  # the live call did not notice
            await c.redis.start()  # empty: every entry is gone

            async def ready() -> bool:
                async with http.get(f"{gw0}/readyz") as r:
                    return r.status == 200

            await until(ready)

            async def relisted() -> bool:
                return live_id in await calls_listed(http, gw1)

            await until(relisted)
            _, status, _ = await dial(http, gw1, await mint(http, gw0), peers)
            assert status == 201


class TestOpenAISdk:
    async def test_the_server_flow_of_openais_python_sdk_through_the_front(
        self, peers: list[TestPeer]
    ) -> None:
        """client_secrets.create, calls.create (the server posts the browser's offer),
        realtime.connect(call_id=...) and calls.hangup, each spread by haproxy."""
        from openai import AsyncOpenAI

        async with cluster(3) as c:
            sdk = AsyncOpenAI(api_key=GATEWAY_KEY, base_url=f"{c.front}/v1", max_retries=0)
            secret = await sdk.realtime.client_secrets.create(
                session={"type": "realtime", "instructions": "Be brief."}
            )
            assert secret.value.startswith("ek_")
            peer = TestPeer()
            peers.append(peer)
            offer = await peer.create_offer()
            answer = await sdk.realtime.calls.create(
                sdp=offer, session={"type": "realtime", "instructions": "From the server."}
            )
            await peer.accept_answer(answer.text)
            await peer.wait_open()
            call_id = answer.response.headers["Location"].rsplit("/", 1)[-1]
            async with sdk.realtime.connect(call_id=call_id) as sideband:
                await sideband.send({"type": "response.create"})
                async with asyncio.timeout(10):
                    async for event in sideband:
                        if event.type == "response.done":
                            break
            await sdk.realtime.calls.hangup(call_id)
            await peer.wait_closed(timeout=10)
            upstream = next(iter(c.emulator.calls.values()))
            assert upstream.initial_session is not None
            assert upstream.initial_session["instructions"] == "From the server."
            await sdk.close()
