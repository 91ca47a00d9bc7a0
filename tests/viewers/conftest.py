"""Fixtures for the real-viewer tests: one demo run, local servers, and headless Chromium.

Chromium is the system's ``/usr/bin/chromium`` (Debian package ``chromium``, installed by
``scripts/install_system_deps.sh``), driven by Playwright for Python. Nothing is downloaded:
``playwright install`` is never run and the browser starts with networking extras switched off.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from viewer_servers import SERVER_TIMEOUT

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
RUN_TIMEOUT = 240.0  # generous: the demo run takes ~15 s on a loaded 2-core machine
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 40-step run with TensorBoard and MLflow, made by ``tools/monitoring_integrate.py``."""
    root = tmp_path_factory.mktemp("runs")
    command = [sys.executable, str(REPO / "tools" / "monitoring_integrate.py"), "--steps", "40", "--no-progress",
               "--output-root", str(root), "--run-name", "demo", "--enable-tensorboard", "--mlflow-enable"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False)
    assert done.returncode == 0, f"monitoring_integrate.py failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return root / "demo"


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    """A Playwright page in headless system Chromium with a fresh profile in ``tmp_path``."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Chromium with `sudo scripts/install_system_deps.sh` "
                    "(Debian package `chromium`; `make test` runs that script)")  # fmt: skip
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is missing: .venv/bin/python -m pip install -c constraints.txt "
                    "-e '.[dev]' (or run `make test`)")  # fmt: skip
    with sync_playwright() as playwright:
        # launch_persistent_context is how Playwright takes --user-data-dir: a fresh profile per test.
        context = playwright.chromium.launch_persistent_context(
            tmp_path / "chromium-profile", executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, timeout=SERVER_TIMEOUT * 1000)  # fmt: skip
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()
