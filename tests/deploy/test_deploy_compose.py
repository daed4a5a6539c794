"""deploy/docker-compose.yml: real settings, and ports, timeouts, addresses and mounts that
agree, read as compose reads them (``${VAR:-default}`` resolved with an empty deploy/.env)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from tests.deploy.support import DEPLOY, load_yaml, port_range, setting_names

# What the operator must put in deploy/.env (compose refuses to start without it).
REQUIRED = {"REDIS_PASSWORD": "0123456789abcdef"}
# gateway/workers.py: after the drain, the supervisor gives its workers 15 s more to end the
# calls still live and exit before it kills them.
SUPERVISOR_MARGIN = 15

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution, for the forms these files use."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, operator, argument = match[1], match[2], match[3]
        current = env.get(name)
        if operator == ":-":
            return current or argument
        if operator == "-":
            return argument if current is None else current
        if operator in (":?", "?"):
            assert current, f"{name} is required: {argument}"
            return current
        return current or ""

    return _VARIABLE.sub(one, value).replace("$$", "$")


def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.yml")
    return loaded


def compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    resolved: dict[str, Any] = interpolate(raw(), {**REQUIRED, **(env or {})})
    return resolved


def host_network() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(DEPLOY / "docker-compose.host-network.yml")
    return loaded["services"]


def gateway(env: dict[str, str] | None = None) -> dict[str, Any]:
    service: dict[str, Any] = compose(env)["services"]["gateway"]
    return service


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def published(service: dict[str, Any], protocol: str) -> list[tuple[str, str, str]]:
    """(host address or "", host side, container side) of each published mapping."""
    out = []
    for mapping in service.get("ports", []):
        text, _, proto = mapping.partition("/")
        if (proto or "tcp") != protocol:
            continue
        parts = text.split(":")
        address = parts[0] if len(parts) == 3 else ""
        out.append((address, parts[-2], parts[-1]))
    return out


class TestCompose:
    def test_services(self) -> None:
        assert {"caddy", "gateway", "redis", "prometheus", "grafana", "coturn"} <= set(
            compose()["services"]
        )

    def test_env_names_are_settings(self) -> None:
        names = set(gateway()["environment"]) | set(host_network()["gateway"]["environment"])
        assert names - setting_names() == set()

    def test_published_udp_range_is_the_ice_range_port_for_port(self) -> None:
        """The gateway announces container ports, so the host must forward each one to the
        same number: `A-B:A-B/udp` with A-B = GATEWAY_ICE_PORT_RANGE, whatever .env says."""
        for env in ({}, {"GATEWAY_ICE_PORT_RANGE": "41000-41399"}):
            ice = gateway(env)["environment"]["GATEWAY_ICE_PORT_RANGE"]
            assert [(h, c) for _, h, c in published(gateway(env), "udp")] == [(ice, ice)]

    def test_port_range_carries_max_calls_per_worker(self) -> None:
        """The range is split evenly among the workers and each runs up to GATEWAY_MAX_CALLS
        calls, one browser-leg port each (one address in the container)."""
        env = gateway()["environment"]
        workers = int(env["GATEWAY_WORKERS"])
        assert workers > 1
        slice_size = len(port_range(env["GATEWAY_ICE_PORT_RANGE"])) // workers
        assert slice_size >= int(env["GATEWAY_MAX_CALLS"])

    def test_workers_share_the_compose_redis(self) -> None:
        """More than one worker needs Redis: the gateway's URL names the redis service, with
        the password Redis is started with, and waits for it to answer."""
        env = gateway()["environment"]
        password = REQUIRED["REDIS_PASSWORD"]
        assert env["GATEWAY_REDIS_URL"] == f"redis://:{password}@redis:6379/0"
        assert compose()["services"]["redis"]["environment"]["REDIS_PASSWORD"] == password
        assert gateway()["depends_on"]["redis"]["condition"] == "service_healthy"
        assert compose()["services"]["redis"]["image"].startswith("redis:7")

    def test_stop_grace_period_covers_the_drain(self) -> None:
        """Docker SIGKILLs after stop_grace_period (10 s by default): it must outlast the drain
        and the time the workers' supervisor then allows them to exit."""
        drain = float(gateway()["environment"]["GATEWAY_DRAIN_TIMEOUT"])
        assert seconds(gateway()["stop_grace_period"]) >= drain + SUPERVISOR_MARGIN

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
        assert ("", relay, relay) in published(compose()["services"]["coturn"], "udp")


