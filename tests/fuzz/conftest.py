"""Fixtures: a real gateway in front of a real emulator, with a live call, ready to fuzz.

The gateway, emulator and peer fixtures are tests/functional's, re-exported here; the harness
(tests/fuzz/harness.py) wraps them in a :class:`Target` with a live call already relaying.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.emulator import Emulator
from tests.functional.conftest import (  # noqa: F401  # fixtures, re-exported for pytest
    GATEWAY_KEY,
    OPENAI_KEY,
    GatewayFactory,
    _emulator,
    _make_gateway,
    _peers,
    mint,
)
from tests.fuzz.harness import Target, TargetFactory
from tests.fuzz.oracle import Oracle
from tests.support.peer import TestPeer


@pytest.fixture(name="make_target")
def _make_target(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> TargetFactory:
    async def make(*, oracle: Oracle | None = None, **overrides: Any) -> Target:
        # The call-rate limits would turn most of the fuzz into 429s before it reached the code
        # it is after; they have their own tests.
        defaults = {
            "demo_enabled": True,
            "calls_per_minute_per_ip": 1_000_000,
            "calls_per_minute_per_token": 1_000_000,
        }
        client = await make_gateway(**{**defaults, **overrides})
        token = await mint(client)
        peer = TestPeer()
        peers.append(peer)
        url = str(client.make_url("/v1/realtime/calls"))
        result = await peer.connect(client.session, url, token)
        assert result.status == 201, result.body
        await peer.wait_open()
        await peer.next_event("session.created")
        assert result.call_id is not None
        spare = TestPeer()
        try:
            base_offer = await spare.create_offer()
        finally:
            await spare.close()
        return Target(
            client=client,
            emulator=emulator,
            peer=peer,
            oracle=oracle or Oracle(secrets=(OPENAI_KEY, GATEWAY_KEY)),
            live_call_id=result.call_id,
            base_offer=base_offer,
        )

    return make


@pytest.fixture(name="target")
async def _target(make_target: TargetFactory) -> Target:
    return await make_target()
