"""Where each recorded packet lands on the call's clock (:mod:`gateway.recording.timeline`), and
where each transcript turn sits in the recording (:mod:`gateway.recording.turns`).

Packets are real Opus framing (a TOC byte for a 20 ms CELT frame, or 10/60 ms ones) whose frame
carries the packet's number, so every placed packet says which one it was.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from gateway.recording import opus, tracks
from gateway.recording.timeline import MAX_HELD, LegTimeline, Placed, TimelineStats
from gateway.recording.turns import MAX_TRACKED, TurnClock

RATE = 48_000
GRID = 960  # 20 ms
FIRST = 27 * GRID  # where stream()'s first packet goes: 0.535 s rounded to the grid
HOLD = 1.0
TOLERANCE = 0.04
TOC_20MS = 31 << 3  # CELT FB 20 ms, code 0
TOC_10MS = 30 << 3
TOC_60MS = 3 << 3  # SILK NB 60 ms

Packet = tuple[float, int, bytes]  # arrival (s), RTP timestamp, payload


def payload(number: int, toc: int = TOC_20MS) -> bytes:
    return bytes((toc,)) + number.to_bytes(4, "big")


def number_of(placed: Placed) -> int:
    return int.from_bytes(placed.payload[1:5], "big")


def timeline(rate: int = RATE, codec: tracks.Codec = "opus") -> LegTimeline:
    return LegTimeline(rate, tracks.duration_of(codec), hold=HOLD, tolerance=TOLERANCE)


def feed(line: LegTimeline, packets: Iterable[Packet], *, flush: bool = True) -> list[Placed]:
    out: list[Placed] = []
    for arrival, timestamp, data in packets:
        out += line.add(arrival, timestamp, data)
    if flush:
        out += line.flush()
    return out


def stream(
    count: int,
    *,
    start: float = 0.5,
    first_timestamp: int = 1000,
    delay: float = 0.035,
) -> list[Packet]:
    """20 ms packets sent every 20 ms from ``start``, arriving ``delay`` later (so the first
    arrives at 0.535 s: 26.75 packets in, placed at the 27th)."""
    return [
        (start + delay + 0.02 * k, (first_timestamp + GRID * k) & 0xFFFFFFFF, payload(k))
        for k in range(count)
    ]


def positions(placed: Sequence[Placed]) -> dict[int, int]:
    return {number_of(p): p.position for p in placed}


def assert_sound(placed: Sequence[Placed], line: LegTimeline, added: int) -> None:
    """What holds for any stream: placed packets never overlap and come in order, the end is
    where the last one ends, and every packet taken is accounted for exactly once."""
    end = 0
    for item in placed:
        assert item.position >= end, (item, end)
        assert item.samples > 0 and item.position >= 0
        end = item.position + item.samples
    assert line.end == end
    stats = line.stats
    assert stats.placed == len(placed)
    assert stats.placed + stats.late + stats.overlapping + stats.invalid == added, stats


class TestPlacement:
    def test_in_order_packets_on_the_grid_of_their_arrival(self) -> None:
        """The first packet sent at 0.5 s (arriving 35 ms later) sits at 0.535 s, rounded to
        its 20 ms grid (0.54 s); every next one 960 samples on."""
        line = timeline()
        packets = stream(100)
        placed = feed(line, packets)
        first = FIRST
        assert positions(placed) == {k: first + GRID * k for k in range(100)}
        assert [number_of(p) for p in placed] == list(range(100))
        assert all(p.samples == GRID and p.payload == payload(number_of(p)) for p in placed)
        assert line.stats == TimelineStats(placed=100)
        assert_sound(placed, line, 100)

    def test_packets_are_held_for_the_hold_then_released(self) -> None:
        line = timeline()
        released: list[tuple[float, Placed]] = []
        for arrival, timestamp, data in stream(200):
            for item in line.add(arrival, timestamp, data):
                released.append((arrival, item))
        arrivals = {k: a for k, (a, _t, _d) in enumerate(stream(200))}
        assert released  # 4 s of packets: most are out before the end
        for now, item in released:
            waited = now - arrivals[number_of(item)]
            assert HOLD - 0.001 <= waited <= HOLD + 0.021, (number_of(item), waited)
        remaining = line.flush()
        assert len(released) + len(remaining) == 200
        assert 50 <= len(remaining) <= 51  # the last second

    def test_the_least_delayed_packet_sets_the_place(self) -> None:
        """A first packet delayed by 30 ms more than the rest does not shift the leg: its
        place comes from the earliest arrivals seen within the hold."""
        packets = stream(60)
        arrival, timestamp, data = packets[0]
        packets[0] = (arrival + 0.03, timestamp, data)
        placed = feed(timeline(), packets)
        assert positions(placed) == {k: FIRST + GRID * k for k in range(60)}

    def test_jitter_within_the_tolerance_does_not_move_the_leg(self) -> None:
        rng = random.Random(4)
        packets = [(a + rng.random() * 0.035, t, d) for a, t, d in stream(500)]
        line = timeline()
        placed = feed(line, packets)
        first = positions(placed)[0]
        assert positions(placed) == {k: first + GRID * k for k in range(500)}
        assert abs(first - 0.535 * RATE) <= GRID / 2
        assert line.stats.reanchored == 0

    @pytest.mark.parametrize("seed", range(6))
    def test_random_initial_timestamps(self, seed: int) -> None:
        """Where a leg's RTP clock starts says nothing: the places are the same."""
        first_timestamp = random.Random(seed).getrandbits(32)
        placed = feed(timeline(), stream(120, first_timestamp=first_timestamp))
        assert positions(placed) == positions(feed(timeline(), stream(120)))

    def test_timestamp_wrap_around(self) -> None:
        """Crossing 2**32, even with packets swapped across the wrap."""
        packets = stream(100, first_timestamp=2**32 - GRID * 40)
        packets[39], packets[40] = packets[40], packets[39]  # 40 has wrapped; 39 has not
        assert packets[39][1] < GRID and packets[40][1] > 2**32 - GRID - 1
        line = timeline()
        placed = feed(line, packets)
        assert positions(placed) == positions(feed(timeline(), stream(100)))
        assert [number_of(p) for p in placed] == list(range(100))
        assert line.stats.late == line.stats.overlapping == 0

    def test_many_wraps_over_a_long_stream(self) -> None:
        """A timestamp stepping by a quarter of the range wraps every four packets: each step
        is still forward."""
        step = 2**30
        packets = [
            (0.1 + k * step / RATE, (5 + step * k) & 0xFFFFFFFF, payload(k)) for k in range(20)
        ]
        placed = feed(timeline(), packets)
        assert len(placed) == 20
        first = positions(placed)[0]
        for k, position in positions(placed).items():
            assert abs(position - (first + step * k)) <= GRID // 2, k  # each on the 20 ms grid

    def test_g711_packets_on_the_8_khz_clock(self) -> None:
        """G.711: a packet lasts as many samples as it has bytes; 160 bytes every 20 ms."""
        line = timeline(8000, "pcmu")
        packets = [(0.261 + 0.02 * k, 77 + 160 * k, bytes((k,)) * 160) for k in range(50)]
        placed = feed(line, packets)
        assert [p.position for p in placed] == [2080 + 160 * k for k in range(50)]
        assert [p.payload[0] for p in placed] == list(range(50))

    def test_mixed_packet_lengths_never_overlap(self) -> None:
        """20 ms packets then 60 ms ones, then 10 ms: each lands on its own grid, a few ms later
        if rounding would overlap, never earlier than the one before ends."""
        packets: list[Packet] = []
        timestamp, arrival = 0, 0.32  # 16 packets in: the 60 ms ones round into the one before
        for k in range(90):
            toc, samples = (
                (TOC_20MS, 960) if k < 30 else (TOC_60MS, 2880) if k < 60 else (TOC_10MS, 480)
            )
            packets.append((arrival, timestamp, payload(k, toc)))
            timestamp += samples
            arrival += samples / RATE
        line = timeline()
        placed = feed(line, packets)
        assert [number_of(p) for p in placed] == list(range(90))
        assert_sound(placed, line, 90)
        for item, (arrival, _t, data) in zip(placed, packets, strict=True):
            assert item.samples == opus.parse(data).samples
            assert abs(item.position - arrival * RATE) <= item.samples, (number_of(item), item)


