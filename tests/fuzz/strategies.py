"""Hypothesis strategies for hostile HTTP input: paths, headers, bodies, SDP offers, framing.

Two families. *Well-formed framing* (:func:`requests`, :func:`sdp_requests`, ...) is HTTP/1.1
that any parser accepts, so every answer must come from the gateway's own code; it carries the
oddities in the places an application sees them: paths, queries, header values, bodies.
*Hostile framing* (:func:`framing_attacks`, :func:`header_attacks`) breaks HTTP itself; aiohttp's
parser may refuse it with a plain 400 before any gateway code runs.

Cases that expose a known, still open gateway bug are left out on purpose, each next to a
reference to FINDINGS.md, so the suite stays green until it is fixed; FINDINGS.md has the
reproducers. The fixed findings (F1 to F15) are all generated again here.
"""

from __future__ import annotations

import gzip
import json
import string
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

from hypothesis import strategies as st

from tests.fuzz.wire import Header, chunked, request_bytes

# -- building blocks ------------------------------------------------------------------------

# Strings that have broken parsers before: empty, NUL, direction overrides, BOMs, surrogate
# neighbours, case-folding surprises, dot segments, number edge cases, markup, very long.
NASTY = (
    "",
    " ",
    "\t",
    "\x00",
    "\x7f",
    "\u0085",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\uffff",
    "\U0001f4a5",
    "\u0130",
    "\ufb03",
    "\u00e9",
    "e\u0301",
    "..",
    "../",
    "..\\",
    "%",
    "%00",
    "%2e%2e",
    "%252e%252e",
    "null",
    "NaN",
    "-1",
    "0",
    "1e999",
    "9" * 40,
    "{}",
    "[]",
    "<script>alert(1)</script>",
    "' OR '1'='1",
    "${jndi:ldap://x}",
    "a" * 600,
)

odd_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(st.characters(codec="utf-8"), max_size=24),
)
# Header values that any HTTP parser accepts: visible ASCII, spaces and tabs inside.
field_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
    str.strip
)
token = st.text(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~", min_size=1, max_size=16)
# Characters that may stand raw in a path or query (RFC 3986 pchar, plus a stray "%").
PATH_SAFE = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%"


def pct(text: str) -> str:
    """``text`` percent-encoded as UTF-8, nothing left raw but unreserved characters."""
    return quote(text, safe="")


# -- routes ---------------------------------------------------------------------------------

ENDPOINTS: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/realtime/client_secrets"),
    ("POST", "/v1/realtime/calls"),
    ("GET", "/v1/realtime/calls"),
    ("GET", "/v1/realtime/calls/{call_id}"),
    ("POST", "/v1/realtime/calls/{call_id}/hangup"),
    ("POST", "/v1/realtime/sessions"),
    ("POST", "/v1/realtime?model={model}"),
    ("GET", "/v1/realtime?call_id={call_id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/"),
    ("POST", "/demo/token"),
    ("POST", "/demo/live"),
    ("GET", "/static/{file}"),
    ("POST", "/v1/live/sessions"),
    ("POST", "/v1/live/sessions/{call_id}/hangup"),
    ("POST", "/v1/live/sessions/{call_id}/fork"),
    ("GET", "/v1/live/sessions/{call_id}/attach"),
    ("GET", "/v1/live/sessions/{call_id}/content"),
    ("GET", "/v1/realtime/calls/{call_id}/content"),
)
# Not ours: OpenAI paths the gateway does not serve, and the usual scanner targets.
NOT_OURS: tuple[tuple[str, str], ...] = (
    ("POST", "/v1/realtime/transcription_sessions"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/v1/models"),
    ("GET", "/.env"),
    ("GET", "/favicon.ico"),
)
# Methods aiohttp's (llhttp's) parser knows; any other token ("get", "BREW") it refuses itself
# with a plain 400, so those go in framing_attacks().
METHODS = st.sampled_from(
    "GET POST PUT DELETE PATCH HEAD OPTIONS TRACE PROPFIND COPY LOCK MKCOL MOVE SEARCH PURGE "
    "REPORT M-SEARCH NOTIFY LINK QUERY".split()
)
STATIC_FILES = (
    "index.html",
    "app.js",
    "style.css",
    "favicon.svg",
    "ui",
    "",
    "nope.js",
    ".htaccess",
)
MODELS = ("gpt-realtime", "gpt-4o-realtime-preview", "", "../../etc/passwd")


def call_ids(live_call_id: str, *, include_live: bool = True) -> st.SearchStrategy[str]:
    """Ids of calls that do not exist, in every spelling, and the live call's where it is safe
    (``include_live``: routes that only read, never one that would end it)."""
    ids = st.one_of(
        st.just("rtc_" + "0" * 32),
        st.text("0123456789abcdef", min_size=0, max_size=40).map(lambda s: "rtc_" + s),
        odd_text.map(pct),
    )
    return ids | st.just(live_call_id) if include_live else ids


def ends_the_live_call(target: str, live_call_id: str) -> bool:
    return "hangup" in unquote(target).lower() and live_call_id in unquote(target)


PATH_MANGLERS = (
    lambda p: p + "/",
    lambda p: "/" + p,
    lambda p: p.replace("/", "//"),
    lambda p: p.upper(),
    lambda p: p + "/..",
    lambda p: p + "/./",
    lambda p: p + ";x=1",
    lambda p: p + "%00",
    lambda p: p + "%2F..%2F",
    lambda p: "".join(f"%{ord(c):02X}" if c.isalpha() else c for c in p),
)


@st.composite
def paths(draw: st.DrawFn, live_call_id: str) -> tuple[str, str]:
    """(method the route expects, request target): every endpoint, then mutated."""
    routes = NOT_OURS if draw(st.integers(0, 7)) == 0 else ENDPOINTS
    method, template = draw(st.sampled_from(routes))
    # The fuzz must never end the live call it watches.
    call_id = draw(call_ids(live_call_id, include_live="hangup" not in template))
    path = template.format(
        call_id=call_id,
        model=pct(draw(st.sampled_from(MODELS) | odd_text)),
        file=draw(st.sampled_from(STATIC_FILES) | odd_text.map(pct)),
    )
    path, _, query = path.partition("?")
    # Mostly the route as it is, so that most requests reach a handler; sometimes mangled.
    if draw(st.integers(0, 3)) == 0:
        path = draw(st.sampled_from(PATH_MANGLERS))(path)
    if draw(st.integers(0, 5)) == 0:
        path += "/" + draw(odd_text.map(pct) | st.text(PATH_SAFE, max_size=12))
    if draw(st.integers(0, 2)) == 0:
        query = draw(queries())
    return method, path + ("?" + query if query else "")


def queries() -> st.SearchStrategy[str]:
    keys = st.sampled_from(["model", "call_id", "x", "", "model[]", "callback"]) | odd_text
    pairs = st.lists(st.tuples(keys, odd_text), max_size=4)
    return st.one_of(
        st.just(""),
        pairs.map(lambda items: urlencode(items, encoding="utf-8", errors="surrogatepass")),
        st.text(PATH_SAFE + "=&?/", max_size=30),
        st.just("model=gpt-realtime&model=other&call_id=&call_id=x"),
    )


# -- headers --------------------------------------------------------------------------------


def authorizations(gateway_key: str) -> st.SearchStrategy[str | None]:
    """No header, the right key in odd spellings, wrong schemes, wrong and odd tokens."""
    return st.one_of(
        st.none(),
        st.sampled_from(
            [
                f"Bearer {gateway_key}",
                f"bearer {gateway_key}",
                f"BEARER   {gateway_key}   ",
                f"Bearer {gateway_key}x",
                f"Bearer {gateway_key[:-1]}",
                f"Basic {gateway_key}",
                f"Token {gateway_key}",
                gateway_key,
                "Bearer",
                "Bearer ",
                "Bearer ek_",
                "Bearer ek_" + "A" * 43,
                "Bearer sk-" + "A" * 40,
                "Basic dXNlcjpwYXNz",
                "Negotiate YIIF",
                "Digest username=x",
                "Bearer a b c",
            ]
        ),
        st.tuples(token, field_text).map(lambda t: f"{t[0]} {t[1]}"),
    )


CONTENT_TYPES = (
    "application/sdp",
    "APPLICATION/SDP",
    "application/sdp; charset=utf-8",
    "application/sdp; charset=utf-16",
    "application/sdp;;;",
    "application/json",
    "application/json; charset=latin-1",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=x",
    'multipart/form-data; boundary="a b"',
    "multipart/mixed; boundary=x",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "*/*",
    ";",
    "",
)


def content_types() -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.none(),
        st.sampled_from(CONTENT_TYPES),
        st.tuples(token, token, field_text).map(lambda t: f"{t[0]}/{t[1]}; {t[2]}"),
    )


