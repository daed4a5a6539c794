"""OpenAI's ``@openai/agents-realtime`` bundled with esbuild, for the drop-in test page.

``scripts/install-system`` runs ``npm ci`` here, so a test run needs no network; if the
packages are missing anyway this installs them (the npm registry is the only host it needs).
The bundle is rebuilt whenever it is older than what it is built from.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.browser.support import require

HERE = Path(__file__).resolve().parent
BUNDLE = HERE / "sdk" / "dist" / "agents-realtime.js"
SOURCES = [
    HERE / "package.json",
    HERE / "package-lock.json",
    HERE / "sdk" / "entry.js",
    HERE / "sdk" / "build.mjs",
]
INSTALLED = HERE / "node_modules" / "@openai" / "agents-realtime" / "package.json"


def _run(args: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            args, cwd=HERE, capture_output=True, text=True, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        require(False, f"{what} failed: {exc}")
        return
    require(done.returncode == 0, f"{what} failed:\n{done.stdout}\n{done.stderr}")


def _stale() -> bool:
    if not BUNDLE.exists():
        return True
    built = BUNDLE.stat().st_mtime
    return any(p.exists() and p.stat().st_mtime > built for p in [*SOURCES, INSTALLED])


def ensure() -> Path:
    require(
        shutil.which("node") is not None and shutil.which("npm") is not None,
        "node and npm are needed to bundle @openai/agents-realtime (scripts/install-system)",
    )
    if not INSTALLED.exists():
        _run(["npm", "ci", "--no-audit", "--no-fund"], "npm ci in tests/browser")
    if _stale():
        # Built beside the target and renamed, so a concurrent run never reads half a file.
        partial = BUNDLE.with_name(f".{BUNDLE.name}.{os.getpid()}")
        BUNDLE.parent.mkdir(parents=True, exist_ok=True)
        _run(["node", "sdk/build.mjs", str(partial)], "esbuild bundling of @openai/agents-realtime")
        os.replace(partial, BUNDLE)
    return BUNDLE
