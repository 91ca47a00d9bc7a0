"""optuna-dashboard on a sweep's study storage: in headless system Chromium, and while the sweep writes.

The study is built the way a sweep builds it: storage ``sqlite:///<sweep dir>/optuna.db``,
study name = sweep name, params ``training.lr`` and ``model.n_layer``, the validation loss
reported at each eval step and a real MedianPruner deciding; one trial ends PRUNED, three
COMPLETE. The test starts the documented command (``optuna-dashboard STORAGE --host 127.0.0.1
--port PORT``) and checks the study list, the trials with their states and params, and the
intermediate-values and history plots (Plotly graphs whose data must equal the storage's).
A second test opens the storage read-only (the URL docs/sweeps.md gives for a running sweep)
and follows trials as they are written, over the API the study page polls.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from viewer_servers import listening_addresses, optuna_dashboard

SWEEP = "lr-depth"
EVAL_STEPS = (10, 20, 30)
# (training.lr, model.n_layer, val/loss at each eval step). Trial 2 is worse than the median of
# the finished trials at step 20, where the pruner starts deciding, so it ends PRUNED there.
TRIALS = [(1e-3, 2, (2.9, 2.6, 2.4)), (3e-3, 4, (2.8, 2.4, 2.1)),
          (1e-2, 2, (3.3, 3.2, 3.1)), (3e-4, 4, (2.7, 2.3, 1.9))]
PRUNED = 2
UI_TIMEOUT_MS = 60_000  # generous: the first render on a loaded 2-core machine can take a while
# The Plotly graph's traces (name, x, y) once each has drawn its SVG path; null until then.
PLOT_TRACES_JS = """(id) => { const g = document.getElementById(id);
    if (!g || !g.data || !g.querySelector('.scatterlayer .trace path')) return null;
    return g.data.filter(t => t.x && t.x.length)
        .map(t => ({name: t.name, x: Array.from(t.x), y: Array.from(t.y)})); }"""


def _create_study(storage_url: str) -> Any:
    """The sweep's study: named after the sweep, minimising val/loss, pruned by the median rule."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=EVAL_STEPS[1])
    return optuna.create_study(study_name=SWEEP, storage=storage_url, direction="minimize", pruner=pruner,
                               sampler=optuna.samplers.TPESampler(seed=0))  # fmt: skip


def _run_trial(study: Any, lr: float, n_layer: int, losses: tuple[float, ...],
               while_running: Callable[[], None] | None = None) -> None:  # fmt: skip
    """One trial as the sweep's objective runs it: suggest, report each eval, prune or finish.
    ``while_running`` is called once after the first report, while the trial is RUNNING."""
    import optuna

    study.enqueue_trial({"training.lr": lr, "model.n_layer": n_layer})  # fixed params: a known picture
    trial = study.ask()
    trial.suggest_float("training.lr", 1e-4, 1e-1, log=True)
    trial.suggest_categorical("model.n_layer", [2, 4])
    for step, loss in zip(EVAL_STEPS, losses):
        trial.report(loss, step)
        if while_running is not None and step == EVAL_STEPS[0]:
            while_running()
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return
    study.tell(trial, losses[-1])


def _run_sweep_study(storage_url: str) -> Any:
    """All of TRIALS in a new study; returns the study read back from storage."""
    import optuna

    study = _create_study(storage_url)
    for spec in TRIALS:
        _run_trial(study, *spec)
    study = optuna.load_study(study_name=SWEEP, storage=storage_url)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"], f"the pruner decided otherwise: {states}"
    return study


def test_optuna_dashboard_shows_the_sweep_study(tmp_path: Path, browser_page: Any) -> None:
    from playwright.sync_api import expect

    sweep_dir = tmp_path / "sweeps" / SWEEP
    sweep_dir.mkdir(parents=True)
    storage = f"sqlite:///{sweep_dir / 'optuna.db'}"  # as the sweep names it: sqlite:///sweeps/<sweep>/optuna.db
    study = _run_sweep_study(storage)
    page = browser_page
    with optuna_dashboard(storage, tmp_path / "optuna-dashboard.log") as (base, proc):
        assert listening_addresses(proc) == {"127.0.0.1"}
        try:
            _open_study_from_list(page, expect, base)
            _expect_plots(page, study)
            _expect_trials(page, expect, base, study)
        finally:
            page.screenshot(path=tmp_path / "optuna-dashboard.png", full_page=True)


def _open_study_from_list(page: Any, expect: Any, base: str) -> None:
    # The study list names the sweep; its link leads to the study's page.
    page.goto(f"{base}/dashboard")
    link = page.get_by_role("link").filter(has_text=SWEEP)
    expect(link, f"the study list does not show {SWEEP!r}").to_be_visible(timeout=UI_TIMEOUT_MS)
    link.click()
    expect(page, "the study link leads nowhere").to_have_url(re.compile(r"/dashboard/studies/\d+$"))
    expect(page.locator("body")).to_contain_text(SWEEP, timeout=UI_TIMEOUT_MS)