class TestDisorder:
    def test_reordering_within_the_hold(self) -> None:
        """Packets swapped, and one in five held up 50-400 ms in the network (so up to 20
        later ones overtake it): placed in timestamp order, where they would have been in
        order."""
        rng = random.Random(11)
        packets = stream(300)
        packets[5], packets[6] = packets[6], packets[5]
        delayed = [
            (a + (rng.uniform(0.05, 0.4) if k % 5 == 2 else 0.0), t, d)
            for k, (a, t, d) in enumerate(packets)
        ]
        shuffled = sorted(delayed, key=lambda packet: packet[0])
        assert [d for _a, _t, d in shuffled] != [d for _a, _t, d in packets]
        line = timeline()
        placed = feed(line, shuffled)
        assert [number_of(p) for p in placed] == list(range(300))
        assert positions(placed) == positions(feed(timeline(), stream(300)))
        assert line.stats.late == line.stats.overlapping == 0

    def test_a_packet_later_than_the_hold_is_counted_not_placed(self) -> None:
        packets = stream(200)
        arrival, timestamp, data = packets[40]
        del packets[40]
        late = (arrival + HOLD + 0.5, timestamp, data)
        index = next(i for i, p in enumerate(packets) if p[0] > late[0])
        packets.insert(index, late)
        line = timeline()
        placed = feed(line, packets)
        assert 40 not in positions(placed)
        assert positions(placed) == {
            k: v for k, v in positions(feed(timeline(), stream(200))).items() if k != 40
        }
        assert line.stats.late == 1 and line.stats.placed == 199
        assert_sound(placed, line, 200)

    def test_lost_packets_leave_gaps_of_their_length(self) -> None:
        packets = [p for k, p in enumerate(stream(200)) if k != 10 and not 50 <= k < 75]
        placed = feed(timeline(), packets)
        where = positions(placed)
        assert where[11] - where[9] == 2 * GRID  # one packet's worth of nothing
        assert where[75] - where[49] == 26 * GRID  # 25 lost, plus 49 itself
        assert where == {
            k: v for k, v in positions(feed(timeline(), stream(200))).items() if k in where
        }

    def test_dtx_keeps_the_place(self) -> None:
        """A sender that sends nothing for 3 s (its timestamps going on): the first packet
        after sits 3 s later, nothing re-anchored."""
        packets = stream(50) + [
            (a + 3.0, (t + 150 * GRID) & 0xFFFFFFFF, payload(k + 50))
            for k, (a, t, _d) in enumerate(stream(50))
        ]
        line = timeline()
        placed = feed(line, packets)
        where = positions(placed)
        assert where[50] - where[49] == 101 * GRID  # 3 s after packet 0, not after 49
        assert line.stats.reanchored == 0 and len(placed) == 100

    def test_timestamps_that_stood_still_during_a_pause(self) -> None:
        """A sender whose clock did not run while it paused for 2 s: the packets after the
        pause go where they arrived, not straight after the ones before."""
        before = stream(50)
        after = [
            (a + 1.0 + 2.0, (t + 50 * GRID) & 0xFFFFFFFF, payload(k + 50))
            for k, (a, t, _d) in enumerate(stream(100))
        ]
        line = timeline()
        placed = feed(line, before + after)
        where = positions(placed)
        for k in range(50, 150):
            arrival = after[k - 50][0]
            assert abs(where[k] - (arrival - 0.0) * RATE) <= TOLERANCE * RATE + GRID, k
        assert where[50] - where[49] >= 2.0 * RATE
        assert line.stats.reanchored == 1 and line.stats.placed == 150

    def test_a_shorter_route_moves_the_leg_back_at_once(self) -> None:
        """The network delay drops by 60 ms for good (a route change): the leg moves back at
        once, not a packet later; the 60 ms it had already placed stay, so the three packets
        that would have gone over them are dropped, the last one counted as overlapping."""
        packets = [
            (a - (0.06 if k >= 100 else 0.0), t, d) for k, (a, t, d) in enumerate(stream(200))
        ]
        line = timeline()
        placed = feed(line, packets)
        where = positions(placed)
        assert line.stats.reanchored == 1
        assert sorted(set(range(200)) - set(where)) == [100, 101, 102]
        assert line.stats.late + line.stats.overlapping == 3 and line.stats.overlapping >= 1
        assert where[103] == where[99] + GRID  # straight on, 60 ms earlier than before
        for k in range(103, 200):
            assert where[k] == FIRST + GRID * (k - 3)
        assert_sound(placed, line, 200)

    def test_duplicates_are_placed_once(self) -> None:
        """A packet repeated at once (within the hold) or a second later: one copy placed."""
        packets = stream(150)
        packets.insert(21, packets[20])
        arrival, timestamp, data = packets[60]
        repeat = (arrival + 1.5, timestamp, data)
        index = next(i for i, p in enumerate(packets) if p[0] > repeat[0])
        packets.insert(index, repeat)
        line = timeline()
        placed = feed(line, packets)
        assert [number_of(p) for p in placed] == list(range(150))
        assert positions(placed) == positions(feed(timeline(), stream(150)))
        assert line.stats.late + line.stats.overlapping == 2
        assert_sound(placed, line, 152)


