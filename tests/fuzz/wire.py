"""Raw HTTP/1.1 on a plain socket: exactly the bytes a test wants on the wire, the answer parsed.

No HTTP client library sits in between, so a test can send what no client would: duplicate
``Content-Length`` headers, broken chunked framing, raw UTF-8 in the request line, a body that
never ends. Everything here is synchronous and thread-safe; the fuzz tests call it from a worker
thread while the gateway keeps running on the test's event loop.
"""

from __future__ import annotations

import http.client
import io
import json
import re
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Address = tuple[str, int]
Bytesish = bytes | str
Header = tuple[Bytesish, Bytesish]


def _b(value: Bytesish) -> bytes:
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value


@dataclass(frozen=True)
class Answer:
    """One HTTP response as it arrived."""

    status: int
    reason: str
    version: int  # 10 or 11, as http.client reports it
    headers: tuple[tuple[str, str], ...]
    body: bytes
    raw: bytes
    # The connection was reset before the whole body arrived: the server answered early (a 413,
    # a 400) and closed with our bytes unread, so TCP reset and dropped the rest of its answer.
    truncated: bool = False

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def content_type(self) -> str:
        return (self.header("Content-Type") or "").split(";")[0].strip().lower()

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"Answer({self.status} {self.reason!r}, {self.content_type!r}, {self.body[:300]!r})"


def request_bytes(
    method: Bytesish,
    target: Bytesish,
    headers: Sequence[Header] = (),
    body: bytes = b"",
    *,
    version: Bytesish = b"HTTP/1.1",
    host: bool = True,
    close: bool = True,
    content_length: bool = True,
) -> bytes:
    """A request with ``Host``, ``Connection: close`` and ``Content-Length`` added unless asked
    not to (or unless ``headers`` already has one). Header order and duplicates are kept."""
    names = {_b(name).lower() for name, _ in headers}
    lines = [_b(method) + b" " + _b(target) + b" " + _b(version)]
    if host and b"host" not in names:
        lines.append(b"Host: 127.0.0.1")
    lines.extend(_b(name) + b": " + _b(value) for name, value in headers)
    if close and b"connection" not in names:
        lines.append(b"Connection: close")
    framed = b"content-length" in names or b"transfer-encoding" in names
    if content_length and not framed and (body or _b(method).upper() in (b"POST", b"PUT")):
        lines.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def chunked(pieces: Sequence[bytes], *, extension: bytes = b"", trailers: bytes = b"") -> bytes:
    """``pieces`` as a chunked body (empty pieces are skipped: an empty chunk ends the body)."""
    out = [b"%x%s\r\n%s\r\n" % (len(piece), extension, piece) for piece in pieces if piece]
    return b"".join(out) + b"0\r\n" + trailers + b"\r\n"


class _Replay:
    """Just enough of a socket for :class:`http.client.HTTPResponse` to parse bytes we hold."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def makefile(self, *_: Any, **__: Any) -> io.BytesIO:
        return io.BytesIO(self._data)


def parse_answer(data: bytes, *, head: bool, eof: bool, cut_ok: bool = False) -> Answer | None:
    """The answer in ``data`` once it is complete, else None (wait for more bytes).

    ``cut_ok``: at the end of the stream, an answer whose body is cut short is returned as
    ``truncated`` instead of failing (see :attr:`Answer.truncated`)."""
    if b"\r\n\r\n" not in data and b"\n\n" not in data:
        return None
    # aiohttp answers in the version the request named ("HTTP/2.0 200 OK" to an HTTP/2.0 request
    # line over HTTP/1); http.client parses only 1.x, and the version is not what we judge.
    parsed = (
        re.sub(rb"\AHTTP/\d+\.\d+ ", b"HTTP/1.1 ", data)
        if not data.startswith(b"HTTP/1.")
        else data
    )
    response = http.client.HTTPResponse(_Replay(parsed), method="HEAD" if head else "GET")  # type: ignore[arg-type]
    truncated = False
    try:
        response.begin()
        if response.status == 101:
            body = b""
        else:
            if response.length is None and not response.chunked and not eof:
                # Delimited by the connection closing (HTTP/1.0 style): wait for the close.
                bodiless = head or response.status in (204, 304)
                if not bodiless:
                    return None
            try:
                body = response.read()
            except http.client.IncompleteRead as exc:
                if not (eof and cut_ok):
                    raise
                body, truncated = exc.partial, True
    except (http.client.IncompleteRead, http.client.RemoteDisconnected):
        # A body still arriving, or only an interim "100 Continue" so far.
        if eof:
            raise AssertionError(f"the answer was cut short: {data[:500]!r}") from None
        return None
    except http.client.HTTPException as exc:
        raise AssertionError(f"not an HTTP answer ({exc!r}): {data[:500]!r}") from None
    return Answer(
        status=response.status,
        reason=response.reason,
        version=response.version,
        headers=tuple(response.getheaders()),
        body=body,
        raw=data,
        truncated=truncated,
    )


def exchange(
    address: Address,
    data: bytes,
    *,
    head: bool = False,
    timeout: float = 10.0,
    half_close: bool = False,
    fragments: Sequence[int] = (),
    pause: float = 0.001,
) -> Answer | None:
    """Send ``data`` and return the first complete answer, or None if the server closed the
    connection without one. Raises TimeoutError if neither happens within ``timeout`` seconds.

    Sending stops as soon as the server starts answering (it has decided; a 413 need not wait
    for the rest of a huge body). ``half_close`` shuts our side down after the last byte, the
    way a client that will send nothing more does. ``fragments`` are offsets at which the bytes
    are split into separate writes, ``pause`` seconds apart, so the server's parser sees them
    in pieces.
    """
    deadline = time.monotonic() + timeout
    cuts = sorted({c for c in fragments if 0 < c < len(data)})
    bounds = list(zip([0, *cuts], [*cuts, len(data)], strict=True))
    received = bytearray()
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        view = memoryview(data)
        piece, sent, sending, reset = 0, 0, True, False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no complete answer within {timeout}s; got {bytes(received[:300])!r}"
                )
            want_write = sending and piece < len(bounds)
            readable, writable, _ = select.select(
                [sock], [sock] if want_write else [], [], remaining
            )
            if writable:
                start, end = bounds[piece]
                try:
                    sent += sock.send(view[max(start, sent) : end])
                except (BrokenPipeError, ConnectionResetError):
                    sending, reset = False, True
                if sent >= end:
                    piece += 1
                    if piece < len(bounds):
                        time.sleep(pause)  # let the fragment arrive on its own
                    elif half_close:
                        sock.shutdown(socket.SHUT_WR)
            if readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk, reset = b"", True
                sending = False
                if chunk:
                    received += chunk
                # A reset cuts what the server sent last: it closed with our bytes unread.
                answer = parse_answer(bytes(received), head=head, eof=not chunk, cut_ok=reset)
                if answer is not None:
                    return answer
                if not chunk:
                    if received:
                        raise AssertionError(f"an incomplete answer: {bytes(received[:500])!r}")
                    return None
