"""deploy/docker-compose.yml: real settings, and ports, timeouts and mounts that agree."""

from __future__ import annotations

import re
from typing import Any

from tests.deploy.support import DEPLOY, load_yaml, port_range, setting_names


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.yml")
    return loaded


def gateway() -> dict[str, Any]:
    service: dict[str, Any] = compose()["services"]["gateway"]
    return service


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def published_udp(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host side, container side) of each published UDP mapping."""
    out = []
    for mapping in service.get("ports", []):
        if mapping.endswith("/udp"):
            host, container = mapping.removesuffix("/udp").rsplit(":", 1)
            out.append((host.rsplit(":", 1)[-1], container))
    return out


class TestCompose:
    def test_services(self) -> None:
        assert {"gateway", "prometheus", "grafana", "coturn"} <= set(compose()["services"])

    def test_env_names_are_settings(self) -> None:
        names = set(gateway()["environment"])
        names |= set(
            load_yaml(DEPLOY / "docker-compose.host-network.yml")["services"]["gateway"][
                "environment"
            ]
        )
        assert names - setting_names() == set()

    def test_published_udp_range_is_the_ice_range_port_for_port(self) -> None:
        """The gateway announces container ports, so the host must forward each one to the
        same number: `A-B:A-B/udp` with A-B = GATEWAY_ICE_PORT_RANGE."""
        ice = gateway()["environment"]["GATEWAY_ICE_PORT_RANGE"]
        assert published_udp(gateway()) == [(ice, ice)]

    def test_port_range_carries_max_calls(self) -> None:
        env = gateway()["environment"]
        assert len(port_range(env["GATEWAY_ICE_PORT_RANGE"])) >= int(env["GATEWAY_MAX_CALLS"])

    def test_stop_grace_period_covers_the_drain(self) -> None:
        """Docker SIGKILLs after stop_grace_period (10 s by default): it must outlast the drain."""
        drain = float(gateway()["environment"]["GATEWAY_DRAIN_TIMEOUT"])
        assert seconds(gateway()["stop_grace_period"]) >= drain + 5

    def test_prometheus_scrapes_the_gateway_service(self) -> None:
        config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
        (job,) = [c for c in config["scrape_configs"] if c["job_name"] == "realtime-gateway"]
        (target,) = job["static_configs"][0]["targets"]
        assert target == f"gateway:{gateway()['environment'].get('GATEWAY_PORT', '8080')}"

    def test_bind_mounts_exist(self) -> None:
        for name, service in compose()["services"].items():
            for volume in service.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith("./"):
                    assert (DEPLOY / source).exists(), f"{name}: {source}"

    def test_coturn_relay_range_matches_its_config(self) -> None:
        conf = (DEPLOY / "coturn" / "turnserver.conf").read_text()
        low = re.search(r"^min-port=(\d+)$", conf, re.M)
        high = re.search(r"^max-port=(\d+)$", conf, re.M)
        assert low and high
        relay = f"{low[1]}-{high[1]}"
        assert (relay, relay) in published_udp(compose()["services"]["coturn"])

    def test_host_network_variant_publishes_nothing(self) -> None:
        override = load_yaml(DEPLOY / "docker-compose.host-network.yml")["services"]
        assert override["gateway"]["network_mode"] == "host"
        assert override["gateway"]["ports"] == []
        assert "gateway:host-gateway" in override["prometheus"]["extra_hosts"]
