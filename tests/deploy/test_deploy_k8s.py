"""deploy/k8s: parses, names only real settings, and its numbers agree with each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.support import K8S, REPO, load_yaml, load_yaml_all, port_range, setting_names

KUSTOMIZATIONS = [K8S, K8S / "hostport", K8S / "monitoring"]


def documents(directory: Path = K8S) -> dict[str, dict[str, Any]]:
    """kind → the one resource of that kind in a kustomization directory's own files."""
    out: dict[str, dict[str, Any]] = {}
    for name in load_yaml(directory / "kustomization.yaml").get("resources", []):
        path = directory / name
        if path.is_dir():
            continue
        for doc in load_yaml_all(path):
            assert doc["kind"] not in out, f"two {doc['kind']} in {directory}"
            out[doc["kind"]] = doc
    return out


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def env_names(doc: dict[str, Any]) -> set[str]:
    """Environment variable names a resource (or patch) sets."""
    if doc["kind"] == "ConfigMap":
        return set(doc.get("data", {}))
    if doc["kind"] == "Secret":
        return set(doc.get("stringData", {})) | set(doc.get("data", {}))
    if doc["kind"] == "Deployment":
        return {e["name"] for e in container(doc).get("env", [])}
    return set()


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
        """The kubelet waits longer than preStop + GATEWAY_DRAIN_TIMEOUT before SIGKILL."""
        drain = float(self.config["GATEWAY_DRAIN_TIMEOUT"])
        command = self.container["lifecycle"]["preStop"]["exec"]["command"]
        pre_stop = float(command[1]) if command[0] == "sleep" else 0.0
        assert self.pod["terminationGracePeriodSeconds"] >= drain + pre_stop + 5

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
        """One browser-leg port per call with one ICE address: range size >= GATEWAY_MAX_CALLS."""
        ports = port_range(self.config["GATEWAY_ICE_PORT_RANGE"])
        assert len(ports) >= int(self.config["GATEWAY_MAX_CALLS"])

    def test_selectors_match(self) -> None:
        """Service and PodDisruptionBudget select the Deployment's pods."""
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        assert self.deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert self.docs["Service"]["spec"]["selector"].items() <= labels.items()
        pdb = self.docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]
        assert pdb.items() <= labels.items()


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