class TestDrift:
    @pytest.mark.parametrize("ppm", [200, -200])
    def test_an_hour_of_clock_drift_stays_within_the_tolerance(self, ppm: int) -> None:
        """A sender's clock 200 ppm slow or fast: 0.72 s adrift after an hour if nothing
        corrected it. Every packet stays within the tolerance (plus half a packet of rounding)
        of when it was sent, at minute 59 as at minute 1; what the corrections cost (a gap,
        or a packet or two dropped where the leg moves back) stays small."""
        rng = random.Random(ppm)
        period = GRID / RATE * (1 + ppm * 1e-6)
        start, least_delay = 0.3, 0.03
        count = int(3600 / period)
        first_timestamp = rng.getrandbits(32)
        line = timeline()
        placed: list[Placed] = []
        for k in range(count):
            arrival = start + k * period + least_delay + rng.random() * 0.02
            timestamp = (first_timestamp + GRID * k) & 0xFFFFFFFF
            placed += line.add(arrival, timestamp, payload(k))
        placed += line.flush()
        errors = [p.position / RATE - (start + number_of(p) * period + least_delay) for p in placed]
        worst = max(map(abs, errors))
        assert worst <= TOLERANCE + GRID / RATE / 2 + 0.002, worst
        assert abs(errors[-1]) <= TOLERANCE + GRID / RATE / 2 + 0.002
        assert count * period * abs(ppm) * 1e-6 > 0.7  # uncorrected, it would be this far off
        assert line.stats.reanchored >= 10
        dropped = line.stats.late + line.stats.overlapping
        assert dropped <= 3 * line.stats.reanchored and dropped <= count // 1000
        assert_sound(placed, line, count)


