"""Off-path datagrams, fuzzed (attack review findings 1-3): whatever other hosts send to a call's
ICE ports, the call is not disturbed.

Two calls stand on one gateway: a live one, whose browser keeps talking, and a half-open one,
whose browser posted its offer and never applied the answer. Seeded random datagrams
(tests/fuzz/media.py: STUN, DTLS, RTP, RTCP and noise, 0 to 2100 bytes, weighted toward the
edges) go from six sources on 127.0.0.2-4 to every port of both legs of both calls, in batches,
at a bounded rate. After each batch: the live call still relays (a client event is answered;
speech gets a spoken answer), the half-open call is still waiting and holds no backlog of
datagrams, no exception reached the event loop and aiortc/aioice logged no traceback, and the
process has not grown by more than a generous margin.

``FUZZ_SCALE`` multiplies the number of batches (``FUZZ_SCALE=10`` for a long run);
``FUZZ_SEED`` replays a run (``FUZZ_SEED=random`` draws a new one). The seed is in every failure.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.emulator import Emulator
from tests.functional.conftest import GatewayFactory
from tests.fuzz.harness import FUZZ_SCALE
from tests.fuzz.media import Datagrams
from tests.support.attacker import (
    LiveCall,
    StackErrors,
    UdpAttacker,
    backlog,
    browser_leg,
    dial,
)
from tests.support.peer import TestPeer

BATCHES = max(1, round(5 * FUZZ_SCALE))
BATCH = 1000  # datagrams per batch
BURST, PAUSE = 20, 0.005  # at most ~4000 datagrams a second
# What a transport that is not reading yet may have waiting (the half-open browser leg).
MAX_BACKLOG = 256
RSS_MARGIN = 96 << 20  # bytes the process may grow by over the whole run
DEFAULT_SEED = 20240611


def fuzz_seed() -> int:
    value = os.environ.get("FUZZ_SEED", "")
    if value == "random":
        return random.SystemRandom().randrange(1 << 32)
    return int(value) if value else DEFAULT_SEED


def rss() -> int:
    """Resident memory of this process (the gateway, the emulator and the browser), in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(name="stack_errors")
async def _stack_errors() -> AsyncIterator[StackErrors]:
    """What the WebRTC stack threw during the test; printed if anything (shown on failure)."""
    with StackErrors() as errors:
        yield errors
    for found in errors.found:
        print(f"stack error: {found}")


async def test_off_path_datagrams_disturb_neither_a_live_nor_a_half_open_call(
    make_gateway: GatewayFactory,
    emulator: Emulator,
    peers: list[TestPeer],
    stack_errors: StackErrors,
) -> None:
    """Thousands of hostile datagrams to both legs of a live and of a half-open call: the live
    call keeps relaying speech and events, the half-open one keeps waiting with nothing queued,
    and the WebRTC stack neither throws nor grows."""
    seed = fuzz_seed()
    print(f"media fuzz: seed {seed} (FUZZ_SEED={seed} replays it), {BATCHES} x {BATCH}")
    # The half-open call must outlive the fuzz: only the attack may end it, and must not.
    gateway = await make_gateway(connect_timeout=60.0 + 20.0 * BATCHES)
    live_peer, half_peer = TestPeer(), TestPeer()
    peers += [live_peer, half_peer]
    live = await dial(gateway, emulator, live_peer)
    await live.connect()
    half_open = await dial(gateway, emulator, half_peer)
    targets = live.ports + half_open.ports
    assert len(targets) >= 4, targets
    datagrams = Datagrams(random.Random(seed))
    kinds: Counter[str] = Counter()
    start_rss = rss()

    with UdpAttacker() as udp:
        for batch in range(BATCHES):
            where = f"seed {seed}, batch {batch + 1}/{BATCHES}"
            mark = live.peer.received.mark()
            live.peer.mic.say(0.6)  # the live call talks while the datagrams arrive
            largest = 0
            for index in range(BATCH):
                kind, data = next(datagrams)
                kinds[kind] += 1
                udp.send(data, datagrams.rng.choice(targets))
                if index % BURST == BURST - 1:
                    await asyncio.sleep(PAUSE)
                    largest = max(largest, backlog(browser_leg(half_open.call).pc))
            try:
                await judge(live, half_open, stack_errors, largest, start_rss)
            except AssertionError as exc:
                raise AssertionError(f"[{where}] {exc}") from None
            await live.unless_ended(
                live.peer.received.wait_energy(frames=10, threshold=0.02, since=mark),
                f"[{where}] the spoken answer",
            )
        print(f"media fuzz: sent {udp.sent} ({dict(kinds)}), {udp.refused} would have blocked")
    grown = (rss() - start_rss) >> 20
    print(f"media fuzz: the process grew by {grown} MiB")


async def judge(
    live: LiveCall,
    half_open: LiveCall,
    stack_errors: StackErrors,
    largest_backlog: int,
    start_rss: int,
) -> None:
    """The oracle, after each batch (plain raises: the message is all a failure shows). The
    live call's round trip comes first: it is also the sentinel that every datagram of the
    batch has been read."""
    try:
        await live.round_trip()
        await live.unless_ended(
            live.peer.next_event("response.done", timeout=10), "response.done", timeout=10
        )
    except AssertionError:
        stack_errors.assert_none()  # the cause, if the stack logged one
        raise
    stack_errors.assert_none()
    if not half_open.alive():
        raise AssertionError(f"the half-open call ended: {half_open.call.end_reason}")
    largest = max(largest_backlog, backlog(browser_leg(half_open.call).pc))
    if largest > MAX_BACKLOG:
        raise AssertionError(f"{largest} datagrams queued for the half-open call")
    grown = rss() - start_rss
    if grown > RSS_MARGIN:
        raise AssertionError(f"the process grew by {grown >> 20} MiB")
