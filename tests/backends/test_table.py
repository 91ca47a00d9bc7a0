"""One module and one row in ``codex_ml.backends.BACKENDS`` are the whole of a built-in backend.

A backend written as a module in a temporary folder and added as a row must be built by
start_run, listed by the plugin registry, named in the run's outputs, remembered in run.json for
back-fill, back-filled on resume through its ``History``, and replayable by ``export --to``:
nothing else in the tree is edited.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from codex_ml.backends import BACKENDS, Row, replayable
from codex_ml.plugins.registry import Registry
from codex_ml.tracking import start_run
from codex_ml.tracking.viewing import describe_outputs

FAKE = '''
"""A backend that keeps its points in <run>/fake.jsonl."""
import json
from collections import Counter
from codex_ml.rundir.sink import Sink


class FakeSink(Sink):
    name = "fake"

    @classmethod
    def from_config(cls, config):
        return cls()

    def start(self, run):
        self._file = open(run.paths.root / "fake.jsonl", "a", encoding="utf-8")

    def write_metrics(self, points):
        for step, _, metrics in points:
            for key, value in metrics.items():
                self._file.write(json.dumps([key, step, value]) + "\\n")

    def close(self, status):
        self._file.close()


class History:
    def __init__(self, info, tracking_uri=None, experiment=None):
        self.info, self.sink, self.target = info, FakeSink(), "fake.jsonl"

    def name(self, key):
        return key

    def existing(self, keys):
        path = self.info.paths.root / "fake.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        out = {}
        for key, step, _ in rows:
            out.setdefault(key, Counter())[step] += 1
        return {key: dict(c) for key, c in out.items()}


def view_line(paths, saved):
    return f"  Fake:         {paths.root / 'fake.jsonl'}"
'''


@pytest.fixture
def fake_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    folder = tmp_path / "mods"
    folder.mkdir()
    (folder / "codex_fake_backend.py").write_text(textwrap.dedent(FAKE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "codex_fake_backend", raising=False)
    switch = {"on": True}
    row = Row("fake", "codex_fake_backend", "FakeSink", "json", "fake", "The fake sink", lambda config: switch["on"])
    monkeypatch.setitem(BACKENDS, "fake", row)
    return switch


def _points(run_dir: Path) -> list[list]:
    return [json.loads(line) for line in (run_dir / "fake.jsonl").read_text().splitlines()]


def test_a_backend_is_one_module_and_one_row(tmp_path: Path, fake_backend: dict[str, bool]) -> None:
    assert "fake" in Registry(discover=False).names("sinks")
    assert "fake" in replayable()

    with start_run("r", output_root=tmp_path / "runs", flush_interval=0.05) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert _points(run.paths.root) == [["loss", 0, 1.0]]
    assert json.loads(run.paths.run_file.read_text())["sinks"] == ["fake"]
    assert describe_outputs(run.paths, ["fake"])[-1] == f"  Fake:         {run.paths.root / 'fake.jsonl'}"

    # A session without the sink, then a resume with it: the gap is back-filled through History.
    fake_backend["on"] = False
    with start_run("r", output_root=tmp_path / "runs", resume=True, flush_interval=0.05) as run:
        run.log_metrics({"loss": 0.5}, step=1)
    fake_backend["on"] = True
    with start_run("r", output_root=tmp_path / "runs", resume=True, flush_interval=0.05) as run:
        run.log_metrics({"loss": 0.25}, step=2)
    assert sorted(_points(run.paths.root)) == [["loss", 0, 1.0], ["loss", 1, 0.5], ["loss", 2, 0.25]]


def test_replay_into_a_table_backend_sends_only_what_is_missing(tmp_path: Path, fake_backend: dict[str, bool]) -> None:
    from codex_ml.monitoring.replay import replay

    fake_backend["on"] = False
    with start_run("r", output_root=tmp_path / "runs", flush_interval=0.05) as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_metrics({"loss": 0.5}, step=1)
    first = replay(run.paths.root, "fake", progress=False)
    again = replay(run.paths.root, "fake", progress=False)
    assert (first.sent, again.sent) == (2, 0)
    assert _points(run.paths.root) == [["loss", 0, 1.0], ["loss", 1, 0.5]]


def test_every_row_names_a_module_with_what_the_table_promises() -> None:
    for name, row in BACKENDS.items():
        module = row.load()
        sink = getattr(module, row.sink)
        assert sink.name == name and callable(sink.from_config), name
        assert callable(getattr(module, "view_line", None)) or name == "prometheus", name  # a server: no files to view
        assert hasattr(module, "History") == row.replayable, name
