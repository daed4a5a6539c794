"""Flags, CPU pinning plans, and the child's environment."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway_bench import _exec, cli
from gateway_bench.process import gateway_env


class TestFlags:
    def test_defaults(self) -> None:
        """10 calls for 20 s, both media modes, 2 events/s, unpinned."""
        args = cli.parser().parse_args([])
        assert (args.calls, args.seconds, args.pin, args.json) == (10, 20.0, False, False)
        assert cli.modes_of(args) == ("passthrough", "transcode")

    def test_soak_defaults_to_passthrough(self) -> None:
        """A soak measures the default media path unless told otherwise."""
        assert cli.modes_of(cli.parser().parse_args(["--soak"])) == ("passthrough",)
        args = cli.parser().parse_args(["--soak", "--media", "transcode"])
        assert cli.modes_of(args) == ("transcode",)

    @pytest.mark.parametrize("argv", [["--calls", "0"], ["--seconds", "-1"], ["--media", "x"]])
    def test_nonsense_is_refused(self, argv: list[str]) -> None:
        """Zero calls, negative durations and unknown modes stop at parsing."""
        with pytest.raises(SystemExit):
            cli.parser().parse_args(argv)

    def test_gateway_source_must_be_a_tree(self, tmp_path: Path) -> None:
        """--gateway-source needs a directory holding gateway/__main__.py."""
        with pytest.raises(argparse.ArgumentTypeError):
            cli._source_tree(str(tmp_path))
        (tmp_path / "gateway").mkdir()
        (tmp_path / "gateway" / "__main__.py").write_text("")
        assert cli._source_tree(str(tmp_path)) == tmp_path.resolve()


class TestPinning:
    def test_unpinned(self) -> None:
        assert cli.plan_cpus(False) == (None, None, None)

    def test_gateway_gets_the_last_cpu(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With 4 CPUs the gateway gets CPU 3 and the load the other three."""
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3})
        assert cli.plan_cpus(True) == ({3}, {0, 1, 2}, None)

    def test_one_cpu_cannot_pin(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a single CPU there is nothing to split: run unpinned, and say so."""
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0})
        gateway, load, warning = cli.plan_cpus(True)
        assert gateway is None and load is None and warning and "2 CPUs" in warning

    def test_exec_wrapper_cpu_list(self) -> None:
        assert _exec.parse_cpus("-") is None
        assert _exec.parse_cpus("1") == {1}
        assert _exec.parse_cpus("0,2") == {0, 2}


class TestChildEnvironment:
    def test_only_the_benchmark_configures_the_gateway(self) -> None:
        """Gateway/OpenAI settings of the caller's shell never leak into the measured gateway."""
        env = gateway_env(
            {"PATH": "/bin", "OPENAI_API_KEY": "sk-real", "GATEWAY_TOOLS": "x"},
            media="transcode",
            port=1234,
            upstream_base_url="http://127.0.0.1:9/v1",
            upstream_key="sk-bench-1",
            gateway_key="gk_bench_1",
            max_calls=120,
        )
        assert env["PATH"] == "/bin" and "GATEWAY_TOOLS" not in env
        assert env["OPENAI_API_KEY"] == "sk-bench-1"
        assert env["GATEWAY_MEDIA"] == "transcode" and env["GATEWAY_PORT"] == "1234"
        assert env["GATEWAY_ICE_ADDRESSES"] == env["GATEWAY_UPSTREAM_ICE_ADDRESSES"] == "127.0.0.1"
        # All the load comes from one address: the per-address rate limit must not refuse it.
        assert int(env["GATEWAY_CALLS_PER_MINUTE_PER_IP"]) >= 1000
