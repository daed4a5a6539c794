"""The fuzz harness: a gateway under fuzz with a live call to watch, and Hypothesis driving it.

The gateway runs on the test's event loop (pytest-aiohttp's test server, the fixtures of
tests/functional). Hypothesis runs in a worker thread and talks to it over raw sockets
(tests/fuzz/wire.py), so the loop stays free to serve the requests and to keep the live call's
audio and events flowing. After the fuzzing, back on the loop, the live call must still relay
events both ways, ``/healthz`` must answer, and no call the fuzz opened may be left behind.

Everything logged while the fuzz runs goes through the logging production configures
(``gateway.log.configure``, at debug level), redaction included, and the oracle scans it: no key,
no client secret and no unhandled error in any line, stdlib (aiohttp's own, FINDINGS.md F9) or
structlog.

``FUZZ_SCALE`` (default 1) multiplies every test's example count, for a longer run by hand:
``FUZZ_SCALE=20 pytest tests/fuzz``. Runs are derandomized: the same examples every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from structlog.testing import capture_logs

from gateway import log
from gateway.emulator import Emulator
from tests.functional.conftest import GATEWAY_KEY, state_of
from tests.fuzz.oracle import Oracle
from tests.fuzz.strategies import Probe
from tests.fuzz.wire import Address, Answer, exchange, request_bytes
from tests.support.peer import TestPeer

Client = TestClient[web.Request, web.Application]

FUZZ_SCALE = float(os.environ.get("FUZZ_SCALE", "1"))


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=max(1, round(examples * FUZZ_SCALE)),
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {timeout}s: {what}") from None


@dataclass
class Target:
    """The gateway under fuzz, its live call, and the oracle judging every answer."""

    client: Client
    emulator: Emulator
    peer: TestPeer
    oracle: Oracle
    live_call_id: str
    base_offer: str
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # error codes of JSON errors
    tokens: list[str] = field(default_factory=list)  # client secrets minted for the fuzz
    logs: LogScan | None = None  # while fuzzing

    @property
    def address(self) -> Address:
        server = self.client.server
        assert server.host is not None and server.port is not None
        return server.host, server.port

    # -- thread side: plain sockets only, nothing of the event loop --------------------------

    def probe(self, probe: Probe) -> Answer | None:
        """Send one hostile request and judge the answer; end any call it opened."""
        answer = exchange(
            self.address,
            probe.data,
            head=probe.head,
            half_close=probe.half_close,
            fragments=probe.fragments,
            pause=probe.pause,
        )
        if answer is None:
            assert probe.may_go_unanswered, "the connection closed without an answer"
            _event("no answer")
            return None
        _event(f"status {answer.status}")
        self.statuses[answer.status] += 1
        self.oracle.check(
            answer,
            request=probe.data,
            head=probe.head,
            parser_may_reject=probe.parser_may_reject,
        )
        if answer.status >= 400 and answer.content_type == "application/json" and answer.body:
            self.codes[str(answer.json()["error"]["code"])] += 1
        if answer.status == 201 and answer.content_type == "application/sdp":
            self.hang_up(answer)
        if self.logs is not None:
            self.logs.check()
        return answer

    def hang_up(self, answer: Answer) -> None:
        """A damaged offer that still made a call: end it, as its browser would."""
        location = answer.header("Location")
        assert location is not None and location.startswith("/v1/realtime/calls/rtc_")
        assert location.rsplit("/", 1)[1] != self.live_call_id
        data = request_bytes(
            "POST", location + "/hangup", [("Authorization", f"Bearer {GATEWAY_KEY}")]
        )
        done = exchange(self.address, data, timeout=15)
        assert done is not None and done.status == 200, done

    def assert_serving(self) -> None:
        answer = exchange(self.address, request_bytes("GET", "/healthz"), timeout=5)
        assert answer is not None and answer.status == 200, f"/healthz after a probe: {answer!r}"

    def mint(self) -> str:
        data = request_bytes(
            "POST",
            "/v1/realtime/client_secrets",
            [("Authorization", f"Bearer {GATEWAY_KEY}"), ("Content-Type", "application/json")],
            b"{}",
        )
        answer = exchange(self.address, data)
        assert answer is not None and answer.status == 200, answer
        token = str(answer.json()["value"])
        self.tokens.append(token)
        return token

    # -- loop side --------------------------------------------------------------------------

    async def fuzz(
        self,
        strategy: st.SearchStrategy[Probe],
        examples: int,
        *,
        after_each: Callable[[], None] | None = None,
    ) -> None:
        """Run ``strategy``'s examples through :meth:`probe` in a worker thread."""

        @fuzz_settings(examples)
        @given(probe=strategy)
        def run(probe: Probe) -> None:
            self.probe(probe)
            if after_each is not None:
                after_each()

        with scanned_logs(self.oracle, self.tokens) as logs:
            self.logs = logs
            try:
                await asyncio.to_thread(run)
                await asyncio.sleep(0.2)  # what the last examples log, a little after answering
                logs.check()
            finally:
                self.logs = None

    async def assert_undisturbed(self) -> None:
        """The live call still relays both ways, nothing the fuzz opened is left, all serve."""
        state = state_of(self.client)
        await wait_until(
            lambda: [c.call_id for c in state.calls] == [self.live_call_id] and state.pending == 0,
            timeout=15,
            what="only the live call left",
        )
        call = state.calls.get(self.live_call_id)
        upstream = self.emulator.calls[call.upstream_call_id or ""]
        marker = "fuzz-" + secrets.token_hex(6)
        self.peer.send(
            {
                "type": "conversation.item.create",
                "event_id": "evt_" + marker,
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": marker}],
                },
            }
        )
        await wait_until(
            lambda: any(e.get("event_id") == "evt_" + marker for e in upstream.received_events),
            what="the client event reaching the upstream",
        )
        await wait_until(
            lambda: any(
                e["type"] == "conversation.item.added" and marker in json.dumps(e)
                for e in self.peer.events
            ),
            what="the server event reaching the browser",
        )
        response = await self.client.get("/healthz")
        assert response.status == 200


