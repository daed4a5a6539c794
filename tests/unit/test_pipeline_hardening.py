"""EventPipeline against a hostile browser: one throttled log line per refusal, strict parsing
of client events only, and untouched events still forwarded as the bytes received."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from gateway.call.pipeline import EventPipeline, LogThrottle
from gateway.hooks import CallInfo, Hooks
from gateway.metrics import Metrics
from gateway.policy import ClientPolicy
from gateway.protocol.events import UndecodableText
from gateway.types import Message

SESSION: dict[str, Any] = {"type": "realtime", "model": "gpt-realtime", "instructions": "Serve."}
CLIENT_LINES = ("call.client_event_rejected", "policy.violation")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(name="clock")
def _clock() -> Clock:
    return Clock()


class Browser:
    """What the browser was sent, and the pipeline under test."""

    def __init__(self, clock: Clock) -> None:
        self.sent: list[Message] = []
        self.metrics = Metrics(CollectorRegistry())
        self.pipeline = EventPipeline(
            info=CallInfo("rtc_test", None, "ga", SESSION, 0.0),
            dialect="ga",
            metrics=self.metrics,
            # No rate limit in the way: these tests send floods on purpose.
            policy=ClientPolicy(server_session=SESSION, clock=clock),
            hooks=Hooks(),
            tools=None,
            transcript=None,
            to_browser=self.sent.append,
            log_throttle=LogThrottle(clock=clock),
        )

    def errors(self) -> list[dict[str, Any]]:
        return [e["error"] for e in map(json.loads, self.sent) if e["type"] == "error"]

    def violations(self, rule: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "realtime_gateway_policy_violations_total", {"rule": rule}
        )


@pytest.fixture(name="browser")
def _browser(clock: Clock) -> Browser:
    return Browser(clock)


def client_lines(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] in CLIENT_LINES]


class TestLogThrottle:
    def test_burst_then_one_per_interval(self, clock: Clock) -> None:
        """Five lines at once, then one per ten seconds carrying what was held back."""
        throttle = LogThrottle(clock=clock)
        assert [throttle.take() for _ in range(5)] == [0] * 5
        assert [throttle.take() for _ in range(100)] == [None] * 100
        clock.now += 9.9
        assert throttle.take() is None
        clock.now += 0.1
        assert throttle.take() == 101
        assert throttle.take() is None

    def test_quiet_refills_the_burst(self, clock: Clock) -> None:
        throttle = LogThrottle(burst=2, interval=1.0, clock=clock)
        assert [throttle.take() for _ in range(3)] == [0, 0, None]
        clock.now += 60
        assert [throttle.take() for _ in range(3)] == [1, 0, None]

    def test_clock_going_backwards(self, clock: Clock) -> None:
        throttle = LogThrottle(burst=1, interval=1.0, clock=clock)
        assert throttle.take() == 0
        clock.now -= 100
        assert throttle.take() is None

    @pytest.mark.parametrize(("burst", "interval"), [(0, 1.0), (1, 0.0), (1, -1.0)])
    def test_rejects_nonsense(self, burst: int, interval: float) -> None:
        with pytest.raises(ValueError):
            LogThrottle(burst, interval)


class TestRefusalLogging:
    async def test_one_line_per_refusal(self, browser: Browser) -> None:
        """A refused event is logged once, with static fields, and answered with an error."""
        with capture_logs() as logs:
            out = await browser.pipeline.client_message('{"type":"nope","event_id":"e1"}')
        assert out is None
        assert client_lines(logs) == [
            {
                "event": "call.client_event_rejected",
                "log_level": "info",
                "call_id": "rtc_test",
                "code": "event_type_not_allowed",
                "event_type": "other",
                "suppressed": 0,
            }
        ]
        assert [(e["code"], e["event_id"]) for e in browser.errors()] == [
            ("event_type_not_allowed", "e1")
        ]

    async def test_a_flood_is_logged_a_handful_of_times_and_counted_in_full(
        self, browser: Browser, clock: Clock
    ) -> None:
        """1000 refusals: 5 lines, then one per 10 s naming how many were held back; the
        metrics, the stats and the browser's error events count every one."""
        with capture_logs() as logs:
            for _ in range(1000):
                await browser.pipeline.client_message('{"type":"nope"}')
            clock.now += 10
            await browser.pipeline.client_message('{"type":"nope"}')
        lines = client_lines(logs)
        assert [line["suppressed"] for line in lines] == [0, 0, 0, 0, 0, 995]
        assert browser.violations("event_type_not_allowed") == 1001
        assert browser.pipeline.stats.client_errors == 1001
        assert len(browser.errors()) == 1001

    async def test_every_kind_of_refusal_shares_the_budget(self, browser: Browser) -> None:
        """Malformed JSON, refused types and locked-field rewrites draw on one throttle."""
        rewrite = json.dumps(
            {"type": "session.update", "session": {"type": "realtime", "instructions": "Mine."}}
        )
        with capture_logs() as logs:
            for _ in range(10):
                await browser.pipeline.client_message("not json")
                await browser.pipeline.client_message(rewrite)
        lines = client_lines(logs)
        assert len(lines) == 5
        assert {line["event"] for line in lines} == set(CLIENT_LINES)
        assert browser.violations("locked_field") == 10
        assert browser.pipeline.stats.client_errors == 10

    async def test_a_rewrite_is_one_line(self, browser: Browser) -> None:
        """A locked field removed: forwarded, and one policy.violation line."""
        event = {"type": "session.update", "session": {"type": "realtime", "instructions": "x"}}
        with capture_logs() as logs:
            out = await browser.pipeline.client_message(json.dumps(event))
        assert out is not None and "instructions" not in json.loads(out)["session"]
        assert client_lines(logs) == [
            {
                "event": "policy.violation",
                "log_level": "info",
                "call_id": "rtc_test",
                "rule": "locked_field",
                "rewritten": True,
                "suppressed": 0,
            }
        ]
        assert browser.errors() == []

    async def test_a_huge_event_type_is_not_logged(self, browser: Browser) -> None:
        """The browser chooses the type: the log line names a bounded label instead."""
        with capture_logs() as logs:
            await browser.pipeline.client_message(json.dumps({"type": "x" * 10_000}))
        (line,) = client_lines(logs)
        assert line["event_type"] == "other"