class TestWhatIsPublished:
    def test_only_caddy_serves_http_to_the_world(self) -> None:
        """On every interface: Caddy's 80 and 443 and coturn's TURN port. The gateway's HTTP
        port (its /metrics and admin API), Prometheus and Grafana are on loopback only."""
        public = {
            (name, host)
            for name, service in compose()["services"].items()
            for address, host, _ in published(service, "tcp")
            if address != "127.0.0.1"
        }
        assert public == {("caddy", "80"), ("caddy", "443"), ("coturn", "3478")}

    def test_gateway_http_port_is_loopback_only(self) -> None:
        ((address, _, container),) = published(gateway(), "tcp")
        assert (address, container) == ("127.0.0.1", "8080")

    def test_redis_is_not_published(self) -> None:
        assert "ports" not in compose()["services"]["redis"]

    def test_caddy_serves_the_caddyfile_for_the_domain(self) -> None:
        """The Caddyfile mounted where the image reads it; an unset domain becomes localhost
        here (Caddy would read an empty GATEWAY_DOMAIN as an empty site address)."""
        caddy = compose()["services"]["caddy"]
        assert caddy["image"] == "caddy:2"
        assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
        assert caddy["environment"]["GATEWAY_DOMAIN"] == "localhost"
        example = compose({"GATEWAY_DOMAIN": "gateway.example.com"})["services"]["caddy"]
        assert example["environment"]["GATEWAY_DOMAIN"] == "gateway.example.com"

    def test_gateway_trusts_only_caddys_fixed_address(self) -> None:
        """X-Forwarded-For names the client only from Caddy, whose address is pinned inside
        the network's subnet and outside the range Docker hands out."""
        services = compose()["services"]
        address = ipaddress.ip_address(services["caddy"]["networks"]["default"]["ipv4_address"])
        (pool,) = compose()["networks"]["default"]["ipam"]["config"]
        assert address in ipaddress.ip_network(pool["subnet"])
        assert address not in ipaddress.ip_network(pool["ip_range"])
        assert gateway()["environment"]["GATEWAY_TRUSTED_PROXIES"] == str(address)


class TestHostNetwork:
    def test_gateway_publishes_nothing_and_listens_on_loopback(self) -> None:
        override = host_network()["gateway"]
        assert override["network_mode"] == "host"
        assert override["ports"] == []
        assert override["environment"]["GATEWAY_HOST"] == "127.0.0.1"
        assert override["environment"]["GATEWAY_TRUSTED_PROXIES"] == "127.0.0.1"

    def test_the_gateways_neighbours_follow_it_onto_the_host(self) -> None:
        """Caddy proxies to the gateway's loopback port; Prometheus and Grafana share the host
        network but listen on loopback; each name they use points at the host."""
        services = host_network()
        port = gateway()["environment"].get("GATEWAY_PORT", "8080")
        assert services["caddy"]["network_mode"] == "host"
        assert services["caddy"]["networks"] == {}
        assert services["caddy"]["environment"]["CADDY_UPSTREAM"] == f"127.0.0.1:{port}"
        assert services["prometheus"]["network_mode"] == "host"
        assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
        assert "gateway:127.0.0.1" in services["prometheus"]["extra_hosts"]
        assert services["grafana"]["network_mode"] == "host"
        assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
        assert "prometheus:127.0.0.1" in services["grafana"]["extra_hosts"]

    def test_redis_reachable_from_the_host_only(self) -> None:
        services = host_network()
        assert services["redis"]["ports"] == ["127.0.0.1:6379:6379"]
        assert "redis:127.0.0.1" in services["gateway"]["extra_hosts"]

    def test_prometheus_keeps_its_settings(self) -> None:
        """The override repeats the base command, adding only the listen address."""
        base = compose()["services"]["prometheus"]["command"]
        override = host_network()["prometheus"]["command"]
        assert [c for c in override if not c.startswith("--web.listen-address")] == base
