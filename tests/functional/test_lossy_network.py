"""Media across a lossy, slow path: 5 % loss and 50 ms delay each way on the browser leg.

The kernel here has no netem qdisc, so the impairment is a UDP proxy in this process: the
gateway binds one port on 127.0.0.1 and announces the proxy's address (127.0.0.2, same port) as
its public address; the browser's offer carries no candidates (as OpenAI's own browser code
posts it), so every packet of the browser leg, ICE checks included, crosses the proxy.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from gateway.emulator import Emulator
from tests.functional.conftest import GatewayFactory, mint, state_of
from tests.functional.test_networking import free_range
from tests.support.peer import TestPeer

LOSS, DELAY = 0.05, 0.050


class LossyProxy:
    """Forwards UDP between browsers and one gateway port, dropping and delaying packets."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], seed: int) -> None:
        self.listen, self.target = listen, target
        self.random = random.Random(seed)
        self.forwarded = self.dropped = 0
        self._front: asyncio.DatagramTransport | None = None
        self._backs: dict[Any, asyncio.DatagramTransport] = {}
        self._pending: set[asyncio.TimerHandle] = set()
        self._tasks: set[asyncio.Future[None]] = set()

    def _send_later(self, send: Any, data: bytes, addr: Any) -> None:
        if self.random.random() < LOSS:
            self.dropped += 1
            return
        self.forwarded += 1
        loop = asyncio.get_running_loop()
        handle = loop.call_later(DELAY, lambda: send(data, addr))
        self._pending.add(handle)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        proxy = self

        class Front(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: Any) -> None:
                task = asyncio.ensure_future(proxy._from_browser(data, addr))
                proxy._tasks.add(task)
                task.add_done_callback(proxy._tasks.discard)

        transport, _ = await loop.create_datagram_endpoint(Front, local_addr=self.listen)
        self._front = transport

    async def _from_browser(self, data: bytes, browser: Any) -> None:
        back = self._backs.get(browser)
        if back is None:
            loop = asyncio.get_running_loop()
            proxy, front = self, self._front
            assert front is not None
            sendto = front.sendto

            class Back(asyncio.DatagramProtocol):
                def datagram_received(self, data: bytes, addr: Any) -> None:
                    proxy._send_later(sendto, data, browser)

            back, _ = await loop.create_datagram_endpoint(Back, local_addr=("127.0.0.2", 0))
            self._backs[browser] = back
        self._send_later(back.sendto, data, self.target)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for handle in self._pending:
            handle.cancel()
        for transport in [self._front, *self._backs.values()]:
            if transport is not None:
                transport.close()


def without_candidates(sdp: str) -> str:
    return "".join(
        line
        for line in sdp.splitlines(keepends=True)
        if not line.startswith(("a=candidate:", "a=end-of-candidates"))
    )


async def test_call_survives_loss_and_delay(
    make_gateway: GatewayFactory, emulator: Emulator, peers: list[TestPeer]
) -> None:
    """With 5 % loss and 50 ms delay each way, speech gets through and the answer plays."""
    port, _ = free_range(1)
    gateway = await make_gateway(ice_port_range=(port, port), public_ip="127.0.0.2")
    proxy = LossyProxy(("127.0.0.2", port), ("127.0.0.1", port), seed=7)
    await proxy.start()
    try:
        peer = TestPeer()
        peers.append(peer)
        offer = without_candidates(await peer.create_offer())
        token = await mint(gateway)
        response = await gateway.post(
            "/v1/realtime/calls",
            data=offer,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
        assert response.status == 201, await response.text()
        answer = await response.text()
        assert "127.0.0.2" in answer
        await peer.accept_answer(answer)
        await peer.wait_open(timeout=15)
        await peer.next_event("session.created", timeout=10)
        peer.mic.say(1.2)
        await peer.next_event("input_audio_buffer.speech_stopped", timeout=15)
        await peer.next_event("output_audio_buffer.stopped", timeout=20)
        await asyncio.sleep(0.3)
        (upstream,) = emulator.calls.values()
        assert upstream.input_audio.peak_rms > 0.05
        assert upstream.input_audio.speech_ms >= 600
        assert peer.received.energy_frames(threshold=0.02) >= 20
        assert proxy.dropped > 10 and proxy.forwarded > 200
        assert len(state_of(gateway).calls) == 1  # lossy, but alive
        print(f"lossy path: forwarded {proxy.forwarded}, dropped {proxy.dropped}")
    finally:
        await peer.close()
        proxy.close()
