"""deploy/k8s: parses, names only real settings, and its numbers agree with each other."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tests.deploy.support import (
    K8S,
    PRIVATE_REQUESTS,
    PUBLIC_REQUESTS,
    REPO,
    SAME_PATH_AS_PUBLIC,
    load_yaml,
    load_yaml_all,
    port_range,
    setting_names,
)

KUSTOMIZATIONS = [K8S, K8S / "hostport", K8S / "monitoring", K8S / "httproute"]
GATEWAY = "realtime-gateway"
REDIS = "realtime-gateway-redis"
# gateway/workers.py: after the drain, 15 s more to end the calls still live and exit.
SUPERVISOR_MARGIN = 15


class Documents(dict[tuple[str, str], dict[str, Any]]):
    """(kind, name) → resource, for a kustomization directory's own files."""

    def __getitem__(self, key: str | tuple[str, str]) -> dict[str, Any]:
        """``docs["Deployment"]`` is the gateway's; ``docs["Service", REDIS]`` names one."""
        if isinstance(key, str):
            key = (key, GATEWAY)
        return super().__getitem__(key)


def documents(directory: Path = K8S) -> Documents:
    out = Documents()
    for name in load_yaml(directory / "kustomization.yaml").get("resources", []):
        path = directory / name
        if path.is_dir():
            continue
        for doc in load_yaml_all(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in out, f"two {key} in {directory}"
            out[key] = doc
    return out


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def env_names(doc: dict[str, Any]) -> set[str]:
    """Environment variable names a resource (or patch) hands the gateway. A Deployment may
    also set helpers the gateway does not read, when only other values use them:
    ``GATEWAY_NODE_ADDRESS: http://$(POD_IP):8080``."""
    if doc["kind"] == "ConfigMap":
        return set(doc.get("data", {}))
    if doc["kind"] == "Secret":
        return set(doc.get("stringData", {})) | set(doc.get("data", {}))
    if doc["kind"] == "Deployment":
        env = container(doc).get("env", [])
        referenced = {
            name for e in env for name in re.findall(r"\$\((\w+)\)", str(e.get("value", "")))
        }
        return {e["name"] for e in env} - referenced
    return set()


def nginx_uri(target: str) -> str:
    """The URI ingress-nginx matches locations against: decoded, dot segments resolved,
    slashes merged, no query."""
    path = posixpath.normpath(unquote(target.partition("?")[0]))
    return "/" + path.lstrip("/")


def ingress_routes(ingress: dict[str, Any], method: str, target: str) -> bool:
    """Whether ingress-nginx (use-regex: each path a case-insensitive regex anchored at the
    start) passes the request on. An Ingress cannot match methods."""
    del method
    uri = nginx_uri(target)
    (rule,) = ingress["spec"]["rules"]
    return any(re.match(p["path"], uri, re.IGNORECASE) is not None for p in rule["http"]["paths"])


def httproute_routes(route: dict[str, Any], method: str, target: str) -> bool:
    """Whether an HTTPRoute's matches take the request: method and path (Exact, or
    PathPrefix element by element)."""
    path = nginx_uri(target)
    for rule in route["spec"]["rules"]:
        for match in rule["matches"]:
            if match.get("method", method) != method:
                continue
            kind, value = match["path"]["type"], match["path"]["value"]
            if kind == "Exact" and path == value:
                return True
            prefix = value.rstrip("/")
            if kind == "PathPrefix" and (path == prefix or path.startswith(prefix + "/")):
                return True
    return False


def all_yaml() -> list[Path]:
    return sorted(K8S.rglob("*.yaml"))


class TestManifests:
    @pytest.mark.parametrize("path", all_yaml(), ids=lambda p: str(p.relative_to(K8S)))
    def test_parses(self, path: Path) -> None:
        """Every document parses and names its kind, API version and name."""
        docs = load_yaml_all(path)
        assert docs
        for doc in docs:
            assert doc["apiVersion"] and doc["kind"], path
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], path

    @pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
    def test_kustomization_lists_existing_files(self, directory: Path) -> None:
        kustomization = load_yaml(directory / "kustomization.yaml")
        listed = kustomization.get("resources", []) + [
            p["path"] for p in kustomization.get("patches", [])
        ]
        assert listed
        for name in listed:
            assert (directory / name).exists(), f"{directory}/{name}"

    def test_env_names_are_settings(self) -> None:
        """Every variable the ConfigMap, Secret, Deployment and patches set is one
        gateway/config.py reads: a typo here would be silently ignored by the gateway."""
        names: set[str] = set()
        for path in all_yaml():
            for doc in load_yaml_all(path):
                names |= env_names(doc)
        assert names
        assert names - setting_names() == set()


