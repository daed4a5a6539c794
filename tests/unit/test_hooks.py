"""User hooks (gateway.hooks): invocation, failures that never end a call, and loading."""

from __future__ import annotations

import asyncio
import textwrap
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from gateway.config import ConfigError
from gateway.hooks import CallInfo, CallSummary, Hooks, load_hooks

INFO = CallInfo(
    call_id="rtc_1",
    upstream_call_id="rtc_up",
    dialect="ga",
    session={"type": "realtime", "model": "gpt-realtime"},
    started_at=1_700_000_000.0,
)
SUMMARY = CallSummary(
    reason="hangup",
    outcome="completed",
    duration_s=12.5,
    client_events=3,
    server_events=40,
    tokens={"input_text": 10, "output_audio": 200},
    tool_calls=1,
)
EVENT: dict[str, Any] = {"type": "response.create", "response": {"metadata": {"k": ["v"]}}}


class Recorder:
    """Sync hooks that record what they saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def on_session_start(self, info: CallInfo) -> None:
        self.seen.append(("start", info))

    def on_client_event(self, info: CallInfo, event: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(("client", event))
        return event

    def on_server_event(self, info: CallInfo, event: dict[str, Any]) -> dict[str, Any] | None:
        self.seen.append(("server", event))
        return None if event["type"] == "rate_limits.updated" else event

    def on_session_end(self, info: CallInfo, summary: CallSummary) -> None:
        self.seen.append(("end", summary))


class AsyncRecorder:
    """Async hooks that change events."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_session_start(self, info: CallInfo) -> None:
        await asyncio.sleep(0)
        self.seen.append(f"start {info.call_id}")

    async def on_client_event(self, info: CallInfo, event: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {**event, "event_id": "evt_hooked"}

    async def on_session_end(self, info: CallInfo, summary: CallSummary) -> None:
        self.seen.append(f"end {summary.outcome}")


class TestHooksInvocation:
    def test_no_target_is_inactive(self) -> None:
        """Without a target nothing is active and the relay can skip the work."""
        hooks = Hooks()
        assert not hooks.active
        assert not hooks.wants_client_events and not hooks.wants_server_events

    def test_flags_follow_defined_hooks(self) -> None:
        """wants_* say which event hooks exist."""
        hooks = Hooks(AsyncRecorder())
        assert hooks.active and hooks.wants_client_events and not hooks.wants_server_events

    async def test_events_pass_without_hooks(self) -> None:
        """A missing hook passes the event through unchanged, the same object."""
        hooks = Hooks(AsyncRecorder())
        assert await hooks.server_event(INFO, EVENT) is EVENT

    async def test_sync_hooks(self) -> None:
        """Sync hooks see the call, events and summary; they can keep or drop an event."""
        target = Recorder()
        hooks = Hooks(target)
        await hooks.session_start(INFO)
        assert await hooks.client_event(INFO, EVENT) == EVENT
        assert await hooks.server_event(INFO, {"type": "rate_limits.updated"}) is None
        await hooks.session_end(INFO, SUMMARY)
        assert [kind for kind, _ in target.seen] == ["start", "client", "server", "end"]
        assert target.seen[0][1] is INFO and target.seen[3][1] is SUMMARY

    async def test_async_hooks_change_events(self) -> None:
        """Async hooks are awaited, and the event they return is the one forwarded."""
        target = AsyncRecorder()
        hooks = Hooks(target)
        await hooks.session_start(INFO)
        changed = await hooks.client_event(INFO, EVENT)
        await hooks.session_end(INFO, SUMMARY)
        assert changed == {**EVENT, "event_id": "evt_hooked"}
        assert target.seen == ["start rtc_1", "end completed"]

    async def test_hooks_get_a_copy(self) -> None:
        """A hook editing the event in place does not touch the relay's event."""

        def on_client_event(info: CallInfo, event: dict[str, Any]) -> dict[str, Any]:
            event["response"]["metadata"]["k"].append("hooked")
            return event

        hooks = Hooks(type("T", (), {"on_client_event": staticmethod(on_client_event)})())
        original = {"type": "response.create", "response": {"metadata": {"k": ["v"]}}}
        changed = await hooks.client_event(INFO, original)
        assert changed == {
            "type": "response.create",
            "response": {"metadata": {"k": ["v", "hooked"]}},
        }
        assert original == EVENT

    async def test_callable_object_with_async_call(self) -> None:
        """An object whose __call__ is async is awaited on the loop."""

        class Dropper:
            async def __call__(self, info: CallInfo, event: dict[str, Any]) -> None:
                await asyncio.sleep(0)

        hooks = Hooks(type("T", (), {"on_server_event": Dropper()})())
        assert await hooks.server_event(INFO, EVENT) is None

    async def test_sync_hook_returning_a_coroutine(self) -> None:
        """A sync callable that returns a coroutine (a lambda around one) is awaited."""

        async def change(event: dict[str, Any]) -> dict[str, Any]:
            return {"type": "changed"}

        target = type("T", (), {})()
        target.on_client_event = lambda info, event: change(event)  # type: ignore[attr-defined]
        assert await Hooks(target).client_event(INFO, EVENT) == {"type": "changed"}

    async def test_sync_hooks_run_off_the_loop(self) -> None:
        """A sync hook runs in a worker thread, so a blocking one does not stall the loop."""
        threads: list[threading.Thread] = []

        def on_server_event(info: CallInfo, event: dict[str, Any]) -> dict[str, Any]:
            threads.append(threading.current_thread())
            return event

        hooks = Hooks(type("T", (), {"on_server_event": staticmethod(on_server_event)})())
        await hooks.server_event(INFO, EVENT)
        assert threads and threads[0] is not threading.main_thread()

    def test_non_callable_hook(self) -> None:
        """A hook attribute that is not callable is refused up front."""
        with pytest.raises(TypeError, match="on_client_event"):
            Hooks(type("T", (), {"on_client_event": 3})())

    def test_timeout_must_be_positive(self) -> None:
        """A hook timeout of zero would skip every hook; it is refused."""
        with pytest.raises(ValueError):
            Hooks(Recorder(), timeout=0)


class TestHookFailures:
    async def test_raising_hook_is_skipped(self) -> None:
        """A hook that raises is logged as hook.failed and the original event goes on."""

        class Broken:
            def on_client_event(self, info: CallInfo, event: dict[str, Any]) -> dict[str, Any]:
                event["type"] = "mangled"
                raise RuntimeError("boom")

            async def on_session_start(self, info: CallInfo) -> None:
                raise KeyError("x")

        hooks = Hooks(Broken())
        with capture_logs() as logs:
            await hooks.session_start(INFO)
            assert await hooks.client_event(INFO, EVENT) is EVENT
        assert EVENT["type"] == "response.create"
        assert [(e["event"], e["hook"], e["call_id"]) for e in logs] == [
            ("hook.failed", "on_session_start", "rtc_1"),
            ("hook.failed", "on_client_event", "rtc_1"),
        ]
        assert all(e["exc_info"] is True and e["log_level"] == "error" for e in logs)
        assert logs[1]["event_type"] == "response.create"

    async def test_async_hook_timeout(self) -> None:
        """A hanging async hook is cut off after the timeout; the event passes unchanged."""
        cancelled = asyncio.Event()

        class Hangs:
            async def on_server_event(self, info: CallInfo, event: dict[str, Any]) -> None:
                try:
                    await asyncio.sleep(3600)
                finally:
                    cancelled.set()

        hooks = Hooks(Hangs(), timeout=0.05)
        with capture_logs() as logs:
            assert await hooks.server_event(INFO, EVENT) is EVENT
        assert cancelled.is_set()
        assert logs[0]["event"] == "hook.timeout" and logs[0]["hook"] == "on_server_event"
        assert logs[0]["timeout"] == 0.05

    async def test_sync_hook_timeout(self) -> None:
        """A blocking sync hook times out too, without holding up the event loop."""
        release = threading.Event()

        def on_session_end(info: CallInfo, summary: CallSummary) -> None:
            release.wait(5)

        hooks = Hooks(
            type("T", (), {"on_session_end": staticmethod(on_session_end)})(), timeout=0.05
        )
        try:
            with capture_logs() as logs:
                await hooks.session_end(INFO, SUMMARY)
            assert [e["event"] for e in logs] == ["hook.timeout"]
        finally:
            release.set()

    async def test_hook_raising_timeout_error_is_a_failure(self) -> None:
        """A hook's own TimeoutError is reported as a failure, not as the hook timing out."""

        async def on_client_event(info: CallInfo, event: dict[str, Any]) -> None:
            raise TimeoutError("the database timed out")

        hooks = Hooks(type("T", (), {"on_client_event": staticmethod(on_client_event)})())
        with capture_logs() as logs:
            assert await hooks.client_event(INFO, EVENT) is EVENT
        assert [e["event"] for e in logs] == ["hook.failed"]

    @pytest.mark.parametrize(
        "returned",
        [
            "response.create",
            {"no_type": True},
            {"type": 5},
            [EVENT],
            {"type": "x", "obj": object()},
        ],
    )
    async def test_bad_return(self, returned: Any) -> None:
        """Anything but None or a JSON event with a string type is refused; the event passes."""

        def on_client_event(info: CallInfo, event: dict[str, Any]) -> Any:
            return returned

        hooks = Hooks(type("T", (), {"on_client_event": staticmethod(on_client_event)})())
        with capture_logs() as logs:
            assert await hooks.client_event(INFO, EVENT) is EVENT
        assert [e["event"] for e in logs] == ["hook.bad_return"]
        assert logs[0]["returned"] == type(returned).__name__

    async def test_cancellation_propagates(self) -> None:
        """Cancelling the relay while a hook runs cancels, rather than being logged as a failure."""
        started = asyncio.Event()

        async def on_client_event(info: CallInfo, event: dict[str, Any]) -> None:
            started.set()
            await asyncio.sleep(3600)

        hooks = Hooks(type("T", (), {"on_client_event": staticmethod(on_client_event)})())
        task = asyncio.create_task(hooks.client_event(INFO, EVENT))
        await started.wait()
        task.cancel()
        with capture_logs() as logs, pytest.raises(asyncio.CancelledError):
            await task
        assert logs == []


def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    name = f"hooks_{uuid.uuid4().hex}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


class TestLoadHooks:
    @pytest.mark.parametrize("spec", [None, "", "   "])
    def test_unset_is_inactive(self, spec: str | None) -> None:
        """No GATEWAY_HOOKS gives inactive hooks."""
        assert not load_hooks(spec).active

    async def test_class_is_instantiated(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A class named in the spec is instantiated with no arguments."""
        name = write_module(
            tmp_path,
            monkeypatch,
            """
            class Audit:
                def __init__(self):
                    self.count = 0
                def on_server_event(self, info, event):
                    self.count += 1
                    return {**event, "count": self.count}
            """,
        )
        hooks = load_hooks(f"{name}:Audit")
        assert hooks.wants_server_events and not hooks.wants_client_events
        assert await hooks.server_event(INFO, {"type": "x"}) == {"type": "x", "count": 1}
        assert await hooks.server_event(INFO, {"type": "x"}) == {"type": "x", "count": 2}

    async def test_instance_and_module(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An instance is used as is, and so is a module (with or without ':')."""
        name = write_module(
            tmp_path,
            monkeypatch,
            """
            import types
            async def on_client_event(info, event):
                return None
            hooks = types.SimpleNamespace(on_session_start=lambda info: None)
            """,
        )
        assert load_hooks(f"{name}:hooks").active
        module_hooks = load_hooks(name)
        assert await module_hooks.client_event(INFO, EVENT) is None

    def test_dotted_attribute(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """obj may be a dotted path inside the module."""
        name = write_module(
            tmp_path,
            monkeypatch,
            """
            class Outer:
                class Inner:
                    def on_session_end(self, info, summary):
                        pass
            """,
        )
        assert load_hooks(f"{name}:Outer.Inner").active

    @pytest.mark.parametrize(
        ("source", "spec", "match"),
        [
            ("", "{name}:missing", "has no attribute 'missing'"),
            ("raise RuntimeError('bad config')", "{name}:x", "RuntimeError: bad config"),
            ("def broken(:\n", "{name}:x", "SyntaxError"),
            ("class H:\n    def __init__(self, x): pass\n", "{name}:H", "no arguments"),
            ("x = 1\n", "{name}:x", "defines none of on_session_start"),
            ("class H:\n    on_client_event = 'nope'\n", "{name}:H", "must be callable"),
            ("", "{name}:", "must look like"),
            ("", ":obj", "must look like"),
        ],
    )
    def test_errors_name_the_setting(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        source: str,
        spec: str,
        match: str,
    ) -> None:
        """Every way loading can fail is a ConfigError naming GATEWAY_HOOKS and the cause."""
        name = write_module(tmp_path, monkeypatch, source)
        with pytest.raises(ConfigError, match=match) as info:
            load_hooks(spec.format(name=name))
        assert "GATEWAY_HOOKS" in str(info.value)

    def test_missing_module(self) -> None:
        """A module that does not exist is named in the error."""
        with pytest.raises(ConfigError, match="cannot import 'no_such_module_xyz'"):
            load_hooks("no_such_module_xyz:hooks")

    def test_timeout_is_passed_on(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """load_hooks hands its timeout to the hooks."""
        name = write_module(tmp_path, monkeypatch, "def on_session_start(info): pass\n")
        assert load_hooks(name, timeout=1.5).timeout == 1.5
