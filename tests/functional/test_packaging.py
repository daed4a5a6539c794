"""The gateway as `pip install` leaves it: a wheel built from this tree, installed into a fresh
virtualenv, serves its page from the package, and carries nothing that is not the gateway."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from setuptools import find_packages  # type: ignore[import-untyped]

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(name="wheel", scope="module")
def _wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("realtime_gateway-*.whl")
    return wheel


@pytest.fixture(name="installed", scope="module")
def _installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the wheel (not the source tree) and, for its dependencies only, this
    environment's site-packages behind it."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Appended after the venv's own site-packages: the wheel's gateway comes first.
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    yield venv


class TestWheel:
    def test_the_package_list_is_the_tree(self) -> None:
        """pyproject.toml lists every package of the source tree (and the page as gateway.web)."""
        import tomllib

        listed = set(
            tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
        )
        found = set(find_packages(str(ROOT), include=["gateway*"]))
        assert listed == found | {"gateway.web", "gateway.web.ui"}

    def test_the_wheel_carries_the_page_and_not_the_benchmark(self, wheel: Path) -> None:
        """Every file of web/ is in the wheel; the benchmark and the tests are not."""
        names = set(zipfile.ZipFile(wheel).namelist())
        page = {
            "gateway/web/" + str(p.relative_to(ROOT / "web"))
            for p in (ROOT / "web").rglob("*")
            if p.is_file()
        }
        assert page <= names
        assert not any(n.startswith(("gateway_bench/", "tests/", "bench/")) for n in names)

    async def test_an_installed_gateway_serves_its_page(
        self, installed: Path, tmp_path: Path
    ) -> None:
        """`realtime-gateway serve` from the installed wheel, run away from the source tree,
        answers the page and its script."""
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "GATEWAY_"))}
        env.update(GATEWAY_PORT=str(port), GATEWAY_ICE_ADDRESSES="127.0.0.1", PYTHONPATH="")
        proc = await asyncio.create_subprocess_exec(
            str(installed / "bin" / "realtime-gateway"),
            "serve",
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with aiohttp.ClientSession() as http:
                async with asyncio.timeout(30):
                    while True:
                        try:
                            async with http.get(f"http://127.0.0.1:{port}/") as page:
                                body = await page.text()
                                break
                        except aiohttp.ClientError:
                            await asyncio.sleep(0.2)
                assert page.status == 200 and "<html" in body.lower()
                async with http.get(f"http://127.0.0.1:{port}/static/app.js") as script:
                    assert script.status == 200
                    assert "javascript" in script.headers["Content-Type"]
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert "Traceback" not in err.decode()
        which = await asyncio.create_subprocess_exec(
            str(installed / "bin" / "python"),
            "-c",
            "import gateway; print(gateway.__file__)",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        where, _ = await which.communicate()
        assert str(installed) in where.decode()  # the wheel's gateway, not the source tree's
