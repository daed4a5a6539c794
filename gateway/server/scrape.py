"""One scrape for a host's workers: each worker's metrics, added up correctly.

With ``serve --workers N`` a scrape of the shared port lands on one worker, which asks its
siblings (the same worker group) for their own figures and merges them: counters, histograms and
most gauges are summed (calls in progress, capacity); a gauge that is a highest value or a flag
(jitter, draining) takes the maximum; ``_created`` timestamps the earliest. Pure text in, text out.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

# Gauges whose meaning across processes is "the highest", not "the total".
MAX_GAUGES: Final = frozenset(
    {"realtime_gateway_audio_jitter_seconds", "realtime_gateway_draining"}
)

Key = tuple[str, tuple[tuple[str, str], ...]]


def merge(texts: Iterable[str], *, extra: dict[str, float] | None = None) -> str:
    """Prometheus text expositions merged into one (``extra``: gauges to add, by name)."""
    families: dict[str, tuple[str, str, dict[Key, float]]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            kind, doc, samples = families.setdefault(
                family.name, (family.type, family.documentation, {})
            )
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                value = float(sample.value)
                if key not in samples:
                    samples[key] = value
                elif sample.name.endswith("_created"):
                    samples[key] = min(samples[key], value)
                elif kind == "gauge" and family.name in MAX_GAUGES:
                    samples[key] = max(samples[key], value)
                else:
                    samples[key] += value
    lines: list[str] = []
    for name, (kind, doc, samples) in families.items():
        # As prometheus_client writes it: a counter's block is named with its _total (its
        # _created timestamps come as gauge families of their own, and stay so).
        block = f"{name}_total" if kind == "counter" else name
        lines.append(f"# HELP {block} {_escape_doc(doc)}")
        lines.append(f"# TYPE {block} {kind}")
        for (sample_name, labels), value in samples.items():
            lines.append(f"{sample_name}{_labels(labels)} {_number(value)}")
    for name, value in (extra or {}).items():
        lines += [f"# TYPE {name} gauge", f"{name} {_number(value)}"]
    return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_doc(doc: str) -> str:
    return doc.replace("\\", "\\\\").replace("\n", "\\n")


def _number(number: float) -> str:
    value = float(number)
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
