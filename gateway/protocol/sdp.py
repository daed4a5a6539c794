"""Just enough SDP understanding to refuse a bad offer early and read an upstream ``Location``.

Pure: no I/O. The SDP itself is forwarded byte-exact; nothing here rewrites it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.errors import InvalidOffer


@dataclass(frozen=True)
class OfferSummary:
    has_audio: bool
    has_data_channel: bool
    audio_codecs: tuple[str, ...]


def inspect_offer(sdp: str) -> OfferSummary:
    """Check that ``sdp`` is an offer a Realtime call can use: audio plus a data channel."""
    text = sdp.strip()
    if not text.startswith("v=0"):
        raise InvalidOffer("The SDP offer is malformed: it must start with 'v=0'.")
    media: list[str] = []
    codecs: list[str] = []
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            if len(parts) < 3:
                raise InvalidOffer(f"The SDP offer has a malformed media line: {line[:80]!r}.")
            section = parts[0]
            media.append(" ".join(parts[:3]))
        elif line.startswith("a=rtpmap:") and section == "audio":
            _, _, rest = line.partition(" ")
            codecs.append(rest.split("/")[0].lower())
    has_audio = any(m.startswith("audio ") for m in media)
    attributes = {line.strip().partition(":")[0] for line in text.splitlines()}
    has_dc = any(m.startswith("application ") and ("SCTP" in m.upper()) for m in media)
    if not media:
        raise InvalidOffer("The SDP offer has no media sections.")
    if not has_audio:
        raise InvalidOffer(
            "The SDP offer has no audio section; add a microphone track before createOffer()."
        )
    if not has_dc:
        raise InvalidOffer(
            "The SDP offer has no data channel; call createDataChannel('oai-events') before "
            "createOffer()."
        )
    # Without these the call can never connect: refuse it before anything is dialled.
    if "a=fingerprint" not in attributes:
        raise InvalidOffer(
            "The SDP offer has no a=fingerprint: WebRTC media needs DTLS; pass the offer "
            "from createOffer() unmodified."
        )
    if "a=ice-ufrag" not in attributes or "a=ice-pwd" not in attributes:
        raise InvalidOffer(
            "The SDP offer has no ICE credentials (a=ice-ufrag and a=ice-pwd); pass the offer "
            "from createOffer() unmodified."
        )
    return OfferSummary(has_audio=has_audio, has_data_channel=has_dc, audio_codecs=tuple(codecs))


def call_id_from_location(location: str) -> str | None:
    """The call id in a ``Location`` header: the ``rtc_…`` segment, else the last one."""
    path = urlsplit(location).path
    segments = [s for s in path.split("/") if s]
    for segment in segments:
        if segment.startswith("rtc_"):
            return segment
    return segments[-1] if segments else None


def announce_address(sdp: str, public_ip: str) -> str:
    """Rewrite our host candidates and connection lines to ``public_ip`` (1:1 NAT).

    The ports stay: the NAT in front of the gateway maps ``public_ip:port`` to the same port
    inside. Line endings are kept as they were.
    """
    family = "IP6" if ":" in public_ip else "IP4"
    out = []
    for line in sdp.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        ending = line[len(body) :]
        if body.startswith("a=candidate:") and " typ host" in body:
            parts = body.split(" ")
            if len(parts) > 5:
                parts[4] = public_ip
                body = " ".join(parts)
        elif body.startswith("c=IN "):
            body = f"c=IN {family} {public_ip}"
        out.append(body + ending)
    return "".join(out)