class TestHostile:
    def test_packets_that_are_not_opus_are_counted_invalid(self) -> None:
        packets = stream(100)
        garbage = [
            b"",
            bytes((TOC_20MS | 3,)),
            bytes((TOC_20MS | 3, 0)),
            bytes((TOC_20MS | 1,)) + b"x",
        ]
        mixed: list[Packet] = []
        for k, packet in enumerate(packets):
            mixed.append(packet)
            if k % 10 == 0:
                arrival, timestamp, _data = packet
                mixed.append((arrival, timestamp + 12345, garbage[k // 10 % len(garbage)]))
        line = timeline()
        placed = feed(line, mixed)
        assert positions(placed) == positions(feed(timeline(), packets))
        assert line.stats.invalid == 10 and line.stats.placed == 100
        assert_sound(placed, line, 110)

    def test_g711_zero_length_payload_is_invalid(self) -> None:
        line = timeline(8000, "pcma")
        assert line.add(0.1, 0, b"") == [] and line.stats.invalid == 1
        assert line.flush() == [] and line.end == 0

    @pytest.mark.parametrize("jump", [2**30, -(2**30), 48_000 * 3600, -(48_000 * 3600)])
    def test_an_absurd_timestamp_jump_is_dropped_alone(self, jump: int) -> None:
        """One packet whose timestamp is hours or days off: counted, not placed, and the
        packets around it keep their places."""
        packets = stream(200)
        arrival, timestamp, data = packets[100]
        packets[100] = (arrival, (timestamp + jump) & 0xFFFFFFFF, data)
        line = timeline()
        placed = feed(line, packets)
        expected = positions(feed(timeline(), stream(200)))
        del expected[100]
        assert positions(placed) == expected
        assert line.stats.late + line.stats.overlapping == 1
        assert line.end <= (packets[-1][0] + TOLERANCE) * RATE + GRID
        assert_sound(placed, line, 200)

    def test_random_hostile_stream_never_raises_and_stays_bounded(self) -> None:
        """100k packets: random timestamps, floods at one instant, garbage and real packets of
        any length. Nothing raises; what is held never passes MAX_HELD; nothing is placed
        beyond the newest arrival (so a leg's file cannot outgrow the call)."""
        rng = random.Random(31337)
        line = timeline()
        kinds = [
            payload(0),
            payload(0, TOC_10MS),
            opus.filler(5760, conceal=False),
            opus.filler(120, conceal=True),
            b"",
            bytes((TOC_20MS | 3,)),
            b"\xff" * 7,
        ]
        arrival = 0.0
        timestamp = rng.getrandbits(32)
        held_most = 0
        total = 0
        placed: list[Placed] = []
        started = time.perf_counter()
        for k in range(100_000):
            mode = (k // 5000) % 4
            if mode == 0:  # random timestamps, real time
                arrival += 0.02
                timestamp = rng.getrandbits(32)
            elif mode == 1:  # a flood at one instant, timestamps anywhere
                timestamp = rng.getrandbits(32)
            elif mode == 2:  # a flood of near-identical timestamps
                timestamp = (timestamp + rng.choice([0, 0, 960, -960])) & 0xFFFFFFFF
            else:  # small random steps either way, time crawling
                arrival += rng.random() * 0.001
                timestamp = (timestamp + rng.randrange(-(2**20), 2**20)) & 0xFFFFFFFF
            out = line.add(arrival, timestamp, rng.choice(kinds))
            total += 1
            placed += out
            held_most = max(held_most, len(line._held), len(line._arrivals))
            if out:
                # Rounding to its grid may put a packet half its length later, and a packet of
                # another length rounded into the one before goes after it: less than its
                # length more.
                last = placed[-1]
                assert last.position < (arrival + TOLERANCE) * RATE + 1.5 * last.samples + 1
        placed += line.flush()
        elapsed = time.perf_counter() - started
        assert held_most <= MAX_HELD + 1
        assert len(line._held) == len(line._arrivals) == 0
        assert_sound(placed, line, total)
        assert line.stats.invalid > 20_000 and line.stats.placed > 100
        assert line.end < (arrival + TOLERANCE) * RATE + 2.5 * opus.MAX_PACKET_SAMPLES + 1
        assert elapsed < 6.0, elapsed

    def test_a_flood_is_placed_early_rather_than_held(self) -> None:
        """5000 packets (100 s of audio) in the same instant: at most MAX_HELD wait, the rest
        are dealt with at once, and no more than fits before their arrival is placed."""
        line = timeline()
        placed: list[Placed] = []
        for k in range(5000):
            placed += line.add(1.0, GRID * k, payload(k))
            assert len(line._arrivals) <= MAX_HELD
        stats = line.stats
        assert stats.placed + stats.late + stats.overlapping >= 5000 - MAX_HELD
        placed += line.flush()
        assert_sound(placed, line, 5000)
        assert line.end <= (1.0 + TOLERANCE) * RATE + GRID
        assert [number_of(p) for p in placed] == sorted(number_of(p) for p in placed)


# -- turns ---------------------------------------------------------------------------------------

START = 1_700_000_000.0


def at(seconds: float) -> float:
    return START + seconds


class TestTurnClock:
    def test_user_turn_from_speech_started_and_stopped(self) -> None:
        clock = TurnClock(START)
        clock.observe(
            {"type": "input_audio_buffer.speech_started", "item_id": "item_1"}, at(1.23456)
        )
        clock.observe({"type": "input_audio_buffer.speech_stopped", "item_id": "item_1"}, at(2.5))
        record = {
            "kind": "user",
            "source": "audio",
            "item_id": "item_1",
            "ts": at(9.0),
            "text": "hi",
        }
        out = clock.annotate(record)
        assert out == {**record, "offset_s": 1.235, "end_s": 2.5}
        assert "offset_s" not in record  # a copy: the record itself is not changed

    def test_speech_started_again_moves_the_start(self) -> None:
        clock = TurnClock(START)
        for seconds in (1.0, 1.5):
            clock.observe(
                {"type": "input_audio_buffer.speech_started", "item_id": "i"}, at(seconds)
            )
        assert (
            clock.annotate({"kind": "user", "source": "audio", "item_id": "i"})["offset_s"] == 1.5
        )

    def test_model_turn_from_the_output_buffer(self) -> None:
        """``response.created`` comes first, then the audio starts playing: the turn starts
        where it played, and ends where it stopped (or was cleared)."""
        clock = TurnClock(START)
        clock.observe({"type": "response.created", "response": {"id": "resp_1"}}, at(3.0))
        clock.observe({"type": "output_audio_buffer.started", "response_id": "resp_1"}, at(3.4))
        clock.observe({"type": "output_audio_buffer.stopped", "response_id": "resp_1"}, at(5.0))
        clock.observe({"type": "response.created", "response": {"id": "resp_2"}}, at(6.0))
        clock.observe({"type": "output_audio_buffer.started", "response_id": "resp_2"}, at(6.2))
        clock.observe({"type": "output_audio_buffer.cleared", "response_id": "resp_2"}, at(6.9))
        first = clock.annotate({"kind": "assistant", "response_id": "resp_1", "ts": at(9)})
        second = clock.annotate({"kind": "assistant_truncated", "response_id": "resp_2"})
        assert (first["offset_s"], first["end_s"]) == (3.4, 5.0)
        assert (second["offset_s"], second["end_s"]) == (6.2, 6.9)

    def test_response_created_is_the_fallback(self) -> None:
        """No output buffer events (e.g. a WebSocket-style upstream): the turn starts when the
        response was created; a late ``response.created`` never overrides playing."""
        clock = TurnClock(START)
        clock.observe({"type": "response.created", "response": {"id": "r1"}}, at(2.0))
        clock.observe({"type": "response.created", "response": {"id": "r1"}}, at(2.7))
        assert clock.annotate({"kind": "assistant", "response_id": "r1"}) == {
            "kind": "assistant",
            "response_id": "r1",
            "offset_s": 2.0,
        }
        clock.observe({"type": "output_audio_buffer.started", "response_id": "r2"}, at(4.0))
        clock.observe({"type": "response.created", "response": {"id": "r2"}}, at(4.5))
        assert clock.annotate({"kind": "assistant", "response_id": "r2"})["offset_s"] == 4.0

    def test_records_without_turn_events_sit_where_written(self) -> None:
        clock = TurnClock(START)
        clock.observe({"type": "input_audio_buffer.speech_started", "item_id": "typed"}, at(1.0))
        typed = clock.annotate(
            {"kind": "user", "source": "text", "item_id": "typed", "ts": at(7.25)}
        )
        assert typed["offset_s"] == 7.25  # typed text is not the spoken turn of that id
        tool = clock.annotate({"kind": "tool_call", "ts": at(8.0004)})
        assert tool["offset_s"] == 8.0
        early = clock.annotate({"kind": "assistant", "response_id": "unknown", "ts": START - 5})
        assert early["offset_s"] == 0.0
        assert "offset_s" not in clock.annotate({"kind": "assistant", "response_id": "unknown"})
        # A stop without a start gives no place; the record falls back to when it was written.
        clock.observe({"type": "output_audio_buffer.stopped", "response_id": "r9"}, at(3.0))
        stopped = clock.annotate({"kind": "assistant", "response_id": "r9", "ts": at(4.0)})
        assert stopped["offset_s"] == 4.0 and "end_s" not in stopped

    def test_hostile_events_and_records_never_raise(self) -> None:
        """Fields missing, of the wrong type, or huge: ignored, and nothing is remembered for
        them."""
        clock = TurnClock(START)
        values: list[Any] = [
            None,
            1,
            1.5,
            True,
            "",
            "x" * 10_000,
            [],
            ["item"],
            {},
            {"id": "r"},
            {"id": ["r"]},
            float("nan"),
            b"bytes",
        ]
        types = [
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "output_audio_buffer.started",
            "output_audio_buffer.stopped",
            "output_audio_buffer.cleared",
            "response.created",
        ]
        rng = random.Random(5)
        for _ in range(3000):
            event: dict[str, Any] = {}
            for key in ("type", "item_id", "response_id", "response"):
                if rng.random() < 0.7:
                    event[key] = (
                        rng.choice(types)
                        if key == "type" and rng.random() < 0.7
                        else rng.choice(values)
                    )
            clock.observe(event, at(rng.random() * 100))
        clock.observe({}, at(1))
        clock.observe({"type": ["response.created"]}, at(1))
        clock.observe({"type": {"nested": 1}}, at(1))
        # Only string ids were remembered ("x" * 10_000 and "" among them).
        assert all(isinstance(key, str) for key in clock._user) and all(
            isinstance(key, str) for key in clock._model
        )
        for _ in range(2000):
            record: dict[str, Any] = {}
            for key in ("kind", "source", "item_id", "response_id", "ts"):
                if rng.random() < 0.7:
                    record[key] = rng.choice([*values, "user", "assistant", "audio", START + 1])
            out = clock.annotate(record)
            if "offset_s" in out:
                assert isinstance(out["offset_s"], float)
                assert out["offset_s"] >= 0 or math.isnan(out["offset_s"])

    def test_bounded_number_of_turns(self) -> None:
        """A call with more turns than MAX_TRACKED keeps the first ones (and their ends)."""
        clock = TurnClock(START)
        for index in range(MAX_TRACKED + 50):
            clock.observe(
                {"type": "input_audio_buffer.speech_started", "item_id": f"i{index}"}, at(1)
            )
        assert len(clock._user) == MAX_TRACKED
        clock.observe({"type": "input_audio_buffer.speech_stopped", "item_id": "i0"}, at(2))
        clock.observe(
            {"type": "input_audio_buffer.speech_stopped", "item_id": f"i{MAX_TRACKED}"}, at(2)
        )
        first = clock.annotate({"kind": "user", "source": "audio", "item_id": "i0"})
        dropped = clock.annotate(
            {"kind": "user", "source": "audio", "item_id": f"i{MAX_TRACKED}", "ts": at(3)}
        )
        assert (first["offset_s"], first["end_s"]) == (1.0, 2.0)
        assert dropped["offset_s"] == 3.0 and "end_s" not in dropped
        for index in range(MAX_TRACKED + 50):
            clock.observe({"type": "response.created", "response": {"id": f"r{index}"}}, at(1))
        assert len(clock._model) == MAX_TRACKED
