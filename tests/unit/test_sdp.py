"""What an offer must carry before anything is dialled for it."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidOffer
from gateway.protocol.sdp import inspect_offer

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0 1\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuv\r\n"
    "a=fingerprint:sha-256 AB:CD\r\na=setup:actpass\r\na=rtpmap:111 opus/48000/2\r\n"
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\n"
)


class TestInspectOffer:
    def test_a_complete_offer_passes(self) -> None:
        """Audio, a data channel, DTLS and ICE credentials: accepted."""
        assert inspect_offer(OFFER).audio_codecs == ("opus",)

    @pytest.mark.parametrize(
        ("line", "word"),
        [("a=fingerprint:", "fingerprint"), ("a=ice-ufrag:", "ICE"), ("a=ice-pwd:", "ICE")],
    )
    def test_an_offer_that_can_never_connect_is_refused(self, line: str, word: str) -> None:
        """No fingerprint or no ICE credentials: refused with a message naming what is missing."""
        offer = "".join(
            part for part in OFFER.splitlines(keepends=True) if not part.startswith(line)
        )
        with pytest.raises(InvalidOffer) as info:
            inspect_offer(offer)
        assert word in info.value.message