@dataclass
class LogScan:
    """What was logged: stdlib lines as production's handler writes them, structlog events as
    production's processors leave them (before rendering)."""

    oracle: Oracle
    tokens: list[str]
    handler: logging.StreamHandler[io.StringIO]
    events: list[MutableMapping[str, Any]]
    events_seen: int = 0

    def check(self) -> None:
        """Judge what was logged since the last check."""
        with self.handler.lock or contextlib.nullcontext():  # emit() writes on the loop's thread
            text = self.handler.stream.getvalue()
            self.handler.stream.seek(0)
            self.handler.stream.truncate()
        events = list(self.events)  # appended to on the loop's thread
        new = text.splitlines() + [
            json.dumps(event, default=repr) for event in events[self.events_seen :]
        ]
        self.events_seen = len(events)
        self.oracle.check_logs(new, secrets=self.tokens)


@contextlib.contextmanager
def scanned_logs(oracle: Oracle, tokens: list[str]) -> Iterator[LogScan]:
    """Capture all logging as production writes it, at its most verbose: ``gateway.log.configure``
    at debug level (the root at DEBUG, aiohttp's access log at WARNING), whose stdlib handler is
    kept, writing here, and whose structlog processors (all but the renderer) see every event.
    structlog itself stays configured as the tests have it: loggers cached under production's
    configuration would escape later tests' ``capture_logs``."""
    root, access = logging.getLogger(), logging.getLogger("aiohttp.access")
    handlers, levels = root.handlers[:], (root.level, access.level)
    configured = structlog.get_config()
    try:
        log.configure("debug", "json", oracle.secrets)
        (handler,) = root.handlers
        processors = structlog.get_config()["processors"][:-1]
    finally:
        structlog.configure(**configured)
        root.handlers[:] = handlers
    assert isinstance(handler, logging.StreamHandler), handler
    handler.setStream(io.StringIO())
    root.addHandler(handler)
    try:
        with capture_logs(processors=processors) as events:
            yield LogScan(oracle, tokens, handler, events)
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        access.setLevel(levels[1])


def _event(name: str) -> None:
    """Count ``name`` in Hypothesis' statistics (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(name)


TargetFactory = Callable[..., Awaitable[Target]]