# Ordinary request headers with hostile values; all well-formed HTTP. Content-Encoding comes with
# a body to match it, or not (encoded()).
EXTRA_HEADER_NAMES = tuple(
    "Accept Accept-Encoding Accept-Language Origin Referer User-Agent Cookie X-Forwarded-For "
    "X-Forwarded-Proto X-Real-IP X-OpenAI-Agents-SDK OpenAI-Beta OpenAI-Safety-Identifier "
    "Range If-None-Match If-Modified-Since If-Range If-Match If-Unmodified-Since Expect "
    "Access-Control-Request-Method "
    "Access-Control-Request-Headers Sec-WebSocket-Protocol Upgrade X-Http-Method-Override".split()
)
RANGES = (
    "bytes=0-0",
    "bytes=0-",
    "bytes=-1",
    "bytes=5-2",
    "bytes=0-1,3-4",
    "bytes=999999999-",
    "bytes=-0",
    "bytes=",
    "items=0-1",
)


def extra_headers() -> st.SearchStrategy[list[tuple[str, str]]]:
    """Distinct names: aiohttp's parser refuses a second User-Agent (and a few others) itself,
    which header_attacks() covers."""
    one = st.one_of(
        st.tuples(st.sampled_from(EXTRA_HEADER_NAMES), field_text),
        st.tuples(st.just("Range"), st.sampled_from(RANGES)),
        st.tuples(st.just("Origin"), st.sampled_from(["null", "https://evil.example", "*"])),
        st.tuples(token.map(lambda t: "X-" + t), field_text),
    )
    return st.lists(one, max_size=5, unique_by=lambda header: header[0].lower())


# -- bodies ---------------------------------------------------------------------------------

JSON_KEYS = tuple(
    "type session expires_after anchor seconds model voice instructions audio input output "
    "format turn_detection transcription tools tool_choice modalities output_modalities "
    "input_audio_format output_audio_format input_audio_transcription client_secret "
    "temperature max_response_output_tokens tracing prompt include __proto__".split()
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    odd_text,
    st.sampled_from(["realtime", "transcription", "created_at", "semantic_vad", "pcm16"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(JSON_KEYS) | odd_text, inner, max_size=5),
    ),
    max_leaves=24,
)


