"""Recordings in a cluster: real gateway processes sharing a real redis-server, each with its
own recordings directory (or one shared), in front of an emulator that plays OpenAI.

A recording is kept by the process that ran the call; any other process finds the holder in
the shared index and streams the download from it. A forwarded request is never forwarded
again, a holder that is gone is a 503 to retry, and nothing is forwarded for a caller without
the gateway key.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from gateway.call.registry import Node
from gateway.emulator import Emulator, EmulatorSettings
from gateway.server.forward import FORWARDED_BY, SIGNATURE, Forwarder, cluster_key
from gateway.stores.base import NodeEntry
from gateway.stores.redis import ENTRY_TTL, PREFIX, RedisHealth, RedisNodeDirectory
from tests.functional.test_recording import converse, decode, segments
from tests.support.cluster import GATEWAY_KEY, OPENAI_KEY, GatewayProc, auth, gateway_env
from tests.support.peer import TestPeer
from tests.support.servers import RedisServer, free_port, redis_server

pytestmark = pytest.mark.timeout(90)

# A download is 404 until the holder has made the file; made within a second or two of hangup.
MADE_WITHIN = 15.0
# A request that must not be forwarded round and round: answered at once.
PROMPT = 3.0


@dataclass
class Gateways:
    redis: RedisServer
    emulator: Emulator
    procs: list[GatewayProc]
    client: aioredis.Redis
    nodes: RedisNodeDirectory


@asynccontextmanager
async def gateways(directories: list[Path]) -> AsyncIterator[Gateways]:
    """One ``python -m gateway serve`` per directory (``gw0``, ``gw1``…), sharing one Redis,
    each recording into its directory (the same directory twice: they share it)."""
    async with redis_server() as redis:
        emulator = Emulator(
            EmulatorSettings(ice_addresses=("127.0.0.1",), api_key=OPENAI_KEY, record_events=True)
        )
        emulator_url = await emulator.start()
        procs = []
        for index, directory in enumerate(directories):
            port = free_port()
            env = gateway_env(
                redis.url,
                emulator_url,
                f"gw{index}",
                port,
                GATEWAY_RECORDINGS_DIR=str(directory),
            )
            procs.append(GatewayProc(f"gw{index}", port, env))
        client = aioredis.from_url(redis.url)
        try:
            await asyncio.gather(*(p.start() for p in procs))
            yield Gateways(
                redis, emulator, procs, client, RedisNodeDirectory(client, RedisHealth(client))
            )
        finally:
            await client.aclose()
            await asyncio.gather(*(p.stop() for p in procs))
            await emulator.aclose()


@pytest.fixture(name="peers")
async def _peers() -> AsyncIterator[list[TestPeer]]:
    made: list[TestPeer] = []
    yield made
    for peer in made:
        await peer.close()


def content_url(base: str, call_id: str) -> str:
    return f"{base}/v1/realtime/calls/{call_id}/content"


async def record_a_call(http: aiohttp.ClientSession, base: str, peers: list[TestPeer]) -> str:
    """A call through the process at ``base`` alone (minted, offered, hung up there): the
    browser speaks a tone, the emulator echoes it; returns the call's id once it has ended."""
    async with http.post(f"{base}/v1/realtime/client_secrets", json={}, headers=auth()) as r:
        assert r.status == 200, await r.text()
        token = str((await r.json())["value"])
    peer = TestPeer()
    peers.append(peer)
    result = await peer.connect(http, f"{base}/v1/realtime/calls", token)
    assert result.status == 201, result.body
    call_id = result.call_id
    assert call_id is not None
    await peer.wait_open(timeout=15)
    await peer.next_event("session.created", timeout=10)
    await converse(peer, [(1.5, 440.0)])
    async with http.post(f"{base}/v1/realtime/calls/{call_id}/hangup", headers=auth()) as r:
        assert r.status == 200, await r.text()
    await peer.wait_closed(timeout=10)
    return call_id


async def download(http: aiohttp.ClientSession, base: str, call_id: str) -> bytes:
    """The recording from the process at ``base``, once it is made (404 until then)."""
    async with asyncio.timeout(MADE_WITHIN):
        while True:
            async with http.get(content_url(base, call_id), headers=auth()) as r:
                if r.status == 200:
                    assert r.content_type == "audio/ogg"
                    return await r.read()
                assert r.status == 404, (r.status, await r.text())
            await asyncio.sleep(0.1)


