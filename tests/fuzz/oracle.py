"""What every answer to hostile input must look like, whatever the input was.

* never a 5xx;
* a 4xx from the gateway is OpenAI-shaped JSON, ``{"error": {message, type, code, param}}``;
  the only other 400 allowed is aiohttp's own parser refusing the framing (bad request line,
  oversized header, broken chunked encoding) before any of our code runs, and only where a test
  sends such framing on purpose;
* no traceback, no Python exception name, no configured key, nothing from outside ``web/``;
* a successful body that is not JSON, SDP or metrics is a file of ``web/`` (or a range of one);
* every answer of the gateway's own carries the hardening headers (errors too);
* no log line, redacted as production redacts it, holds a key or a client secret, and none is
  an unhandled error (a 500 the client may never have seen).
"""

from __future__ import annotations

import builtins
import inspect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import http_exceptions

import gateway.errors
from tests.fuzz.wire import Answer

REPO = Path(__file__).resolve().parents[2]
WEB_DIR = REPO / "web"


def _exception_names() -> frozenset[str]:
    names = set()
    for module in (builtins, http_exceptions, gateway.errors, json):
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException):
                names.add(name)
    return frozenset(names)


# "Traceback", a source location, or the name of an exception class we could plausibly leak.
_LEAK = re.compile(
    rb"Traceback \(most recent call last\)|File \"[^\"]*\.py\", line \d+|\b(?:"
    + b"|".join(sorted(n.encode() for n in _exception_names()))
    + rb")\b"
)

# aiohttp answers framing it cannot parse itself, with text/plain, before any middleware runs.
PARSER_REJECTION_TYPES = ("text/plain",)

# What gateway.server.middlewares.harden puts on every answer, errors included (FINDINGS.md F12).
HARDENING = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Targets aiohttp does not rewrite (no dot segment, no escape) whose answers are the page's.
_PAGE_TARGET = re.compile(rb"\A(?:/|/static/[A-Za-z0-9_-]+(?:\.[A-Za-z0-9]+)?)\Z")
# The gateway's catch-all for an exception it did not translate: a 500.
UNHANDLED_EVENTS = ("http.unhandled_error",)


def _files(root: Path) -> dict[str, bytes]:
    """The files the web root may serve: inside it once symlinks are resolved."""
    root = root.resolve()
    inside = (p for p in root.rglob("*") if p.is_file() and p.resolve().is_relative_to(root))
    return {str(p.relative_to(root)): p.read_bytes() for p in inside}


