"""Opt-in: build the image with buildah and run it with podman (scripts/build-image).

Minutes, root, and podman/buildah/debootstrap installed, so not part of the default run:
GATEWAY_TEST_IMAGE=1 python -m pytest tests/deploy/test_deploy_image.py
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.deploy.support import REPO

pytestmark = pytest.mark.skipif(
    os.environ.get("GATEWAY_TEST_IMAGE") != "1",
    reason="builds and runs the container image (minutes); set GATEWAY_TEST_IMAGE=1",
)


@pytest.mark.timeout(1800)
def test_image_builds_runs_and_drains() -> None:
    """scripts/build-image builds the image, answers /healthz, /readyz, /metrics and the page
    inside a --network none container, carries one WebRTC call on the ICE range, and exits 0
    on SIGTERM."""
    result = subprocess.run(
        [str(REPO / "scripts" / "build-image")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