async def indexed(g: Gateways, call_id: str) -> str:
    """The node the shared index names as holding ``call_id``'s recording. The holder places
    the entry just after it made the file, so a download can succeed a moment before."""
    async with asyncio.timeout(5):
        while (node := await g.client.get(f"{PREFIX}recording:{call_id}")) is None:
            await asyncio.sleep(0.05)
    return node.decode() if isinstance(node, bytes) else str(node)


def files_in(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def assert_openai_error(body: Any, code: str) -> None:
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}, body
    assert error["code"] == code, body
    assert isinstance(error["message"], str) and error["message"], body


async def place(g: Gateways, call_id: str, node: str) -> None:
    """An index entry, as a holder writes it (a stale one, when ``node`` lacks the file)."""
    await g.client.set(f"{PREFIX}recording:{call_id}", node, px=60_000)


@dataclass
class Spy:
    """A stand-in for a gateway process holding recordings: it records what reaches it."""

    url: str = ""
    seen: list[dict[str, str]] = field(default_factory=list)


@asynccontextmanager
async def spy_holder(g: Gateways) -> AsyncIterator[Spy]:
    """A node ``spy`` in the cluster's directory, answering any download with ``b"spied"``."""
    spy = Spy()

    async def content(request: web.Request) -> web.StreamResponse:
        spy.seen.append(dict(request.headers))
        return web.Response(body=b"spied", content_type="audio/ogg")

    app = web.Application()
    app.router.add_get("/v1/realtime/calls/{call_id}/content", content)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    spy.url = f"http://127.0.0.1:{port}"
    # Not taking calls (room=False); its entry lives ENTRY_TTL seconds, longer than needed.
    await g.nodes.announce(
        NodeEntry(name="spy", address=spy.url, started_at=time.time(), room=False)
    )
    try:
        yield spy
    finally:
        await g.nodes.withdraw("spy")
        await runner.cleanup()


def signed_as(sender: str, target: str) -> dict[str, str]:
    """The headers another process of this gateway adds to a request it forwards."""
    forwarder = Forwarder(None, Node(name=sender), cluster_key(GATEWAY_KEY))  # type: ignore[arg-type]
    return forwarder.sign("GET", target)


async def test_a_recording_made_on_one_process_downloads_identically_from_another(
    tmp_path: Path, peers: list[TestPeer]
) -> None:
    """Call on gw0, recorded in gw0's directory; gw1 streams it from gw0: the same bytes,
    ranges answered, HEAD too, and nothing copied into gw1's directory."""
    dirs = [tmp_path / "gw0", tmp_path / "gw1"]
    async with gateways(dirs) as g, aiohttp.ClientSession() as http:
        gw0, gw1 = g.procs
        call_id = await record_a_call(http, gw0.url, peers)
        held = await download(http, gw0.url, call_id)
        assert await indexed(g, call_id) == "gw0"

        async with http.get(content_url(gw1.url, call_id), headers=auth()) as r:
            assert r.status == 200, await r.text()
            assert r.content_type == "audio/ogg"
            assert r.headers["Cache-Control"] == "private, no-store"
            assert r.headers["Content-Length"] == str(len(held))
            assert FORWARDED_BY not in r.headers and SIGNATURE not in r.headers
            forwarded = await r.read()
        assert forwarded == held
        audio, rate = decode(forwarded)
        assert audio.shape[0] == 2
        assert len(segments(audio[0], rate)) == 1  # the browser's tone, on the left
        assert len(segments(audio[1], rate)) == 1  # the emulator's echo, on the right

        # Ranges, through the process that does not hold the file.
        size = len(held)
        for spec, first, last in (
            ("bytes=100-1099", 100, 1099),
            (f"bytes={size - 300}-", size - 300, size - 1),
            ("bytes=-500", size - 500, size - 1),
        ):
            headers = {**auth(), "Range": spec}
            async with http.get(content_url(gw1.url, call_id), headers=headers) as r:
                assert r.status == 206, (spec, r.status, await r.text())
                assert r.headers["Content-Range"] == f"bytes {first}-{last}/{size}", spec
                assert await r.read() == held[first : last + 1], spec
        async with http.get(
            content_url(gw1.url, call_id), headers={**auth(), "Range": f"bytes={size + 10}-"}
        ) as r:
            assert r.status == 416, r.status
        async with http.head(content_url(gw1.url, call_id), headers=auth()) as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(size)
            assert await r.read() == b""

        # gw1 relayed the file; it keeps no copy of it.
        assert any(name.endswith(".ogg") for name in files_in(dirs[0]))
        assert files_in(dirs[1]) == []

        # A request gw0 forwarded (signed) that reaches gw1, which lacks the file: 404 at
        # once, not forwarded back to gw0.
        target = f"/v1/realtime/calls/{call_id}/content"
        started = time.monotonic()
        async with http.get(gw1.url + target, headers={**auth(), **signed_as("gw0", target)}) as r:
            assert r.status == 404, r.status
            assert_openai_error(await r.json(), "not_found")
        assert time.monotonic() - started < PROMPT
        assert not any(p.problems() for p in g.procs), [p.problems() for p in g.procs]


