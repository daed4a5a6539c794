"""Timed data-channel events and how a call is found again on the upstream side."""

from __future__ import annotations

import json

import pytest

from gateway.protocol.catalog import CLIENT_EVENT_TYPES, SERVER_EVENT_TYPES
from gateway_bench.audio import MarkerLoop
from gateway_bench.probe import (
    EventStream,
    ProbeRegistry,
    client_event,
    event_seq,
    server_event,
)


class TestEvents:
    def test_events_are_documented_types(self) -> None:
        """The gateway refuses undocumented client event types, so ours are documented ones."""
        assert client_event(0)["type"] in CLIENT_EVENT_TYPES
        assert server_event(0)["type"] in SERVER_EVENT_TYPES

    def test_server_event_is_transcript_sized(self) -> None:
        """Down events weigh what a transcript delta weighs (a couple of hundred bytes)."""
        assert 150 <= len(json.dumps(server_event(12345))) <= 400

    def test_round_trip(self) -> None:
        """A sent event's arrival is logged once, against its own send time."""
        stream = EventStream(client_event)
        first = stream.next_message(10.0)
        second = stream.next_message(10.5)
        assert stream.receive(second, 10.502) and stream.receive(first, 10.7)
        assert stream.receive(first, 11.0)  # a repeat keeps the first arrival
        sent, latencies = stream.window(0.0, 20.0)
        assert sent == 2 and latencies == pytest.approx([700.0, 2.0])

    def test_foreign_messages_are_counted_with_their_text(self) -> None:
        """The gateway's error events are not ours: counted, and what they said is kept."""
        stream = EventStream(server_event)
        error = {"type": "error", "error": {"code": "event_rate", "message": "Too many"}}
        assert not stream.receive(json.dumps(error), 1.0)
        assert not stream.receive("not json", 1.0)
        assert stream.other == 2
        assert "event_rate" in stream.errors[0]

    def test_event_seq(self) -> None:
        """Only our own event ids parse."""
        assert event_seq(json.dumps(client_event(42))) == 42
        assert event_seq('{"event_id": "bench_x"}') is None
        assert event_seq('{"event_id": "evt_42"}') is None
        assert event_seq("[]") is None


class TestRegistry:
    def test_found_by_its_key_in_the_instructions(self) -> None:
        """The upstream finds a call by the key the client put in session.instructions."""
        probes = ProbeRegistry(MarkerLoop.build())
        probe = probes.new()
        assert probes.find({"type": "realtime", "instructions": probe.key}) is probe
        assert probes.find({"instructions": "bench:unknown"}) is None
        assert probes.find(None) is None
        probes.forget(probe)
        assert probes.find({"instructions": probe.key}) is None
