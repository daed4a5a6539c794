"""The marker loop and both ways of timing it: payload identity and decoded click onsets."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc import RTCConfiguration
from aiortc.codecs.opus import OpusDecoder, OpusEncoder
from aiortc.jitterbuffer import JitterFrame

from gateway.rtc.compat import OwnedPeerConnection
from gateway_bench.audio import (
    CLICK_AT,
    CLICK_EVERY,
    LOOP_PACKETS,
    MarkerLoop,
    find_onset,
    identity_index,
    is_click,
)
from gateway_bench.stream import AudioStream, ReceiveTap, tap_receiver


@pytest.fixture(name="loop", scope="module")
def _loop() -> MarkerLoop:
    return MarkerLoop.build()


class FakeRtp:
    """What aiortc hands a jitter buffer: an RTP packet with its depayloaded ``_data``."""

    def __init__(self, data: bytes, timestamp: int = 0) -> None:
        self._data = data
        self.timestamp = timestamp


class TestMarkerLoop:
    def test_every_packet_names_itself(self, loop: MarkerLoop) -> None:
        """All 500 payloads are distinct, so each one identifies its packet."""
        assert len(loop) == LOOP_PACKETS
        assert len(loop.index) == LOOP_PACKETS
        assert all(loop.index[p] == i for i, p in enumerate(loop.packets))

    def test_click_offset_is_the_encoder_look_ahead(self, loop: MarkerLoop) -> None:
        """The click's onset lands about libopus's 6.5 ms look-ahead into its packet."""
        assert 250 <= loop.click_offset <= 450

    def test_repeated_payloads_identify_nothing(self) -> None:
        """A payload seen twice is left out of the index rather than guessed."""
        assert identity_index([b"a", b"b", b"a", b"c"]) == {b"b": 1, b"c": 3}

    def test_click_schedule(self) -> None:
        """One click every CLICK_EVERY packets, at CLICK_AT."""
        clicks = [i for i in range(100) if is_click(i)]
        assert clicks == list(range(CLICK_AT, 100, CLICK_EVERY))

    def test_find_onset(self) -> None:
        """The first sample at or above the threshold, in magnitude."""
        samples = np.array([0.0, 0.01, -0.2, 0.5], dtype=np.float32)
        assert find_onset(samples, 0.1) == 2
        assert find_onset(samples, 0.9) is None


class TestIdentityTiming:
    def test_latency_of_each_packet(self, loop: MarkerLoop) -> None:
        """A forwarded payload is matched to its latest send, also after the loop wraps."""
        stream = AudioStream(loop)
        now = [0.0]
        tap = ReceiveTap(stream, clock=lambda: now[0])
        for seq in range(LOOP_PACKETS + 10):  # past the loop's seam
            stream.record_send(seq * 0.02)
            if seq in (3, LOOP_PACKETS + 3):
                now[0] = seq * 0.02 + 0.004
                tap.add(FakeRtp(loop.packets[seq % LOOP_PACKETS]))
        assert stream.latency[3] == pytest.approx(0.004)
        assert stream.latency[LOOP_PACKETS + 3] == pytest.approx(0.004)
        assert stream.identical == 2 and stream.foreign == 0 and stream.duplicates == 0

    def test_window_counts_loss_and_duplicates(self, loop: MarkerLoop) -> None:
        """Loss is over packets sent in the window; a second copy is a duplicate, not a packet."""
        stream = AudioStream(loop)
        now = [0.0]
        tap = ReceiveTap(stream, clock=lambda: now[0])
        for seq in range(10):
            stream.record_send(seq * 0.02)
            if seq != 4:  # lost
                now[0] = seq * 0.02 + 0.001
                tap.add(FakeRtp(loop.packets[seq]))
        tap.add(FakeRtp(loop.packets[9]))
        window = stream.window(0.0, 0.19)
        assert (window.sent, window.received, window.method) == (10, 9, "payload")
        assert stream.duplicates == 1
        assert window.latencies_ms == pytest.approx([1.0] * 9)


class TestClickTiming:
    def test_transcoded_stream_is_timed_by_its_clicks(self, loop: MarkerLoop) -> None:
        """Through aiortc's own decode + re-encode, 100 ms late, the clicks measure ~100 ms.

        The re-encoder's look-ahead is real added latency, so a few ms more is right.
        """
        decoder, encoder = OpusDecoder(), OpusEncoder()
        stream = AudioStream(loop)
        now = [0.0]
        tap = ReceiveTap(stream, clock=lambda: now[0])
        delay, sent = 0.1, 0
        for seq in range(160):
            stream.record_send(seq * 0.02)
            # What was sent `delay` ago arrives now, transcoded as the gateway would.
            arriving = seq - round(delay / 0.02)
            if arriving >= 0:
                frames = decoder.decode(JitterFrame(loop.packets[arriving], arriving * 960))
                for frame in frames:
                    payloads, _ = encoder.encode(frame)
                    for payload in payloads:
                        now[0] = seq * 0.02
                        tap.add(FakeRtp(payload))
                        sent += 1
        window = stream.window(0.0, 2.5)
        assert window.method == "click" and stream.identical == 0 and sent > 100
        assert len(window.latencies_ms) >= 4
        assert all(100.0 <= v <= 115.0 for v in window.latencies_ms), window.latencies_ms
        assert stream.clicks_spurious == 0


class TestAiortcHook:
    async def test_the_receive_tap_replaces_aiortcs_jitter_buffer(self, loop: MarkerLoop) -> None:
        """The private attribute the tap replaces exists (fails loudly on another aiortc)."""
        pc = OwnedPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            receiver = pc.addTransceiver("audio").receiver
            tap = tap_receiver(receiver, AudioStream(loop))
            assert getattr(receiver, "_RTCRtpReceiver__jitter_buffer") is tap  # noqa: B009
            # aiortc unpacks add()'s result as (pli_flag, encoded_frame): nothing to decode.
            assert tap.add(FakeRtp(loop.packets[0])) == (False, None)
        finally:
            await pc.close()