async def test_an_unknown_or_stale_call_id_is_a_prompt_404_and_never_loops(
    tmp_path: Path,
) -> None:
    """No index entry: 404 where asked. An entry naming a process that lacks the file: one
    hop, then 404. A signed (already forwarded) request is answered, never sent on."""
    async with (
        gateways([tmp_path / "gw0", tmp_path / "gw1"]) as g,
        aiohttp.ClientSession() as http,
        spy_holder(g) as spy,
    ):
        gw0, gw1 = g.procs
        for base in (gw0.url, gw1.url):
            async with http.get(content_url(base, "rtc_nosuchcall"), headers=auth()) as r:
                assert r.status == 404
                body = await r.json()
                assert_openai_error(body, "not_found")
                assert body["error"]["param"] == "call_id"

        # Stale: the index says gw0 holds it, but gw0 has no such file (nor does gw1).
        await place(g, "rtc_stale", "gw0")
        for base in (gw1.url, gw0.url):
            started = time.monotonic()
            async with http.get(content_url(base, "rtc_stale"), headers=auth()) as r:
                assert r.status == 404, r.status
                assert_openai_error(await r.json(), "not_found")
            assert time.monotonic() - started < PROMPT

        # The index says "spy": an ordinary request is forwarded there (so the spy is reached)…
        await place(g, "rtc_spied", "spy")
        async with http.get(content_url(gw1.url, "rtc_spied"), headers=auth()) as r:
            assert r.status == 200
            assert await r.read() == b"spied"
        assert len(spy.seen) == 1
        assert spy.seen[0][FORWARDED_BY] == "gw1"
        # …but one that another process already forwarded is answered, not forwarded again.
        target = "/v1/realtime/calls/rtc_spied/content"
        for base in (gw0.url, gw1.url):
            headers = {**auth(), **signed_as("gw0" if base == gw1.url else "gw1", target)}
            async with http.get(base + target, headers=headers) as r:
                assert r.status == 404, r.status
                assert_openai_error(await r.json(), "not_found")
        assert len(spy.seen) == 1
        # A forged signature makes an ordinary request (forwarded once, signed by gw1).
        forged = {**auth(), **signed_as("gw0", target), SIGNATURE: "0" * 64}
        async with http.get(gw1.url + target, headers=forged) as r:
            assert r.status == 200
        assert len(spy.seen) == 2 and spy.seen[1][FORWARDED_BY] == "gw1"
        assert not any(p.problems() for p in g.procs), [p.problems() for p in g.procs]


async def test_a_recording_whose_holder_is_gone_is_503_with_retry_after(
    tmp_path: Path, peers: list[TestPeer]
) -> None:
    """gw0 recorded the call and was SIGKILLed; once its node entry has expired, gw1 answers
    503 with Retry-After and an OpenAI-shaped error (the file may come back with gw0)."""
    async with gateways([tmp_path / "gw0", tmp_path / "gw1"]) as g, aiohttp.ClientSession() as http:
        gw0, gw1 = g.procs
        call_id = await record_a_call(http, gw0.url, peers)
        await download(http, gw0.url, call_id)
        assert await indexed(g, call_id) == "gw0"
        gw0.kill()
        killed = time.monotonic()

        # A node's entry lives ENTRY_TTL seconds past its last heartbeat.
        async with asyncio.timeout(ENTRY_TTL + 5):
            while any(n.name == "gw0" for n in await g.nodes.nodes()):
                await asyncio.sleep(0.2)
        print(f"gw0's node entry expired {time.monotonic() - killed:.1f} s after SIGKILL")

        started = time.monotonic()
        async with http.get(content_url(gw1.url, call_id), headers=auth()) as r:
            assert r.status == 503, (r.status, await r.text())
            retry_after = r.headers["Retry-After"]
            assert retry_after.isdigit() and int(retry_after) > 0, retry_after
            assert r.content_type == "application/json"
            assert_openai_error(await r.json(), "unavailable")
        assert time.monotonic() - started < PROMPT
        # Ranges are no different.
        headers = {**auth(), "Range": "bytes=0-99"}
        async with http.get(content_url(gw1.url, call_id), headers=headers) as r:
            assert r.status == 503
        assert not gw1.problems(), gw1.problems()


