"""Fixtures: the plugin packages kept here, installed for real, and small hand-made distributions."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PACKAGES = ("sample_plugin", "broken_plugin")


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding codex-sample-plugin and codex-broken-plugin, installed by pip.

    They go into a ``--target`` folder, not the shared venv, so only the tests that put it on
    their path see them. The sources are copied first: pip builds in the source tree.
    """
    root = tmp_path_factory.mktemp("plugin-packages")
    for package in PACKAGES:
        shutil.copytree(HERE / package, root / package, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-index", "--target", str(site), *(str(root / p) for p in PACKAGES)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return site


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Put folders on sys.path for this test; modules imported from them are forgotten after."""
    added: list[str] = []

    def add(folder: Path) -> None:
        monkeypatch.syspath_prepend(str(folder))
        added.append(str(folder))

    yield add
    for name, module in list(sys.modules.items()):
        if any(str(getattr(module, "__file__", "") or "").startswith(folder) for folder in added):
            del sys.modules[name]


@pytest.fixture
def make_dist(tmp_path: Path, on_path: Callable[[Path], None]) -> Callable[..., Path]:
    """Write an installed distribution by hand (dist-info + modules) and put it on sys.path.

    ``make_dist("name", {"codex_ml.sinks": {"x": "mod:Obj"}}, {"mod": "source"})``
    """
    site = tmp_path / "hand-made-site"
    site.mkdir()
    on_path(site)

    def make(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for group, eps in entry_points.items()]
        (info / "entry_points.txt").write_text("\n".join(lines))
        for module, source in modules.items():
            (site / f"{module}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()  # the folder was listed (and cached) before these files existed
        return site

    return make
