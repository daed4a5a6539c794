"""The page's own files, served from memory with OpenAI-shaped errors.

aiohttp's ``add_static``/``FileResponse`` decide some answers (a missing file, a failed
``If-Match``, an unsatisfiable ``Range``) inside ``prepare()``, after every middleware has
returned, so those left as empty ``application/octet-stream`` bodies that no error handler
saw (tests/fuzz/FINDINGS.md F4). The page is a few small files, so they are read once at
startup instead: a request can only name a file that was under the web root then (no
dot-files, no symlinks that lead out of it), which also rules out path traversal by
construction, and every refusal is a :class:`~gateway.errors.GatewayError` the error
middleware shapes.

Conditional requests are honoured (``If-None-Match``/``If-Modified-Since`` give 304, a failed
``If-Match``/``If-Unmodified-Since`` gives 412); ``Range`` is ignored, which RFC 9110 §14.2
allows, so a range request gets the whole file.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

import structlog
from aiohttp import web

from gateway.errors import GatewayError, NotFound

log = structlog.get_logger(__name__)

# A page's scripts and styles are kilobytes; anything this large does not belong in memory.
MAX_FILE_BYTES = 8 * 1024 * 1024

_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".svg": "image/svg+xml"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str  # the opaque tag, unquoted
    mtime: int  # whole seconds: HTTP dates have no finer resolution

    @property
    def last_modified(self) -> str:
        return formatdate(self.mtime, usegmt=True)


class PreconditionFailed(GatewayError):
    status = 412
    type = "invalid_request_error"
    code = "precondition_failed"


def load(root: Path) -> dict[str, StaticFile]:
    """Every regular file under ``root``, keyed by its path relative to it ("ui/meter.js")."""
    files: dict[str, StaticFile] = {}
    for path in _regular_files(root):
        stat = path.stat()
        name = path.relative_to(root).as_posix()
        if stat.st_size > MAX_FILE_BYTES:
            log.warning("static.file_skipped", file=name, bytes=stat.st_size, limit=MAX_FILE_BYTES)
            continue
        body = path.read_bytes()
        files[name] = StaticFile(
            body=body,
            content_type=content_type(path.name),
            etag=f"{stat.st_mtime_ns:x}-{len(body):x}",
            mtime=int(stat.st_mtime),
        )
    return files


def _regular_files(root: Path, real_root: Path | None = None) -> Iterator[Path]:
    """Files under ``root``; a symlinked file only if it stays inside, a symlinked directory
    never (no cycles, no second name for a tree)."""
    real_root = real_root or root.resolve()
    for path in sorted(root.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_symlink():
            if path.is_file() and path.resolve().is_relative_to(real_root):
                yield path
        elif path.is_dir():
            yield from _regular_files(path, real_root)
        elif path.is_file():
            yield path


def content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def precondition(request: web.BaseRequest, file: StaticFile) -> int | None:
    """RFC 9110 §13.2.2, for one representation: 412, 304, or ``None`` to send the file."""
    if_match = request.if_match
    if if_match is not None:
        if not any(tag.value in ("*", file.etag) and not tag.is_weak for tag in if_match):
            return 412
    elif _after(file.mtime, request.if_unmodified_since):
        return 412
    if_none_match = request.if_none_match
    if if_none_match is not None:
        if any(tag.value in ("*", file.etag) for tag in if_none_match):
            return 304
    elif (since := request.if_modified_since) is not None and not _after(file.mtime, since):
        return 304
    return None


def _after(mtime: int, moment: datetime | None) -> bool:
    return moment is not None and mtime > moment.timestamp()


def respond(request: web.BaseRequest, file: StaticFile) -> web.Response:
    headers = {"ETag": f'"{file.etag}"', "Last-Modified": file.last_modified}
    status = precondition(request, file)
    if status == 412:
        raise PreconditionFailed(
            "The file does not match the request's If-Match or If-Unmodified-Since condition."
        )
    if status == 304:
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, content_type=file.content_type, headers=headers)


def add_routes(app: web.Application, root: Path, *, index: str = "index.html") -> None:
    """``/`` serves ``index`` and ``/static/{path}`` every other file loaded from ``root``."""
    files = load(root)
    if index not in files:
        return
    page = files[index]

    async def serve_page(request: web.Request) -> web.Response:
        return respond(request, page)

    async def serve_file(request: web.Request) -> web.Response:
        file = files.get(request.match_info["path"])
        if file is None:
            raise NotFound(f"No such file: {request.path}.")
        return respond(request, file)

    app.router.add_get("/", serve_page)
    app.router.add_get("/static/{path:.+}", serve_file)