@dataclass(frozen=True)
class Nested:
    """A JSON value nested ``depth`` levels deep, kept as text: ``json.dumps`` recurses itself,
    and fails near Python's recursion limit, well before the depths worth sending."""

    depth: int
    text: str

    def __repr__(self) -> str:
        return f"Nested(depth={self.depth}, {len(self.text)} chars)"


# Around the gateway's limit on sessions (100 levels, FINDINGS.md F15) and where Python's
# recursion limit (1000) bites: json.loads from ~990 levels, a deepcopy (a beta session's, the
# emulator's) from ~490 (F2, F3, F15); and far past it, up to the 64 KiB body limit and beyond
# it (a 413).
DEEP = (
    99,
    100,
    101,
    400,
    489,
    490,
    491,
    500,
    700,
    900,
    950,
    980,
    989,
    990,
    991,
    1000,
    1001,
    2000,
    5000,
    30000,
    40000,
)


@st.composite
def nested(draw: st.DrawFn) -> Nested:
    """Lists and objects (a short pattern, repeated) around a scalar, up to 40 000 deep."""
    depth = draw(st.integers(1, 200) | st.sampled_from(DEEP) | st.integers(1, 40000))
    pattern = draw(st.lists(st.none() | st.sampled_from(JSON_KEYS), min_size=1, max_size=3))
    opens = ["[" if key is None else "{" + json.dumps(key) + ": " for key in pattern]
    closes = ["]" if key is None else "}" for key in pattern]
    inner = json.dumps(draw(json_scalars), ensure_ascii=False)
    head = "".join(opens[level % len(pattern)] for level in range(depth))
    tail = "".join(closes[level % len(pattern)] for level in reversed(range(depth)))
    return Nested(depth, head + inner + tail)


def to_json(value: Any) -> str:
    """``json.dumps`` (NaN and all, not ASCII-escaped), with :class:`Nested` values as they are."""
    if isinstance(value, Nested):
        return value.text
    if isinstance(value, dict):
        items = (f"{json.dumps(k, ensure_ascii=False)}: {to_json(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


@st.composite
def session_like(draw: st.DrawFn) -> Any:
    """Close to a real ``client_secrets``/``sessions`` body, one field at a time gone wrong."""
    body: dict[str, Any] = {}
    if draw(st.booleans()):
        body["expires_after"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "anchor": st.sampled_from(["created_at", "expires_at"]) | json_scalars,
                    "seconds": st.integers(-(2**65), 2**65) | json_scalars,
                },
            )
            | json_values
        )
    if draw(st.booleans()):
        body["session"] = draw(
            st.fixed_dictionaries(
                {},
                optional={
                    "type": st.sampled_from(["realtime", "transcription"]) | json_values,
                    "model": json_values,
                    "instructions": json_values,
                    "audio": json_values,
                    "tools": json_values,
                    "tool_choice": json_values,
                    "output_modalities": json_values,
                },
            )
            | json_values
            | nested()
        )
    for key in draw(st.lists(st.sampled_from(JSON_KEYS), max_size=4)):
        body[key] = draw(json_values | nested())
    return body


def json_documents() -> st.SearchStrategy[bytes]:
    """JSON bodies, well-formed or nearly, in UTF-8 (or not)."""
    document = st.one_of(json_values, session_like(), nested())
    text = document.map(to_json)
    utf8 = text.map(lambda s: s.encode("utf-8", "surrogatepass"))
    return st.one_of(
        utf8,
        utf8,
        utf8,
        text.map(lambda s: s.encode("utf-16")),
        st.tuples(text, st.integers(0, 40)).map(lambda t: t[0][: t[1]].encode("utf-8", "ignore")),
        st.sampled_from([b"", b" ", b"{", b"}", b"null", b'"\\ud800"', b"\xff\xfe{}", b"\x00"]),
    )


# The codings the gateway inflates, in every spelling, and ones it refuses (a 415).
CONTENT_ENCODINGS = (
    "gzip",
    "deflate",
    "GZIP",
    " Deflate ",
    "x-gzip",
    "identity",
    "gzip, deflate",
    "br",
    "zstd",
    "compress",
    "*",
)


def _compress(encoding: str, data: bytes, raw: bool = False) -> bytes:
    if "gzip" in encoding.lower():
        return gzip.compress(data)
    if raw:  # deflate without its zlib header, which some clients send
        packer = zlib.compressobj(wbits=-15)
        return packer.compress(data) + packer.flush()
    return zlib.compress(data)


@st.composite
def encoded(draw: st.DrawFn, body: bytes) -> tuple[Header, bytes]:
    """A ``Content-Encoding`` header and ``body`` under it: compressed, or not what it claims
    (FINDINGS.md F6 and F13: not compressed at all, cut short, with bytes after the end), or a
    small bomb that inflates past every body limit."""
    encoding = draw(st.sampled_from(CONTENT_ENCODINGS))
    how = draw(
        st.sampled_from(["right", "right", "raw-deflate", "plain", "cut", "trailing", "bomb"])
    )
    if how == "plain":
        data = body
    elif how == "bomb":
        data = _compress(encoding, b"[" * draw(st.sampled_from([70_000, 1 << 20, 16 << 20])))
    else:
        data = _compress(encoding, body, raw=how == "raw-deflate")
    if how == "cut":
        data = data[: draw(st.integers(0, max(0, len(data) - 1)))]
    elif how == "trailing":
        data += draw(st.binary(min_size=1, max_size=16))
    return ("Content-Encoding", encoding), data


def bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        json_documents(),
        odd_text.map(lambda s: s.encode("utf-8")),
        st.binary(max_size=512),
        st.lists(odd_text, max_size=6).map(lambda ls: "\r\n".join(ls).encode("utf-8")),
    )


# -- SDP offers -----------------------------------------------------------------------------

SDP_ATTRIBUTES = tuple(
    "rtpmap fmtp rtcp-fb candidate fingerprint setup mid ice-ufrag ice-pwd ice-options ssrc "
    "ssrc-group extmap group msid msid-semantic rtcp rtcp-mux sctp-port sctpmap "
    "max-message-size rid simulcast sendrecv inactive end-of-candidates".split()
)
sdp_junk = st.one_of(
    st.sampled_from(NASTY),
    st.integers(-(2**40), 2**70).map(str),
    st.text(string.printable.strip() + " ", max_size=30),
    st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20),
)


def _sections(lines: Sequence[str]) -> list[list[str]]:
    out: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            out.append([])
        out[-1].append(line)
    return out


SDP_EDITS = "delete duplicate swap value insert mline section truncate".split()


@st.composite
def sdp_offers(draw: st.DrawFn, base: str) -> str:
    """A real offer, damaged by a few random edits of the kinds real clients get wrong."""
    lines = base.strip().splitlines()
    for _ in range(draw(st.integers(1, 5))):
        index = draw(st.integers(0, len(lines) - 1))
        edit = draw(st.sampled_from(SDP_EDITS))
        if edit == "delete" and len(lines) > 1:
            del lines[index]
        elif edit == "duplicate":
            lines.insert(index, lines[index])
        elif edit == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif edit == "value":
            line = lines[index]
            cut = line.find(":") + 1 or line.find("=") + 1
            keep = draw(st.integers(cut, max(cut, len(line))))
            lines[index] = line[:keep] + draw(sdp_junk)
        elif edit == "insert":
            name = draw(st.sampled_from(SDP_ATTRIBUTES))
            extra = draw(
                st.one_of(
                    sdp_junk.map(f"a={name}:".__add__),
                    st.tuples(st.sampled_from("vosctmabkeiuzr"), sdp_junk).map("=".join),
                    sdp_junk,
                )
            )
            lines.insert(index, extra)
        elif edit == "mline":
            mlines = [i for i, line in enumerate(lines) if line.startswith("m=")]
            if mlines:
                at = draw(st.sampled_from(mlines))
                parts = lines[at].split(" ")
                field_at = draw(st.integers(0, len(parts) - 1))
                parts[field_at] = (parts[field_at][:2] if field_at == 0 else "") + draw(sdp_junk)
                lines[at] = " ".join(parts)
        elif edit == "section":
            sections = _sections(lines)
            if len(sections) > 1:
                copy = list(draw(st.sampled_from(sections[1:])))
                new_mid = draw(st.sampled_from(["0", "1", "7", "x", "", "audio", "\u00e9"]))
                copy = [f"a=mid:{new_mid}" if line.startswith("a=mid:") else line for line in copy]
                lines.extend(copy * draw(st.integers(1, 3)))
        elif edit == "truncate":
            lines = lines[: index + 1]
    newline = draw(st.sampled_from(["\r\n", "\n", "\r", "\r\n\r\n", " \r\n"]))
    sdp = newline.join(lines) + draw(st.sampled_from([newline, "", "\x00", "\r\n\x1a"]))
    prefix = draw(st.sampled_from(["", "\ufeff", " ", "\r\n", "v=0\r\n"]))
    return prefix + sdp


def offers(base: str) -> st.SearchStrategy[str]:
    """Damaged real offers, free-form ones, and plain garbage: among them offers aiortc parses
    but cannot answer (FINDINGS.md F1: no direction, a shared mid, two data channels, a BUNDLE
    group naming other mids), which the edits make often."""
    free_form = st.lists(
        st.tuples(st.sampled_from("vosctmab"), sdp_junk).map("=".join), max_size=12
    ).map(lambda ls: "v=0\r\n" + "\r\n".join(ls))
    return st.one_of(
        sdp_offers(base),
        sdp_offers(base),
        sdp_offers(base),
        free_form,
        odd_text,
        st.just(base),
    )


# Part header lines aiohttp refuses (FINDINGS.md F10): no colon, a control character, a name
# that is not a token, a folded line.
BAD_PART_HEADERS = (
    b"Content-Disposition form-data",
    b"Content-\x01Disposition: form-data; name=sdp",
    b"X-Junk: a\x00b",
    b"X Junk: 1",
    b": no name",
    b" folded: line",
    b"\x7f",
)