class TestDeployment:
    def setup_method(self) -> None:
        self.docs = documents()
        self.deployment = self.docs["Deployment"]
        self.pod = self.deployment["spec"]["template"]["spec"]
        self.container = container(self.deployment)
        self.config = self.docs["ConfigMap"]["data"]

    def test_probes(self) -> None:
        """Readiness on /readyz (false while draining or full), liveness on /healthz."""
        ports = {p["name"] for p in self.container["ports"]}
        assert self.container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert self.container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            assert self.container[probe]["httpGet"]["port"] in ports

    def test_grace_period_covers_the_drain(self) -> None:
        """The kubelet waits longer than preStop + GATEWAY_DRAIN_TIMEOUT + the time to end the
        calls still live then (with workers, what their supervisor allows) before SIGKILL."""
        drain = float(self.config["GATEWAY_DRAIN_TIMEOUT"])
        command = self.container["lifecycle"]["preStop"]["exec"]["command"]
        pre_stop = float(command[1]) if command[0] == "sleep" else 0.0
        grace = self.pod["terminationGracePeriodSeconds"]
        assert grace >= drain + pre_stop + SUPERVISOR_MARGIN

    def test_rolling_update_never_waits_for_a_free_node(self) -> None:
        """The pod holds its node's ports: a surge pod could find no node to run on, so pods
        are replaced one at a time, each draining while the others take new calls."""
        update = self.deployment["spec"]["strategy"]["rollingUpdate"]
        assert self.pod["hostNetwork"] is True
        assert update == {"maxSurge": 0, "maxUnavailable": 1}
        assert self.docs["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1

    def test_resources(self) -> None:
        resources = self.container["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"]
        assert resources["limits"]["memory"]

    def test_runs_as_the_images_user(self) -> None:
        """runAsUser is the Dockerfile's USER, so runAsNonRoot holds without surprises."""
        security = self.pod["securityContext"]
        assert security["runAsNonRoot"] is True
        user = next(
            line.split()[1]
            for line in (REPO / "Dockerfile").read_text().splitlines()
            if line.startswith("USER ")
        )
        assert str(security["runAsUser"]) == user.split(":")[0]

    def test_reads_config_and_secret(self) -> None:
        sources = self.container["envFrom"]
        assert {"configMapRef": {"name": self.docs["ConfigMap"]["metadata"]["name"]}} in sources
        assert {"secretRef": {"name": self.docs["Secret"]["metadata"]["name"]}} in sources

    def test_host_network_offers_only_the_node_address(self) -> None:
        """Default UDP path: host networking, ICE restricted to the node's own IP."""
        assert self.pod["hostNetwork"] is True
        assert self.pod["dnsPolicy"] == "ClusterFirstWithHostNet"
        env = {e["name"]: e for e in self.container["env"]}
        field = env["GATEWAY_ICE_ADDRESSES"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "status.hostIP"

    def test_port_range_carries_max_calls(self) -> None:
        """One browser-leg port per call with one ICE address; the range is split among the
        pod's workers, each running up to GATEWAY_MAX_CALLS."""
        ports = port_range(self.config["GATEWAY_ICE_PORT_RANGE"])
        workers = int(self.config["GATEWAY_WORKERS"])
        assert len(ports) // workers >= int(self.config["GATEWAY_MAX_CALLS"])

    def test_each_pod_is_a_node_of_one_gateway(self) -> None:
        """Named after the pod, and reached by the other pods at its own IP on the gateway's
        port (not through the Service, which could land on any pod)."""
        env = [e["name"] for e in self.container["env"]]
        by_name = {e["name"]: e for e in self.container["env"]}
        assert by_name["GATEWAY_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == (
            "metadata.name"
        )
        assert by_name["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
        port = self.config["GATEWAY_PORT"]
        assert by_name["GATEWAY_NODE_ADDRESS"]["value"] == f"http://$(POD_IP):{port}"
        # Kubernetes expands $(POD_IP) only from variables defined before it.
        assert env.index("POD_IP") < env.index("GATEWAY_NODE_ADDRESS")
        assert str(port) in {str(p["containerPort"]) for p in self.container["ports"]}

    def test_pods_share_the_redis_of_redis_yaml(self) -> None:
        """GATEWAY_REDIS_URL (the Secret) names the Redis Service and its port; that Service
        selects the Redis pod, which the gateway's own Service, PDB and ServiceMonitor don't."""
        url = urlsplit(self.docs["Secret"]["stringData"]["GATEWAY_REDIS_URL"])
        service = self.docs["Service", REDIS]
        assert url.scheme == "redis" and url.hostname == REDIS
        assert url.port in {p["port"] for p in service["spec"]["ports"]}
        redis = self.docs["Deployment", REDIS]
        labels = redis["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        assert redis["spec"]["replicas"] == 1
        assert redis["spec"]["strategy"]["type"] == "Recreate"
        (image,) = {c["image"] for c in redis["spec"]["template"]["spec"]["containers"]}
        assert image.startswith("redis:7")
        for selector in (
            self.docs["Service"]["spec"]["selector"],
            self.docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
            documents(K8S / "monitoring")["ServiceMonitor"]["spec"]["selector"]["matchLabels"],
        ):
            assert not selector.items() <= labels.items()

    def test_service_spreads_requests_freely(self) -> None:
        """No stickiness: the pods forward a call's requests to its owner themselves."""
        assert self.docs["Service"]["spec"].get("sessionAffinity", "None") == "None"

    def test_selectors_match(self) -> None:
        """Service and PodDisruptionBudget select the gateway Deployment's pods."""
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        assert self.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert self.docs["Service"]["spec"]["selector"].items() <= labels.items()
        pdb = self.docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
        assert pdb.items() <= labels.items()


class TestPublicRoutes:
    def test_ingress_routes_the_public_paths_over_tls(self) -> None:
        """ingress-nginx with TLS for its one host, every path to the gateway's Service."""
        ingress = documents()["Ingress"]
        assert ingress["spec"]["ingressClassName"] == "nginx"
        (rule,) = ingress["spec"]["rules"]
        (tls,) = ingress["spec"]["tls"]
        assert tls["hosts"] == [rule["host"]] and tls["secretName"]
        assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == (
            "true"
        )
        service = documents()["Service"]
        for path in rule["http"]["paths"]:
            backend = path["backend"]["service"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
        missed = [r for r in PUBLIC_REQUESTS if not ingress_routes(ingress, *r)]
        assert missed == []

    def test_ingress_leaves_out_what_its_paths_allow(self) -> None:
        """Not routed: /metrics, GET of a call and every other path. Routing by path, it also
        passes on the server-only GETs on two public paths (the listing, the sideband): the
        gateway's key guards those; the HTTPRoute shuts them out."""
        ingress = documents()["Ingress"]
        routed = {r for r in PRIVATE_REQUESTS if ingress_routes(ingress, *r)}
        assert routed == SAME_PATH_AS_PUBLIC

    def test_httproute_routes_only_the_public_api(self) -> None:
        """Methods and paths: nothing server-only gets through. A path prefix cannot stop at
        one segment, so POSTs deeper under a call's path reach the gateway, which serves
        none of them (404)."""
        route = documents(K8S / "httproute")["HTTPRoute"]
        missed = [r for r in PUBLIC_REQUESTS if not httproute_routes(route, *r)]
        routed = {r for r in PRIVATE_REQUESTS if httproute_routes(route, *r)}
        assert missed == []
        assert routed == {("POST", "/v1/realtime/calls/rtc_0123abcd/extra/hangup")}
        service = documents()["Service"]
        for rule in route["spec"]["rules"]:
            # Gateway API (v1.0) allows at most 8 matches per rule.
            assert 0 < len(rule["matches"]) <= 8
            (backend,) = rule["backendRefs"]
            assert backend["name"] == service["metadata"]["name"]
            assert backend["port"] in {p["port"] for p in service["spec"]["ports"]}


class TestHostPortOverlay:
    def test_host_ports_are_exactly_the_ice_range(self) -> None:
        """Each port of the overlay's GATEWAY_ICE_PORT_RANGE is mapped 1:1 onto the node."""
        patch = load_yaml(K8S / "hostport" / "deployment-patch.yaml")
        config = load_yaml(K8S / "hostport" / "configmap-patch.yaml")["data"]
        udp = [p for p in container(patch)["ports"] if p["protocol"] == "UDP"]
        assert all(p["hostPort"] == p["containerPort"] for p in udp)
        wanted = port_range(config["GATEWAY_ICE_PORT_RANGE"])
        assert sorted(p["hostPort"] for p in udp) == list(wanted)
        assert len(wanted) >= int(config["GATEWAY_MAX_CALLS"])

    def test_announces_the_node_address_off_host_network(self) -> None:
        patch = load_yaml(K8S / "hostport" / "deployment-patch.yaml")
        spec = patch["spec"]["template"]["spec"]
        assert spec["hostNetwork"] is False
        env = {e["name"]: e for e in container(patch)["env"]}
        assert env["GATEWAY_ICE_ADDRESSES"] == {"name": "GATEWAY_ICE_ADDRESSES", "$patch": "delete"}
        field = env["GATEWAY_PUBLIC_IP"]["valueFrom"]["fieldRef"]["fieldPath"]
        assert field == "status.hostIP"


class TestMonitoring:
    def test_servicemonitor_scrapes_the_service(self) -> None:
        monitor = documents(K8S / "monitoring")["ServiceMonitor"]
        service = documents()["Service"]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert selector.items() <= service["metadata"]["labels"].items()
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        # The operator names the job after the Service: the alert rules match that name.
        assert service["metadata"]["name"] == "realtime-gateway"

    def test_instance_is_the_pods_name(self) -> None:
        """What the dashboard's Node variable lists and the alerts name."""
        monitor = documents(K8S / "monitoring")["ServiceMonitor"]
        (endpoint,) = monitor["spec"]["endpoints"]
        assert {
            "sourceLabels": ["__meta_kubernetes_pod_name"],
            "targetLabel": "instance",
        } in endpoint["relabelings"]