async def test_processes_sharing_a_directory_serve_each_others_recordings_locally(
    tmp_path: Path, peers: list[TestPeer]
) -> None:
    """Same GATEWAY_RECORDINGS_DIR (one naming key): a call on gw0, downloaded from gw1 from
    the disk, even with gw0 dead."""
    shared = tmp_path / "shared"
    async with gateways([shared, shared]) as g, aiohttp.ClientSession() as http:
        gw0, gw1 = g.procs
        call_id = await record_a_call(http, gw0.url, peers)
        held = await download(http, gw0.url, call_id)
        gw0.kill()  # gw1 cannot forward to it: it must find the file itself
        await gw0.stop()
        async with http.get(content_url(gw1.url, call_id), headers=auth()) as r:
            assert r.status == 200, await r.text()
            assert await r.read() == held
        async with http.get(
            content_url(gw1.url, call_id), headers={**auth(), "Range": "bytes=10-19"}
        ) as r:
            assert r.status == 206
            assert await r.read() == held[10:20]
        assert len([n for n in files_in(shared) if n.endswith(".ogg")]) == 1
        assert not gw1.problems(), gw1.problems()


async def test_nothing_is_forwarded_without_the_gateway_key(tmp_path: Path) -> None:
    """A download without the gateway key is 401 where it lands: the holder never sees it."""
    async with (
        gateways([tmp_path / "gw0", tmp_path / "gw1"]) as g,
        aiohttp.ClientSession() as http,
        spy_holder(g) as spy,
    ):
        gw1 = g.procs[1]
        await place(g, "rtc_spied", "spy")
        async with http.post(f"{gw1.url}/v1/realtime/client_secrets", json={}, headers=auth()) as r:
            client_secret = str((await r.json())["value"])
        url = content_url(gw1.url, "rtc_spied")
        refused: list[tuple[Mapping[str, str], str]] = [
            ({}, "missing_api_key"),
            ({"Authorization": f"Basic {GATEWAY_KEY}"}, "missing_api_key"),
            (auth("gk_wrong-key"), "invalid_api_key"),
            (auth(client_secret), "invalid_api_key"),
        ]
        for headers, code in refused:
            async with http.get(url, headers=headers) as r:
                assert r.status == 401, (headers, r.status)
                assert_openai_error(await r.json(), code)
        # Even signed as forwarded by a sibling: the key is still required.
        target = "/v1/realtime/calls/rtc_spied/content"
        async with http.get(gw1.url + target, headers=signed_as("gw0", target)) as r:
            assert r.status == 401
        assert spy.seen == []
        async with http.get(url, headers=auth()) as r:  # the spy is reachable with the key
            assert r.status == 200
        assert len(spy.seen) == 1
        assert spy.seen[0]["Authorization"] == f"Bearer {GATEWAY_KEY}"


async def test_a_holder_still_listed_but_not_answering_is_503_too(tmp_path: Path) -> None:
    """As right after a SIGKILL: the holder's node entry is still there, its port is closed."""
    async with gateways([tmp_path / "gw0", tmp_path / "gw1"]) as g, aiohttp.ClientSession() as http:
        closed = f"http://127.0.0.1:{free_port()}"
        await g.nodes.announce(
            NodeEntry(name="dead", address=closed, started_at=time.time(), room=False)
        )
        await place(g, "rtc_held_by_the_dead", "dead")
        async with http.get(
            content_url(g.procs[1].url, "rtc_held_by_the_dead"), headers=auth()
        ) as r:
            assert r.status == 503, (r.status, await r.text())
            assert r.headers["Retry-After"].isdigit()
            assert_openai_error(await r.json(), "unavailable")
