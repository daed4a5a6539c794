"""Product text speaks of the product: help, reports, README and docs cite no tracker numbers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# "issue #6", "issue 12", "(#6 §3)": our tracker's numbers. Other projects' issues ("aiortc
# #543") name their project and stay: they are where a reader finds the bug.
PATTERN = re.compile(r"\bissues?\s*#?\d+|(?<![\w/-])#\d+\s*§", re.IGNORECASE)
GLOBS = (
    "README.md",
    "SECURITY.md",
    "docs/**/*.md",
    "deploy/**/*.md",
    "deploy/**/*.yml",
    "deploy/**/*.yaml",
    "deploy/**/Caddyfile",
    "bench/**/*.py",
    "bench/**/*.md",
    "gateway/**/*.py",
    "web/**/*.html",
    "web/**/*.js",
    "tests/fuzz/FINDINGS.md",
    "Dockerfile",
    "pyproject.toml",
)


def product_files() -> list[Path]:
    return sorted({path for pattern in GLOBS for path in ROOT.glob(pattern) if path.is_file()})


@pytest.mark.parametrize("path", product_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_tracker_numbers(path: Path) -> None:
    """No line cites one of our issues."""
    hits = [
        f"{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if PATTERN.search(line)
    ]
    assert hits == []


@pytest.mark.parametrize(
    ("text", "cited"),
    [
        ("targets (issue #6 §3)", True),
        ("see issue 12", True),
        ("Every Issue #7 target", True),
        ("(#6 §3)", True),
        ("aiortc #543 is known", False),
        ("RFC 7983 §4", False),
        ("the 2nd issue of the file", False),
    ],
)
def test_the_pattern(text: str, cited: bool) -> None:
    """What counts as citing our tracker, and what does not."""
    assert bool(PATTERN.search(text)) is cited
