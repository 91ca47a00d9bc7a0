"""The real viewers in a real browser: TensorBoard and the MLflow UI on a run made by the demo tool.

Each test starts its own server on a free 127.0.0.1 port (and checks it listens there only),
opens it in headless system Chromium, waits for the run's data to be on screen, and saves a
screenshot in the test's tmp dir. Needs ``/usr/bin/chromium`` (``scripts/install_system_deps.sh``);
without it the tests fail with that hint rather than skip.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from viewer_servers import VENV_BIN, listening_addresses, serve

from codex_ml.monitoring.ui import free_port
from codex_ml.rundir.reader import metric_series

TAG = "train/loss"
UI_TIMEOUT_MS = 60_000  # generous: the first render on a loaded 2-core machine can take a while
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# True once a scalar card titled with the tag holds a chart canvas of real size.
CARD_READY_JS = """(tag) => Array.from(document.querySelectorAll('scalar-card')).some(card =>
    card.textContent.replace(/\\s+/g, '').includes(tag) &&
    Array.from(card.querySelectorAll('line-chart canvas')).some(c => c.width > 0 && c.height > 0))"""


def _last_point(run_dir: Path, tag: str) -> tuple[int, float]:
    return metric_series(run_dir / "metrics.ndjson")[tag][-1]


def _assert_screenshot(path: Path) -> None:
    # A blank or error page is a handful of colours; a rendered dashboard has many (text, lines, antialiasing).
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    image = Image.open(io.BytesIO(data)).convert("RGB")
    assert image.width >= 1000 and image.height >= 600, f"{path}: unexpected size {image.size}"
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) >= 32, f"{path} looks blank: {len(colours)} colours"


def _drawn_fraction(png: bytes) -> float:
    """Share of pixels that differ from the most common (background) colour."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height)
    return 1.0 - max(count for count, _ in colours) / (image.width * image.height)


def _wait_until_drawn(canvas: Any, timeout_s: float) -> float:
    # The chart canvas exists before its lines are painted; poll its pixels.
    deadline = time.monotonic() + timeout_s
    fraction = _drawn_fraction(canvas.screenshot())
    while fraction < 0.005 and time.monotonic() < deadline:
        time.sleep(0.5)
        fraction = _drawn_fraction(canvas.screenshot())
    return fraction


def test_tensorboard_shows_train_loss_chart(demo_run: Path, browser_page: Any, tmp_path: Path) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(VENV_BIN / "tensorboard"), "--logdir", str(demo_run / "tensorboard"),
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with serve("tensorboard", command, f"{base}/", tmp_path / "tensorboard.log") as process:
        assert listening_addresses(process) == {"127.0.0.1"}
        page = browser_page
        # The Time Series dashboard, filtered to the one scalar tag: its card must show a chart.
        page.goto(f"{base}/?tagFilter=%5Etrain%2Floss%24#timeseries")
        try:
            page.wait_for_function(CARD_READY_JS, arg=TAG, timeout=UI_TIMEOUT_MS)
        except PlaywrightTimeout:
            pytest.fail(f"TensorBoard showed no {TAG} chart card within {UI_TIMEOUT_MS / 1000:.0f} s; "
                        f"screenshot: {tmp_path / 'tensorboard.png'}")  # fmt: skip
        finally:
            page.screenshot(path=tmp_path / "tensorboard.png")
        card = page.locator("scalar-card").filter(has_text=re.compile(r"train\s*/\s*loss"))
        drawn = _wait_until_drawn(card.locator("line-chart canvas").first, UI_TIMEOUT_MS / 1000)
        assert drawn >= 0.005, f"the {TAG} chart canvas stays blank ({drawn:.2%} drawn); see {tmp_path}"
        last_step, _ = _last_point(demo_run, TAG)
        assert str(last_step) in card.inner_text(), f"the {TAG} card does not show step {last_step}"
        page.screenshot(path=tmp_path / "tensorboard.png")
    _assert_screenshot(tmp_path / "tensorboard.png")


def _mlflow_ids(run_dir: Path) -> tuple[str, str, str]:
    """(tracking URI, experiment id, run id) of the run's MLflow copy, as recorded in run.json."""
    from mlflow.tracking import MlflowClient

    saved = json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]
    experiment = MlflowClient(saved["tracking_uri"]).get_experiment_by_name(saved["experiment"])
    assert experiment is not None, f"experiment {saved['experiment']!r} not in {saved['tracking_uri']}"
    return saved["tracking_uri"], experiment.experiment_id, saved["run_id"]


def test_mlflow_ui_shows_run_metrics_and_params(demo_run: Path, browser_page: Any, tmp_path: Path,
                                                monkeypatch: Any) -> None:  # fmt: skip
    from playwright.sync_api import expect

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3.13+ refuses plain file stores without it
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: the server must not try to phone home
    uri, experiment_id, run_id = _mlflow_ids(demo_run)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(VENV_BIN / "mlflow"), "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    with serve("mlflow server", command, f"{base}/health", tmp_path / "mlflow.log", env=dict(os.environ)) as process:
        assert listening_addresses(process) == {"127.0.0.1"}
        page = browser_page
        page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}")
        try:
            _expect_run_page(page, expect, demo_run, run_id)
        finally:
            page.screenshot(path=tmp_path / "mlflow.png", full_page=True)
    _assert_screenshot(tmp_path / "mlflow.png")


def _expect_run_page(page: Any, expect: Any, run_dir: Path, run_id: str) -> None:
    # The run's overview: its id, the last train/loss value and a logged param with its value.
    body = page.locator("body")
    expect(body, f"run page never showed run id {run_id}").to_contain_text(run_id, timeout=UI_TIMEOUT_MS)
    _, last_loss = _last_point(run_dir, TAG)
    metric_row = page.get_by_role("row").filter(has_text=TAG)
    expect(metric_row, f"no metrics row for {TAG}").to_contain_text(repr(last_loss), timeout=UI_TIMEOUT_MS)
    params = json.loads((run_dir / "params.json").read_text())
    param_row = page.get_by_role("row").filter(has_text="n_embd")
    expect(param_row, "no params row for n_embd").to_contain_text(str(params["n_embd"]), timeout=UI_TIMEOUT_MS)
    metric_row.scroll_into_view_if_needed()  # the screenshot then shows the metrics table