@st.composite
def multipart_bodies(draw: st.DrawFn, sdp: st.SearchStrategy[str]) -> tuple[str, bytes]:
    """(Content-Type, body): multipart/form-data with an ``sdp`` and a ``session`` part, each
    present or not, well-framed or not."""
    boundary = draw(st.sampled_from(["x", "----b0undary", "a" * 70, "==", "\u00e9"]))
    crlf = b"\r\n"
    damage = draw(
        st.sampled_from(["none", "none", "none", "no-end", "no-crlf", "lf", "prefix", "cut"])
    )
    parts: list[bytes] = []
    names = draw(
        st.lists(
            # Control characters too: aiohttp refuses them in a part header (FINDINGS.md F10).
            st.sampled_from(
                ["sdp", "session", "SDP", "", "sdp\u00e9", "other", "sdp[]", "sdp\x7f", "\x00"]
            ),
            max_size=4,
        )
    )
    for name in names:
        disposition = draw(
            st.sampled_from(
                [
                    f'form-data; name="{name}"',
                    f"form-data; name={name}",
                    f"form-data; name*=utf-8''{pct(name)}",
                    f'form-data; name="{name}"; filename="../../x.sdp"',
                    "form-data",
                    "attachment",
                    "",
                ]
            )
        )
        headers = [b"Content-Disposition: " + disposition.encode("utf-8")]
        part_type = draw(
            st.sampled_from(
                [
                    None,
                    "application/sdp",
                    "application/json",
                    "text/plain",
                    "multipart/mixed; boundary=y",
                ]
            )
        )
        if part_type:
            headers.append(b"Content-Type: " + part_type.encode())
        if draw(st.integers(0, 5)) == 0:
            headers.append(b"Content-Transfer-Encoding: base64")
        if draw(st.integers(0, 7)) == 7:
            headers.insert(
                draw(st.integers(0, len(headers))), draw(st.sampled_from(BAD_PART_HEADERS))
            )
        if name.lower() == "sdp":
            content = draw(sdp).encode("utf-8", "surrogatepass")
        elif name == "session":
            content = draw(json_documents())
        else:
            content = draw(bodies())
        if draw(st.integers(0, 5)) == 5:
            # Past aiohttp's 8 KiB read chunk, where a body without its closing boundary used to
            # be a 500 (FINDINGS.md F11); the sizes stay under the 64 KiB SDP limit.
            size = draw(st.sampled_from([8191, 8192, 8193, 9000, 16385, 40000]))
            content = (content or b"a") * (size // max(1, len(content)) + 1)
            content = content[:size]
        parts.append(crlf.join(headers) + crlf + crlf + content)
    delimiter = b"--" + boundary.encode("utf-8")
    body = b"".join(delimiter + crlf + part + crlf for part in parts) + delimiter + b"--" + crlf
    if damage == "no-end":
        body = body[: -len(delimiter) - 4]
    elif damage == "no-crlf":
        body = body.replace(crlf, b"")
    elif damage == "lf":
        body = body.replace(crlf, b"\n")
    elif damage == "prefix":
        body = b"preamble\r\n" + body
    elif damage == "cut":
        # Anywhere, inside a part's headers too (FINDINGS.md F10).
        body = body[: draw(st.integers(0, len(body)))]
    declared = draw(
        st.sampled_from(
            [
                f"multipart/form-data; boundary={boundary}",
                f'multipart/form-data; boundary="{boundary}"',
                "multipart/form-data; boundary=other",
                "multipart/form-data",
            ]
        )
    )
    return declared, body


# -- requests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """A request to send and how to judge its answer."""

    data: bytes
    head: bool = False
    parser_may_reject: bool = False  # hostile framing: aiohttp may refuse it itself
    may_go_unanswered: bool = False  # an incomplete request the server may just drop
    half_close: bool = False
    fragments: tuple[int, ...] = ()
    pause: float = 0.001  # between fragments, in seconds

    def __repr__(self) -> str:
        data = self.data if len(self.data) <= 2000 else self.data[:2000] + b"..."
        flags = f"half_close={self.half_close}, fragments={self.fragments}, pause={self.pause}"
        return f"Probe({data!r}, {len(self.data)} bytes, {flags})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # Hypothesis' printer: a 4 MiB body stays out of reports


def _latin1(value: str) -> bytes:
    return value.encode("latin-1", "replace")


@st.composite
def requests(draw: st.DrawFn, gateway_key: str, live_call_id: str) -> Probe:
    """Any endpoint, any method, odd auth, content type, headers and body; well-formed HTTP."""
    expected, target = draw(paths(live_call_id))
    method = draw(st.just(expected) | METHODS)
    headers: list[Header] = []
    auth = draw(st.just(f"Bearer {gateway_key}") | authorizations(gateway_key))
    if auth is not None:
        headers.append(("Authorization", _latin1(auth)))
    kind = draw(content_types())
    if kind is not None:
        headers.append(("Content-Type", _latin1(kind)))
    headers += [(name, _latin1(value)) for name, value in draw(extra_headers())]
    body = draw(bodies()) if method not in ("GET", "HEAD") or draw(st.booleans()) else b""
    if draw(st.integers(0, 5)) == 5:
        header, body = draw(encoded(body))
        headers.append(header)
    assert not ends_the_live_call(target, live_call_id), target
    return Probe(request_bytes(method, target, headers, body), head=method == "HEAD")


@st.composite
def sdp_requests(
    draw: st.DrawFn, gateway_key: str, base_offer: str, tokens: Sequence[str] = ()
) -> Probe:
    """A call request (GA or beta) with a damaged offer, raw or multipart."""
    path = draw(st.sampled_from(["/v1/realtime/calls", "/v1/realtime?model=gpt-realtime"]))
    key = draw(st.sampled_from([gateway_key, gateway_key, *tokens]))
    headers: list[Header] = [("Authorization", f"Bearer {key}")]
    if draw(st.booleans()) or "model" in path:
        offer = draw(offers(base_offer))
        kind = draw(
            st.sampled_from(
                ["application/sdp", "application/sdp; charset=utf-8", "APPLICATION/SDP"]
            )
        )
        encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"]))
        body = offer.encode(encoding, "replace")
    else:
        kind, body = draw(multipart_bodies(offers(base_offer)))
    headers.append(("Content-Type", kind.encode("utf-8")))
    if draw(st.integers(0, 7)) == 7:
        header, body = draw(encoded(body))
        headers.append(header)
    return Probe(request_bytes("POST", path, headers, body))


@st.composite
def json_requests(draw: st.DrawFn, gateway_key: str) -> Probe:
    """Minting, GA and beta, and the demo token, with hostile JSON."""
    path = draw(
        st.sampled_from(["/v1/realtime/client_secrets", "/v1/realtime/sessions", "/demo/token"])
    )
    kind = draw(st.sampled_from(["application/json", "", "application/octet-stream"]))
    headers: list[Header] = [("Authorization", f"Bearer {gateway_key}")]
    if kind:
        headers.append(("Content-Type", kind))
    body = draw(json_documents())
    if draw(st.integers(0, 4)) == 4:
        header, body = draw(encoded(body))
        headers.append(header)
    return Probe(request_bytes("POST", path, headers, body))


# -- hostile framing ------------------------------------------------------------------------

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Long enough for the gateway's handler to be reading the body when the next piece arrives.
PAUSE_IN_BODY = 0.05


@st.composite
def sideband_requests(draw: st.DrawFn, gateway_key: str, live_call_id: str) -> Probe:
    """WebSocket handshakes on the sideband, complete or not, with odd auth and call ids:
    each part is right half the time, so some handshakes succeed (a 101 on the live call)."""
    call_id = draw(st.just(live_call_id) | call_ids(live_call_id))
    query = draw(
        st.sampled_from([f"call_id={pct(call_id)}", f"call_id={call_id}&call_id=x", "", "call_id="])
    )
    headers: list[Header] = []
    for name, right, wrong in (
        ("Upgrade", "websocket", ["WebSocket", "h2c", "", "websocket, h2c"]),
        ("Connection", "Upgrade", ["upgrade, keep-alive", "close", "keep-alive"]),
        ("Sec-WebSocket-Key", WS_KEY, ["", "not base64", "AAAA", WS_KEY + "=="]),
        ("Sec-WebSocket-Version", "13", ["8", "", "99999999999", "13, 8"]),
    ):
        choice = draw(st.integers(0, 3))
        if choice < 2:
            headers.append((name, right))
        elif choice == 2:
            headers.append((name, draw(st.sampled_from(wrong) | field_text)))
    protocols = draw(
        st.lists(
            st.sampled_from(
                [
                    "realtime",
                    f"openai-insecure-api-key.{gateway_key}",
                    "openai-insecure-api-key.",
                    "openai-insecure-api-key.wrong",
                    "openai-beta.realtime-v1",
                    "",
                ]
            ),
            max_size=3,
        )
    )
    if protocols:
        headers.append(("Sec-WebSocket-Protocol", ", ".join(protocols)))
    auth = draw(st.just(f"Bearer {gateway_key}") | authorizations(gateway_key))
    if auth is not None:
        headers.append(("Authorization", _latin1(auth)))
    close = not any(name == "Connection" for name, _ in headers)
    return Probe(request_bytes("GET", "/v1/realtime?" + query, headers, close=close))


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


HEADER_ATTACKS = (
    "huge-value huge-name many unicode-value unicode-auth raw-bytes duplicate-type "
    "duplicate-host no-host fold empty-name space-before-colon ctl origin preflight br"
).split()


ORIGINS = (
    "https://evil.example",
    "http://app.example",
    "https://app.example.evil.example",
    "https://APP.EXAMPLE",
    "https://app.example:443",
    "null",
    "file://",
)


@st.composite
def header_attacks(draw: st.DrawFn, gateway_key: str, live_call_id: str) -> Probe:
    """Well-routed requests whose headers are hostile: huge, duplicated, non-ASCII, folded."""
    method, target = draw(paths(live_call_id))
    if method == "POST" and "hangup" not in target:
        body = draw(bodies())
    else:
        body = b""
    headers: list[tuple[bytes, bytes]] = []
    for _ in range(draw(st.integers(0, 2))):
        headers.append((b"Authorization", _utf8(draw(authorizations(gateway_key)) or "")))
    attacks = draw(
        st.lists(
            st.sampled_from(HEADER_ATTACKS),
            min_size=1,
            max_size=3,
        )
    )
    host = True
    for attack in attacks:
        if attack == "huge-value":
            size = draw(st.sampled_from([1000, 8000, 8190, 8191, 9000, 70000]))
            headers.append((b"X-Big", b"v" * size))
        elif attack == "huge-name":
            headers.append((b"X-" + b"n" * draw(st.sampled_from([100, 8190, 9000])), b"1"))
        elif attack == "many":
            count = draw(st.sampled_from([50, 101, 200, 1000]))
            headers += [(b"X-H%d" % i, b"%d" % i) for i in range(count)]
        elif attack == "unicode-value":
            headers.append((b"X-Unicode", _utf8(draw(odd_text))))
        elif attack == "unicode-auth":
            headers.append((b"Authorization", b"Bearer " + _utf8(draw(odd_text))))
        elif attack == "raw-bytes":
            headers.append((b"X-Raw", draw(st.binary(min_size=1, max_size=40))))
        elif attack == "duplicate-type":
            headers += [
                (b"Content-Type", b"application/sdp"),
                (b"Content-Type", b"application/json"),
            ]
        elif attack == "duplicate-host":
            headers += [(b"Host", b"a.example"), (b"Host", b"b.example")]
        elif attack == "no-host":
            host = False
        elif attack == "fold":
            headers.append((b"X-Folded", b"first\r\n  continued"))
        elif attack == "empty-name":
            headers.append((b"", b"value"))
        elif attack == "space-before-colon":
            # The real key, in a line aiohttp refuses, echoes and logs (FINDINGS.md F9): the
            # harness scans the logs for it.
            headers.append((b"Authorization ", _utf8(f"Bearer {gateway_key}")))
        elif attack == "ctl":
            headers.append((b"X-Ctl", b"a\x00b\x01c\x7f"))
        elif attack == "origin":
            # Origins a browser sends, near the allowlisted one or not, and odd text: enough of
            # them plain enough to pass the parser and meet the allowlist (a 403 or not).
            origin = st.sampled_from(ORIGINS) | odd_text | st.just("https://app.example")
            headers.append((b"Origin", _utf8(draw(origin))))
        elif attack == "preflight":
            headers += [
                (b"Origin", b"https://app.example"),
                (b"Access-Control-Request-Method", _utf8(draw(odd_text))),
                (b"Access-Control-Request-Headers", _utf8(draw(odd_text))),
            ]
            method = "OPTIONS"
        elif attack == "br":
            # Codings nothing here inflates: the gateway's 415 (requests() sends the others).
            headers.append((b"Content-Encoding", draw(st.sampled_from([b"br", b"zstd"]))))
    assert not ends_the_live_call(target, live_call_id), target
    data = request_bytes(method, target, headers, body, host=host)
    return Probe(data, head=method == "HEAD", parser_may_reject=True)


FRAMING_ATTACKS = (
    "request-line version raw-target lf-only leading-crlf http09 content-length cl-and-te "
    "te-values chunked-valid chunked-broken stalled truncated pipelined fragmented garbage"
).split()


@st.composite
def framing_attacks(draw: st.DrawFn, gateway_key: str) -> Probe:
    """Broken HTTP: request lines, versions, Content-Length and chunked framing, pipelining."""
    auth = (b"Authorization", _utf8(f"Bearer {gateway_key}"))
    json_type = (b"Content-Type", b"application/json")
    target = draw(
        st.sampled_from(["/v1/realtime/client_secrets", "/v1/realtime/calls", "/healthz"])
    )
    body = draw(json_documents())
    attack = draw(st.sampled_from(FRAMING_ATTACKS))
    headers = [auth, json_type]
    # The type the target reads its body as, so that its handler is reading when framing breaks.
    sdp_type = (b"Content-Type", b"application/sdp")
    reads = [auth, sdp_type] if target == "/v1/realtime/calls" else headers
    if attack == "request-line":
        bad_method = draw(
            st.sampled_from([b"G ET", b"GET\x00", b"\xffGET", b"", b"GET GET", b"(GET)", b"get"])
            | st.from_regex(rb"\A[A-Za-z!#$%&'*+.^_`|~-]{1,12}\Z")
        )
        line = bad_method + b" " + target.encode() + b" HTTP/1.1\r\nConnection: close\r\n\r\n"
        return Probe(line, parser_may_reject=True)
    if attack == "version":
        version = draw(
            st.sampled_from(
                [b"HTTP/1.0", b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.1.1", b"http/1.1", b"HTTP/", b""]
            )
        )
        data = request_bytes("POST", target, headers, body, version=version)
        return Probe(data, parser_may_reject=True)
    if attack == "raw-target":
        raw = draw(
            st.one_of(
                odd_text.map(lambda s: _utf8("/" + s)),
                st.binary(max_size=30).map(lambda b: b"/" + b),
                st.sampled_from(
                    [b"*", b"http://127.0.0.1/healthz", b"//x", b"/a#b", b"/a b", b"127.0.0.1:1"]
                ),
            )
        )
        method = draw(st.sampled_from(["GET", "POST", "CONNECT", "OPTIONS"]))
        return Probe(request_bytes(method, raw, headers, body), parser_may_reject=True)
    if attack == "lf-only":
        data = request_bytes("POST", target, headers, body).replace(b"\r\n", b"\n")
        return Probe(data, parser_may_reject=True)
    if attack == "leading-crlf":
        return Probe(
            b"\r\n\r\n" + request_bytes("POST", target, headers, body), parser_may_reject=True
        )
    if attack == "http09":
        return Probe(b"GET " + target.encode() + b"\r\n\r\n", parser_may_reject=True)
    if attack == "content-length":
        value = draw(
            st.sampled_from(
                [
                    b"-1",
                    b"abc",
                    b"1e3",
                    b"0x10",
                    b" 5",
                    b"+5",
                    b"99999999999999999999999",
                    b"5, 5",
                    b"",
                ]
            )
        )
        data = request_bytes("POST", target, [*headers, (b"Content-Length", value)], body)
        duplicate = draw(st.booleans())
        if duplicate:
            data = data.replace(b"Content-Length", b"Content-Length: 1\r\nContent-Length", 1)
        return Probe(data, parser_may_reject=True, may_go_unanswered=True, half_close=True)
    if attack == "cl-and-te":
        framed = [
            *headers,
            (b"Content-Length", b"%d" % len(body)),
            (b"Transfer-Encoding", b"chunked"),
        ]
        return Probe(request_bytes("POST", target, framed, body), parser_may_reject=True)
    if attack == "te-values":
        value = draw(
            st.sampled_from(
                [b"gzip", b"chunked, chunked", b"identity", b"chunked;q=1", b"xchunked", b"\x00"]
            )
        )
        data = request_bytes("POST", target, [*headers, (b"Transfer-Encoding", value)], body)
        return Probe(data, parser_may_reject=True, may_go_unanswered=True, half_close=True)
    if attack == "chunked-valid":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        extension = draw(st.sampled_from([b"", b";name=value", b";x"]))
        trailers = draw(st.sampled_from([b"", b"X-Trailer: 1\r\n"]))
        framed = [*headers, (b"Transfer-Encoding", b"chunked")]
        data = request_bytes(
            "POST", target, framed, chunked(pieces, extension=extension, trailers=trailers)
        )
        return Probe(data)
    if attack == "chunked-broken":
        broken = draw(
            st.sampled_from(
                [
                    b"ZZ\r\nxx\r\n0\r\n\r\n",
                    b"5\r\nab\r\n0\r\n\r\n",
                    b"-1\r\n\r\n",
                    b"fffffffffffffffffffff\r\n",
                    b"2\r\nabcd\r\n0\r\n\r\n",
                    b"2 \r\nab\r\n0\r\n\r\n",
                    b"0x2\r\nab\r\n0\r\n\r\n",
                    b"2\nab\n0\n\n",
                    b"2\r\nab\r\n0\r\nBad Trailer\r\n\r\n",
                ]
            )
        )
        framed = [*reads, (b"Transfer-Encoding", b"chunked")]
        data = request_bytes("POST", target, framed, broken)
        if draw(st.booleans()):
            return Probe(data, parser_may_reject=True, may_go_unanswered=True, half_close=True)
        # The broken chunk arrives after the handler started reading, and the client waits for
        # an answer: aiohttp never wakes the handler (FINDINGS.md F7), the gateway's body-read
        # deadline must (the test lowers it).
        head_end = data.index(b"\r\n\r\n") + 4
        cuts = draw(st.lists(st.integers(head_end, len(data) - 1), max_size=2))
        return Probe(data, parser_may_reject=True, fragments=(head_end, *cuts), pause=PAUSE_IN_BODY)
    if attack == "stalled":
        # A body that stops arriving, the client still there (FINDINGS.md F7): a 408 at the
        # gateway's body-read deadline, not a request held open forever.
        if draw(st.booleans()):
            declared = [*reads, (b"Content-Length", b"60000")]
            data = request_bytes("POST", target, declared, body[:1000])
        else:
            framed = [*reads, (b"Transfer-Encoding", b"chunked")]
            unfinished = chunked([body[:1000]])[: -len(b"0\r\n\r\n")]
            data = request_bytes("POST", target, framed, unfinished)
        head_end = data.index(b"\r\n\r\n") + 4
        return Probe(data, fragments=(head_end,), pause=PAUSE_IN_BODY)
    if attack == "truncated":
        data = request_bytes("POST", target, headers, body)
        cut = draw(st.integers(1, len(data) - 1))
        return Probe(data[:cut], parser_may_reject=True, may_go_unanswered=True, half_close=True)
    if attack == "pipelined":
        first = request_bytes("GET", "/healthz", [], close=False)
        second = draw(
            st.sampled_from(
                [request_bytes("POST", target, headers, body), b"GARBAGE\r\n\r\n", b"\x00" * 10]
            )
        )
        return Probe(first + second, parser_may_reject=True)
    if attack == "fragmented":
        data = request_bytes("POST", target, headers, body)
        cuts = draw(st.lists(st.integers(1, len(data) - 1), min_size=1, max_size=8))
        return Probe(data, fragments=tuple(sorted(set(cuts))))
    # Said to be finished (half-closed): bytes aiohttp takes as the start of a request head
    # ("\r\n", "GET /") get no answer; production closes such a connection at its head deadline
    # (FINDINGS.md F16, gateway/server/heads.py), the fuzz's test server never does.
    garbage = draw(st.binary(min_size=1, max_size=200))
    return Probe(garbage, parser_may_reject=True, may_go_unanswered=True, half_close=True)


@st.composite
def oversized(draw: st.DrawFn, gateway_key: str, limit: int) -> Probe:
    """Bodies past the limits, honest or lying about their length, plain or chunked."""
    path, kind = draw(
        st.sampled_from(
            [
                ("/v1/realtime/calls", "application/sdp"),
                ("/v1/realtime/calls", "multipart/form-data; boundary=x"),
                ("/v1/realtime?model=gpt-realtime", "application/sdp"),
                ("/v1/realtime/client_secrets", "application/json"),
                ("/v1/realtime/sessions", "application/json"),
                ("/demo/token", "application/json"),
                ("/healthz", "application/json"),
            ]
        )
    )
    size = draw(st.sampled_from([limit + 1, limit + 16 * 1024 + 1, 1 << 20, 4 << 20]))
    filler = draw(st.sampled_from([b"a", b"v=0\r\n", b"\xff", b"["]))
    body = (filler * (size // len(filler) + 1))[:size]
    if "multipart" in kind:
        body = (
            b'--x\r\nContent-Disposition: form-data; name="sdp"\r\n\r\n' + body + b"\r\n--x--\r\n"
        )
    headers: list[Header] = [("Authorization", f"Bearer {gateway_key}"), ("Content-Type", kind)]
    framing = draw(st.sampled_from(["length", "chunked", "understated"]))
    method = "GET" if path == "/healthz" else "POST"
    if framing == "chunked":
        pieces = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        framed = [*headers, ("Transfer-Encoding", "chunked")]
        return Probe(request_bytes(method, path, framed, chunked(pieces)))
    if framing == "understated":
        # Declares a small body, sends a huge one: the rest is a garbage "next request".
        data = request_bytes(method, path, [*headers, ("Content-Length", "10")], body)
        return Probe(data, parser_may_reject=True)
    return Probe(request_bytes(method, path, headers, body))
