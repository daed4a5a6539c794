"""GPT-Live sessions in a cluster: real gateway processes, a real redis-server and a real
haproxy spreading every request; an emulator plays OpenAI."""

from __future__ import annotations

import aiohttp
import openai

from tests.support.cluster import GATEWAY_KEY, auth, cluster
from tests.support.peer import TestPeer


async def test_a_live_session_is_one_sessions_wherever_its_requests_land() -> None:
    peer = TestPeer()
    try:
        async with cluster(2) as c, aiohttp.ClientSession() as http:
            gw0, gw1 = (g.url for g in c.gateways)
            offer = await peer.create_offer()
            body = {
                "session": {"model": "gpt-live-1"},
                "transport": {"type": "webrtc", "sdp": offer},
            }
            async with http.post(f"{gw0}/v1/live/sessions", json=body, headers=auth()) as r:
                assert r.status == 201, await r.text()
                created = await r.json()
            session_id = created["session"]["id"]
            await peer.accept_answer(created["transport"]["sdp"])
            await peer.wait_open()
            started = await peer.next_event("session.started")
            assert started["session"]["id"] == session_id
            # Listed by both processes, owned by the first.
            for url in (gw0, gw1):
                async with http.get(f"{url}/v1/realtime/calls/{session_id}", headers=auth()) as r:
                    assert r.status == 200, await r.text()
                    view = await r.json()
                    assert view["owner"] == "gw0" and view["dialect"] == "live"
            # Hung up through the other process: it reaches the owner.
            async with http.post(
                f"{gw1}/v1/live/sessions/{session_id}/hangup", headers=auth()
            ) as r:
                assert r.status == 200 and await r.read() == b""
            await peer.wait_closed(timeout=10)
            upstream = next(iter(c.emulator.calls.values()))
            assert upstream.request_kind == "live" and upstream.hung_up
            async with http.post(
                f"{gw1}/v1/live/sessions/{session_id}/hangup", headers=auth()
            ) as r:
                assert r.status == 404

            # OpenAI's SDK through the front, where any request may land anywhere.
            second = TestPeer()
            try:
                client = openai.AsyncOpenAI(api_key=GATEWAY_KEY, base_url=f"{c.front}/v1")
                made = await client.live.create(
                    session={"model": "gpt-live-1"},
                    transport={"type": "webrtc", "sdp": await second.create_offer()},
                )
                await second.accept_answer(made.transport.sdp)
                await second.wait_open()
                await second.next_event("session.started")
                for _ in range(2):  # round robin: one of these lands on the other process
                    async with http.get(
                        f"{c.front}/v1/realtime/calls/{made.session.id}", headers=auth()
                    ) as r:
                        assert r.status == 200
                await client.live.sessions.hangup(made.session.id)
                await second.wait_closed(timeout=10)
                await client.close()
            finally:
                await second.close()
            assert not any(g.problems() for g in c.gateways)
    finally:
        await peer.close()
