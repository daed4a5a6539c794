"""Prometheus config, alert rules and the Grafana dashboard: valid for the real tools, and
querying only metrics the gateway really exports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from pytest_aiohttp import AiohttpClient

from gateway.config import Settings
from gateway.server.app import create_app
from tests.deploy.support import (
    DEPLOY,
    K8S,
    METRICS,
    WORKERS_ONLY,
    load_yaml,
    metric_names,
    tool,
)
from tests.support.servers import free_port, redis_server

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "realtime-gateway.json"
PROMTOOL_HINT = "apt-get install prometheus"

# Grafana's template variables, replaced by literal PromQL so promtool can parse the queries.
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$instance": ".*",
}


def alert_exprs() -> list[str]:
    rules = load_yaml(PROMETHEUS / "alerts.yml")
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


def dashboard_exprs() -> list[str]:
    board = dashboard()
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
        elif variable.get("type") == "query" and isinstance(query, str):
            exprs.append(query)
    return exprs


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool", PROMTOOL_HINT), *args], capture_output=True, text=True, timeout=60
    )


class TestPromtool:
    def test_config_is_valid(self) -> None:
        """`promtool check config` accepts prometheus.yml and the rule files it names."""
        result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_alert_rules_are_valid(self) -> None:
        result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
        assert result.returncode == 0, result.stdout + result.stderr

    def test_dashboard_queries_are_valid_promql(self, tmp_path: Path) -> None:
        """Every dashboard query parses, checked by promtool as recording rules (Grafana's
        variables replaced by literals)."""
        rules = []
        for i, expr in enumerate(dashboard_exprs()):
            if expr.startswith("label_values("):
                continue  # Grafana's own function, not PromQL
            for variable, literal in _GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, literal)
            assert "$" not in expr, f"unhandled Grafana variable in {expr}"
            rules.append({"record": f"dashboard_query_{i}", "expr": expr})
        path = tmp_path / "dashboard-rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
        result = promtool("check", "rules", str(path))
        assert result.returncode == 0, result.stdout + result.stderr


class TestMetricNames:
    def test_alert_rules_use_only_known_metrics(self) -> None:
        used = set().union(*(metric_names(e) for e in alert_exprs()))
        assert used and used - METRICS == set()

    def test_dashboard_uses_only_known_metrics(self) -> None:
        used = set().union(*(metric_names(e) for e in dashboard_exprs()))
        assert used - METRICS == set()

    def test_dashboard_shows_every_metric(self) -> None:
        """No metric of the documented list is left off the dashboard."""
        used = set().union(*(metric_names(e) for e in dashboard_exprs()))
        assert METRICS - used == set()

    async def test_every_queried_metric_exists_on_a_live_gateway(
        self, aiohttp_client: AiohttpClient
    ) -> None:
        """A running gateway's /metrics declares every family the rules and dashboard read,
        but the one only a `--workers` scrape has (next test)."""
        client = await aiohttp_client(create_app(Settings.from_env({})))
        response = await client.get("/metrics")
        assert response.status == 200
        declared = set(re.findall(r"^# TYPE (\S+) ", await response.text(), re.M))
        used = set().union(*(metric_names(e) for e in alert_exprs() + dashboard_exprs()))
        assert used - declared == WORKERS_ONLY
        assert not WORKERS_ONLY & set().union(*(metric_names(e) for e in alert_exprs()))

    async def test_every_queried_metric_exists_on_a_workers_scrape(self) -> None:
        """`serve --workers 2` with a real redis-server: the scrape of the shared port, which
        adds the workers up, declares every family the rules and dashboard read."""
        async with redis_server() as redis:
            port = free_port()
            environ = {
                k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "OPENAI_"))
            }
            environ.update(
                GATEWAY_REDIS_URL=redis.url,
                GATEWAY_HOST="127.0.0.1",
                GATEWAY_PORT=str(port),
                GATEWAY_ICE_PORT_RANGE="42300-42309",
                GATEWAY_DRAIN_TIMEOUT="1",
                GATEWAY_LOG_LEVEL="warning",
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                "serve",
                "--workers",
                "2",
                env=environ,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                text = await _scrape_of_all_workers(f"http://127.0.0.1:{port}/metrics", 2)
            finally:
                process.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(process.communicate(), 30)
            assert process.returncode == 0, err.decode()[-2000:]
        # The merged text names a counter's family without its _total (as OpenMetrics does);
        # its samples carry it.
        declared = {
            name + "_total" if kind == "counter" and not name.endswith("_total") else name
            for name, kind in re.findall(r"^# TYPE (\S+) (\w+)", text, re.M)
        }
        used = set().union(*(metric_names(e) for e in alert_exprs() + dashboard_exprs()))
        assert used - declared == set()


async def _scrape_of_all_workers(url: str, workers: int) -> str:
    """The shared port's /metrics once every worker has joined it."""
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(30):
            while True:
                try:
                    async with http.get(url) as response:
                        text = await response.text()
                        if re.search(
                            rf"^realtime_gateway_scrape_processes {workers}(\.0)?$", text, re.M
                        ):
                            return text
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)


class TestAlertRules:
    def test_every_alert_has_severity_and_summary(self) -> None:
        for group in load_yaml(PROMETHEUS / "alerts.yml")["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule
                assert rule["annotations"]["summary"], rule

    def test_alerts_cover_the_required_conditions(self) -> None:
        """Upstream error rate, calls near capacity, and no scrape."""
        exprs = "\n".join(alert_exprs())
        assert "realtime_gateway_upstream_errors_total" in exprs
        assert "realtime_gateway_capacity_calls" in exprs
        assert 'absent(up{job="realtime-gateway"})' in exprs

    def test_scrape_job_is_the_one_the_rules_match(self) -> None:
        config = load_yaml(PROMETHEUS / "prometheus.yml")
        jobs = {c["job_name"] for c in config["scrape_configs"]}
        assert "realtime-gateway" in jobs

    def test_prometheusrule_matches_alerts_yml(self) -> None:
        """deploy/k8s/monitoring's PrometheusRule carries exactly the compose stack's rules."""
        rule = load_yaml(K8S / "monitoring" / "prometheusrule.yaml")
        assert rule["kind"] == "PrometheusRule"
        assert rule["spec"] == load_yaml(PROMETHEUS / "alerts.yml")


class TestGrafana:
    def test_datasource_is_provisioned(self) -> None:
        config = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
        (source,) = config["datasources"]
        assert source["type"] == "prometheus"
        assert source["url"] == "http://prometheus:9090"

    def test_dashboard_provider_reads_the_mounted_folder(self) -> None:
        """The provider's path is where docker-compose.yml mounts deploy/grafana/dashboards."""
        config = load_yaml(GRAFANA / "provisioning" / "dashboards" / "realtime-gateway.yml")
        (provider,) = config["providers"]
        compose = load_yaml(DEPLOY / "docker-compose.yml")
        mounts = compose["services"]["grafana"]["volumes"]
        assert f"./grafana/dashboards:{provider['options']['path']}:ro" in mounts

    def test_dashboard_is_well_formed(self) -> None:
        """Unique panel ids, every panel on the Prometheus data source variable."""
        board = dashboard()
        assert board["uid"] == "realtime-gateway"
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids))
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
            assert panel["targets"], panel["title"]

    @pytest.mark.parametrize("name", ["datasource", "instance"])
    def test_dashboard_variables(self, name: str) -> None:
        names = {v["name"] for v in dashboard()["templating"]["list"]}
        assert name in names