def _expect_plots(page: Any, study: Any) -> None:
    # Intermediate values: one drawn line per trial, the pruned one stopping at its last report.
    handle = page.wait_for_function(PLOT_TRACES_JS, arg="graph-intermediate-values", timeout=UI_TIMEOUT_MS)
    shown = {t["name"].strip(): list(zip(t["x"], t["y"])) for t in handle.json_value()}
    stored = {f"trial #{t.number}": sorted(t.intermediate_values.items()) for t in study.trials}
    assert shown == stored, f"intermediate values plot shows {shown}, storage has {stored}"
    assert len(shown[f"trial #{PRUNED}"]) == 2, "the pruned trial should stop at its second eval"
    # History: the objective per trial; the pruned trial is drawn at its last intermediate value.
    handle = page.wait_for_function(PLOT_TRACES_JS, arg="plot-history", timeout=UI_TIMEOUT_MS)
    objective = next(t for t in handle.json_value() if t["name"].startswith("Objective"))
    expected = [t.value if t.value is not None else t.intermediate_values[max(t.intermediate_values)]
                for t in study.trials]  # fmt: skip
    assert objective["x"] == [t.number for t in study.trials]
    assert objective["y"] == pytest.approx(expected)


def _expect_trials(page: Any, expect: Any, base: str, study: Any) -> None:
    # The trial list: every trial with its state; the pruned trial's details show its params.
    study_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    page.goto(f"{base}/dashboard/studies/{study_id}/trials?numbers={PRUNED}")
    buttons = page.get_by_role("button", name=re.compile(r"^Trial \d+ "))  # the list: "Trial 2 Pruned"
    expect(buttons, "the trial list does not show every trial").to_have_count(len(TRIALS), timeout=UI_TIMEOUT_MS)
    listed = [" ".join(text.split()[:3]) for text in buttons.all_inner_texts()]
    assert listed == [f"Trial {t.number} {t.state.name.capitalize()}" for t in study.trials], listed
    detail = page.get_by_role("heading", name=re.compile(rf"^Trial {PRUNED} \(trial_id=\d+\)"))
    expect(detail, "the pruned trial's details are not open").to_be_visible(timeout=UI_TIMEOUT_MS)
    lr, n_layer, _ = TRIALS[PRUNED]
    for name, value in (("training.lr", lr), ("model.n_layer", n_layer)):
        param = page.get_by_text(f"{name} {value}", exact=True)
        expect(param, f"no {name} = {value} on the pruned trial's page").to_be_visible(timeout=UI_TIMEOUT_MS)


def _api(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=30) as response:
        body = response.read()
    return json.loads(body) if body else None  # DELETE answers 204, no body


def _wait_for_trials(detail_url: str, expected: list[tuple[Any, ...]], timeout_s: float = 60.0) -> None:
    """Poll the study's API until its trials read (number, state, intermediate values) as expected.
    optuna-dashboard caches a study's trials for 2 s (under 100 trials; 5 s / 10 s for more)."""
    deadline = time.monotonic() + timeout_s
    while True:
        shown = [(t["number"], t["state"], [(v["step"], v["value"]) for v in t["intermediate_values"]])
                 for t in _api(detail_url)["trials"]]  # fmt: skip
        if shown == expected or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert shown == expected, f"after {timeout_s:.0f} s the dashboard shows {shown}, the sweep wrote {expected}"


def _stored(study: Any) -> list[tuple[Any, ...]]:
    return [(t.number, t.state.name.capitalize(), sorted(t.intermediate_values.items())) for t in study.get_trials()]


def test_read_only_dashboard_follows_a_running_sweep(tmp_path: Path) -> None:
    """The documented read-only URL (``sqlite:///file:...optuna.db?mode=ro&uri=true``) while the sweep writes:
    a RUNNING trial shows with its reports so far, finished ones with their states, and a write from the UI
    (deleting the study) is refused with the storage untouched."""
    import optuna

    db = tmp_path / "sweeps" / SWEEP / "optuna.db"
    db.parent.mkdir(parents=True)
    study = _create_study(f"sqlite:///{db}")
    _run_trial(study, *TRIALS[0])  # the dashboard opens an existing study, as on a sweep already started
    with optuna_dashboard(f"sqlite:///file:{db}?mode=ro&uri=true", tmp_path / "optuna-dashboard.log") as (base, _):
        (summary,) = _api(f"{base}/api/studies")["study_summaries"]
        assert summary["study_name"] == SWEEP
        detail_url = f"{base}/api/studies/{summary['study_id']}"  # what the study page polls (Live Update)
        _run_trial(study, *TRIALS[1], while_running=lambda: _wait_for_trials(detail_url, _stored(study)))
        for spec in TRIALS[2:]:
            _run_trial(study, *spec)
        _wait_for_trials(detail_url, _stored(study))
        with pytest.raises(urllib.error.HTTPError) as refused:
            _api(detail_url, method="DELETE")
        assert refused.value.code == 500  # sqlite refuses the write: "attempt to write a readonly database"
    assert "StorageInternalError" in (tmp_path / "optuna-dashboard.log").read_text()
    assert len(optuna.load_study(study_name=SWEEP, storage=f"sqlite:///{db}").trials) == len(TRIALS)