class TestClientParsing:
    async def test_duplicate_keys_are_refused(self, browser: Browser) -> None:
        """A second copy of a key is never forwarded: the upstream might read it, not ours."""
        raw = (
            '{"type":"session.update","event_id":"e2","session":{"type":"realtime",'
            '"output_modalities":["text"],"output_modalities":["audio"]}}'
        )
        assert await browser.pipeline.client_message(raw) is None
        (error,) = browser.errors()
        assert error["code"] == "invalid_json" and "'output_modalities'" in error["message"]

    async def test_undecodable_text_is_refused(self, browser: Browser) -> None:
        assert await browser.pipeline.client_message(UndecodableText(b"\xff\xfe")) is None
        (error,) = browser.errors()
        assert error["code"] == "invalid_json" and "UTF-8" in error["message"]

    async def test_an_untouched_event_is_forwarded_as_received(self, browser: Browser) -> None:
        """The exact bytes go upstream when nothing was rewritten, odd spacing and all."""
        raw = '{ "type" : "response.cancel", "x-unknown": {"a": [1, 2]} }'
        assert await browser.pipeline.client_message(raw) is raw

    async def test_server_events_are_not_checked_for_duplicates(self, browser: Browser) -> None:
        """The upstream is trusted: its events pass as sent."""
        raw = '{"type":"rate_limits.updated","rate_limits":[],"rate_limits":[]}'
        assert await browser.pipeline.server_message(raw) is raw
