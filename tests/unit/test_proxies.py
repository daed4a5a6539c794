"""The client's address behind trusted proxies, from X-Forwarded-For or Forwarded."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.server.proxies import client_address, forwarded_chain

TRUSTED = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]


class TestClientAddress:
    @pytest.mark.parametrize(
        ("peer", "chain", "client"),
        [
            ("203.0.113.9", ["1.2.3.4"], "203.0.113.9"),  # not a proxy: its headers are ignored
            ("127.0.0.1", ["198.51.100.7"], "198.51.100.7"),
            ("10.0.0.2", ["6.6.6.6", "198.51.100.7", "10.0.0.1"], "198.51.100.7"),  # rightmost
            ("10.0.0.2", ["10.0.0.3"], "10.0.0.2"),  # only proxies: the nearest one
            ("10.0.0.2", ["garbage", "198.51.100.7"], "198.51.100.7"),
            ("10.0.0.2", ["198.51.100.7", "garbage"], "10.0.0.2"),  # unreadable hop: stop
            ("127.0.0.1", [], "127.0.0.1"),
        ],
    )
    def test_the_nearest_untrusted_hop_is_the_client(
        self, peer: str, chain: list[str], client: str
    ) -> None:
        """Headers are believed only from trusted proxies, and read from the right."""
        assert client_address(peer, chain, TRUSTED) == client


class TestHeaders:
    def test_x_forwarded_for_wins_over_a_forwarded_a_client_may_have_sent(self) -> None:
        """Proxies rewrite X-Forwarded-For but pass Forwarded on: X-Forwarded-For is read."""
        chain = forwarded_chain("for=6.6.6.6", "198.51.100.7")
        assert client_address("127.0.0.1", chain, TRUSTED) == "198.51.100.7"

    def test_forwarded_ports_and_brackets_go(self) -> None:
        """RFC 7239 ``for=`` values, quoted v6 with ports included, client first."""
        chain = forwarded_chain('for=198.51.100.7:4711, for="[2001:db8::1]:80";proto=https', None)
        assert chain == ["198.51.100.7:4711", "2001:db8::1"]
        assert client_address("127.0.0.1", chain, TRUSTED) == "2001:db8::1"

    def test_x_forwarded_for(self) -> None:
        """The de-facto header, comma-separated."""
        assert forwarded_chain(None, "1.1.1.1, 2.2.2.2") == ["1.1.1.1", "2.2.2.2"]
        assert forwarded_chain(None, None) == []