@dataclass
class Oracle:
    """The checks, holding what must never leave: keys and bytes of files outside the web root."""

    secrets: tuple[str, ...]
    web_dir: Path = WEB_DIR
    outside: tuple[bytes, ...] = ()
    web_files: dict[str, bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.web_files = _files(self.web_dir)
        if not self.outside:
            self.outside = default_outside_snippets()

    def check(
        self,
        answer: Answer,
        *,
        request: bytes = b"",
        head: bool = False,
        parser_may_reject: bool = False,
    ) -> None:
        """Every universal rule; raises AssertionError naming the broken one.

        ``request`` is what was sent: an exception name the request itself carried (a path
        echoed in a 404 message) is an echo, not a leak.
        """
        assert answer.status < 500, f"a {answer.status}: {answer!r}"
        for secret in self.secrets:
            if secret.encode() in answer.raw:
                # aiohttp's parser quotes the bytes it refuses; a key the request itself sent
                # comes back to the sender, which is no leak (its log line is redacted, and the
                # harness hands every log line to check_logs: FINDINGS.md F9).
                echo = self.is_parser_rejection(answer) and secret.encode() in request
                assert echo, f"a configured key leaked: {answer!r}"
        for snippet in self.outside:
            assert snippet not in answer.raw, f"a file outside web/ was served: {answer!r}"
        if answer.status >= 400:
            self._check_error(answer, head=head, parser_may_reject=parser_may_reject)
        else:
            self._check_success(answer, head=head)
        if not self.is_parser_rejection(answer) and answer.status != 101:
            self._check_hardened(answer, request)
        if not self._is_web_file(answer):
            for leak in _LEAK.finditer(answer.raw):
                assert leak.group(0) in request, f"{leak.group(0)!r} in an answer: {answer!r}"

    def _check_error(self, answer: Answer, *, head: bool, parser_may_reject: bool) -> None:
        if self.is_parser_rejection(answer):
            assert parser_may_reject, f"aiohttp refused well-formed framing: {answer!r}"
            return
        assert answer.content_type == "application/json", f"not a JSON error: {answer!r}"
        if head:
            return  # HEAD answers carry headers only
        if answer.truncated:
            assert b'{"error": {"message": '.startswith(answer.body[:22]), repr(answer)
            return
        assert_openai_error(answer)

    @staticmethod
    def _check_hardened(answer: Answer, request: bytes) -> None:
        """The hardening headers, on errors as on successes (FINDINGS.md F12); the page's
        policy on the page's answers. (A 101 is prepared by the WebSocket before any
        middleware returns; aiohttp's parser refusals never reach the application.)"""
        for name, value in HARDENING.items():
            assert answer.header(name) == value, f"{name} missing: {answer!r} {answer.headers}"
        assert answer.header("Cache-Control"), f"no Cache-Control: {answer!r} {answer.headers}"
        method, _, rest = request.partition(b" ")
        target = rest.split(b" ", 1)[0]
        # (CONNECT's target is an authority, not a path: "/" there is no page.)
        if method != b"CONNECT" and _PAGE_TARGET.match(target.split(b"?", 1)[0]):
            assert answer.header("Content-Security-Policy"), f"no CSP: {answer!r}"

    def check_logs(self, lines: Sequence[str], *, secrets: Iterable[str] = ()) -> None:
        """Log lines as production writes them: no configured key, no client secret (``secrets``:
        the ones minted for the fuzz), no unhandled error."""
        for line in lines:
            for secret in (*self.secrets, *secrets):
                assert secret not in line, f"a key in the logs: {line[:2000]}"
            for event in UNHANDLED_EVENTS:
                assert event not in line, f"an unhandled error in the logs: {line[:4000]}"

    def _check_success(self, answer: Answer, *, head: bool) -> None:
        kind = answer.content_type
        if head:
            assert answer.body == b"", repr(answer)
        elif kind == "application/json":
            json.loads(answer.body)
        elif kind == "application/sdp":
            assert answer.status == 201 and answer.body.startswith(b"v=0"), repr(answer)
            assert (answer.header("Location") or "").startswith("/v1/realtime/calls/rtc_")
        elif answer.body and not self._is_web_file(answer):
            assert kind == "text/plain" and b"# HELP " in answer.body, f"unexpected: {answer!r}"

    def _is_web_file(self, answer: Answer) -> bool:
        """A 2xx whose body is a whole file of the web root (200) or a slice of one (206)."""
        if answer.status == 200:
            return any(answer.body == content for content in self.web_files.values())
        if answer.status == 206:
            return any(answer.body in content for content in self.web_files.values())
        return False

    @staticmethod
    def is_parser_rejection(answer: Answer) -> bool:
        return (
            answer.status == 400
            and answer.content_type in PARSER_REJECTION_TYPES
            and not answer.body.startswith(b"{")
        )


def assert_openai_error(answer: Answer) -> None:
    try:
        body = answer.json()
    except ValueError:
        raise AssertionError(f"an error body that is not JSON: {answer!r}") from None
    assert isinstance(body, dict) and set(body) == {"error"}, repr(answer)
    error = body["error"]
    assert isinstance(error, dict), repr(answer)
    assert set(error) == {"message", "type", "code", "param"}, repr(answer)
    assert isinstance(error["message"], str) and error["message"], repr(answer)
    assert isinstance(error["type"], str) and error["type"], repr(answer)
    assert error["code"] is None or isinstance(error["code"], str), repr(answer)
    assert error["param"] is None or isinstance(error["param"], str), repr(answer)


def default_outside_snippets() -> tuple[bytes, ...]:
    """Distinctive lines of files a path traversal would aim at: none may ever be served."""
    snippets = [
        b'name = "realtime-gateway"',  # pyproject.toml
        b"This is the only module that knows environment variable names",  # gateway/config.py
        b"root:x:0:",  # /etc/passwd
    ]
    return tuple(snippets)
