"""Where each packet of one leg belongs on the call's timeline.

Pure: packets in (arrival time on the call's clock, RTP timestamp, payload), placed packets out,
in order, with their position in samples from the start of the call.

Within a leg, RTP timestamps give exact spacing: a packet ``n`` samples after another belongs
``n`` samples later, whether the packets between were lost, never sent (DTX) or reordered. What
RTP cannot say is where the leg sits on the call's clock, so each packet's arrival gives an
estimate, ``offset = arrival - rtp``: network delay only ever makes it larger, so the smallest
recent offset is the best one (the least delayed packet). The timeline keeps one offset (the
anchor) and moves it only when the evidence says the leg has slipped by more than
:attr:`LegTimeline.tolerance`:

- a packet that arrives earlier than the anchor allows moves it back at once (a sender clock
  running fast, or a first packet that was itself delayed);
- when every packet held over the next :attr:`LegTimeline.hold` seconds arrives later than the
  anchor allows, it moves forward (a sender clock running slow, or a sender whose timestamps
  stood still while it paused).

So a leg's drift against the call's clock is corrected as it builds up, and no position is ever
further than about the tolerance from its arrival, at minute 1 as at minute 59. Packets are held
for ``hold`` seconds before they are placed, which puts late (reordered) packets back in order
and gives the anchor its look ahead. Positions are rounded to a multiple of the packet's own
duration, so two legs that both send 20 ms packets line up frame for frame.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

HOLD_S: Final = 1.0
TOLERANCE_S: Final = 0.04
MIN_EVIDENCE: Final = 5
"""Late packets it takes to move the anchor forward: one late packet alone is jitter."""
MAX_HELD: Final = 1000
"""Packets held at most (20 s of 20 ms packets); a flood beyond it is placed early."""


@dataclass(frozen=True)
class Placed:
    """A packet with its place: ``position`` samples after the call started."""

    position: int
    samples: int
    payload: bytes


@dataclass
class TimelineStats:
    placed: int = 0
    late: int = 0
    """Arrived after its place had been written (reordered beyond the hold), or a duplicate."""
    overlapping: int = 0
    """Would have covered audio already placed (the anchor moved back)."""
    invalid: int = 0
    """Not a packet of the leg's codec (its length could not be read)."""
    reanchored: int = 0


@dataclass(order=True)
class _Held:
    extended: int
    arrival: float = field(compare=False)
    offset: int = field(compare=False)
    samples: int = field(compare=False)
    payload: bytes = field(compare=False)
    done: bool = field(default=False, compare=False)


class LegTimeline:
    """Places the packets of one leg (one RTP clock) on the call's timeline."""

    def __init__(
        self,
        rate: int,
        duration_of: Callable[[bytes], int],
        *,
        hold: float = HOLD_S,
        tolerance: float = TOLERANCE_S,
    ) -> None:
        """``duration_of(payload)`` is a packet's length in samples; it raises ``ValueError``
        for a payload that is not a packet of the codec."""
        self.rate = rate
        self.hold = hold
        self.tolerance = round(tolerance * rate)
        self.stats = TimelineStats()
        self._duration_of = duration_of
        # The packets held, twice: by timestamp (a heap, to place them in order) and by arrival
        # (to know which are due); a packet placed through one is marked done in the other.
        self._held: list[_Held] = []
        self._arrivals: deque[_Held] = deque()
        self._last_timestamp: int | None = None
        self._last_extended = 0
        self._anchor: int | None = None
        self._end = 0  # where the last placed packet ends
        self._newest_arrival = float("-inf")

    @property
    def end(self) -> int:
        """Samples covered by what has been placed."""
        return self._end

    def add(self, arrival: float, timestamp: int, payload: bytes) -> list[Placed]:
        """Take one packet (``arrival`` in seconds on the call's clock); returns the packets
        that are now due, in order."""
        try:
            samples = self._duration_of(payload)
        except ValueError:
            samples = 0
        if samples <= 0:
            self.stats.invalid += 1
            return []
        extended = self._extend(timestamp & 0xFFFFFFFF)
        offset = round(arrival * self.rate) - extended
        held = _Held(extended, arrival, offset, samples, payload)
        heapq.heappush(self._held, held)
        self._arrivals.append(held)
        self._newest_arrival = max(self._newest_arrival, arrival)
        return self._due(self._newest_arrival - self.hold)

    def flush(self) -> list[Placed]:
        """Place everything still held (the leg has ended)."""
        return self._due(float("inf"))

    def _extend(self, timestamp: int) -> int:
        """The timestamp unwrapped from 32 bits, relative to the previous packet (which may be
        later or earlier: the difference is taken as signed)."""
        if self._last_timestamp is None:
            self._last_timestamp = timestamp
            self._last_extended = 0
            return 0
        delta = (timestamp - self._last_timestamp) & 0xFFFFFFFF
        if delta >= 1 << 31:
            delta -= 1 << 32
        self._last_timestamp = timestamp
        self._last_extended += delta
        return self._last_extended

    def _due(self, before: float) -> list[Placed]:
        """Place every held packet up to the latest timestamp among those that arrived before
        ``before`` (so a reordered packet goes before the one it was swapped with)."""
        upto: int | None = None
        arrivals = self._arrivals
        while arrivals and (arrivals[0].arrival < before or len(arrivals) > MAX_HELD):
            first = arrivals.popleft()
            if not first.done and (upto is None or first.extended > upto):
                upto = first.extended
        if upto is None:
            return []
        out: list[Placed] = []
        while self._held and self._held[0].extended <= upto:
            held = heapq.heappop(self._held)
            held.done = True
            placed = self._place(held)
            if placed is not None:
                out.append(placed)
        return out

    def _place(self, held: _Held) -> Placed | None:
        self._move_anchor(held)
        assert self._anchor is not None
        target = held.extended + self._anchor
        grid = held.samples
        position = max(0, (target + grid // 2) // grid * grid)
        if position < self._end:
            slip = self._end - position
            if slip >= grid:
                if target + held.samples <= self._end - grid:
                    self.stats.late += 1  # its place was filled long ago: reordered or repeated
                else:
                    self.stats.overlapping += 1
                return None
            position = self._end  # rounding of a packet of another length: a few ms later
        self._end = position + held.samples
        self.stats.placed += 1
        return Placed(position, held.samples, held.payload)

    def _move_anchor(self, held: _Held) -> None:
        if self._anchor is None:
            self._anchor = self._least_ahead(held)[0]
            return
        if held.offset < self._anchor - self.tolerance:
            self._anchor = held.offset
            self.stats.reanchored += 1
        elif held.offset > self._anchor + self.tolerance:
            # Only a late packet can start a late run: on-time ones skip the look ahead.
            least, seen = self._least_ahead(held)
            if least > self._anchor + self.tolerance and seen >= MIN_EVIDENCE:
                self._anchor = least
                self.stats.reanchored += 1

    def _least_ahead(self, held: _Held) -> tuple[int, int]:
        """The least offset of this packet and the held ones that arrived within ``hold``
        after it, and how many packets that is."""
        horizon = held.arrival + self.hold
        least, seen = held.offset, 1
        for other in self._held:  # the packets not placed yet, in no particular order
            if held.arrival <= other.arrival <= horizon:
                seen += 1
                least = min(least, other.offset)
        return least, seen
