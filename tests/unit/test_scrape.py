"""One scrape for a host's workers: expositions merged as Prometheus would add them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway.server.scrape import merge


def worker(calls: int, active: int, jitter: float, seconds: list[float]) -> str:
    registry = CollectorRegistry()
    Counter("realtime_gateway_sessions", "Calls.", ["outcome"], registry=registry).labels(
        "completed"
    ).inc(calls)
    Gauge("realtime_gateway_sessions_active", "Live.", registry=registry).set(active)
    Gauge("realtime_gateway_audio_jitter_seconds", "Highest.", ["leg"], registry=registry).labels(
        "browser"
    ).set(jitter)
    histogram = Histogram("realtime_gateway_setup_seconds", "Setup.", registry=registry)
    for value in seconds:
        histogram.observe(value)
    return generate_latest(registry).decode()


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class TestMerge:
    def test_counters_gauges_and_histograms_add_up(self) -> None:
        """Counters, live-call gauges and histogram buckets sum; 'highest' gauges take the max."""
        merged = values(
            merge(
                [worker(3, 2, 0.01, [0.01, 0.2]), worker(4, 1, 0.05, [0.3])],
                extra={"realtime_gateway_scrape_processes": 2},
            )
        )
        assert merged[("realtime_gateway_sessions_total", (("outcome", "completed"),))] == 7
        assert merged[("realtime_gateway_sessions_active", ())] == 3
        assert merged[("realtime_gateway_audio_jitter_seconds", (("leg", "browser"),))] == 0.05
        assert merged[("realtime_gateway_setup_seconds_count", ())] == 3
        assert merged[("realtime_gateway_setup_seconds_bucket", (("le", "0.25"),))] == 2
        assert merged[("realtime_gateway_setup_seconds_bucket", (("le", "+Inf"),))] == 3
        assert merged[("realtime_gateway_scrape_processes", ())] == 2

    def test_one_worker_merges_to_itself(self) -> None:
        """A single exposition comes out with the same values."""
        text = worker(5, 0, 0.0, [1.0])
        assert values(merge([text])) == values(text)

    def test_type_lines_name_the_samples_as_prometheus_client_does(self) -> None:
        """Merged output keeps counters' _total block names and _created as gauges, so it
        reads back as the same families and types."""
        text = worker(1, 0, 0.0, [0.5])
        merged = merge([text, text])
        assert "# TYPE realtime_gateway_sessions_total counter" in merged
        assert "# TYPE realtime_gateway_sessions_created gauge" in merged
        original = {(f.name, f.type) for f in text_string_to_metric_families(text)}
        again = {(f.name, f.type) for f in text_string_to_metric_families(merged)}
        assert again == original
