"""The module paths the README and docs promise users keep importing after internal moves."""

from __future__ import annotations

import importlib

import pytest

# (module, attribute) pairs named in README.md / docs/ as the public way in.
PUBLIC = [
    ("codex_ml.tracking", "start_run"),
    ("codex_ml.tracking.mlflow_utils", "resolve_tracking_uri"),
    ("codex_ml.tracking.sink", "Sink"),
    ("codex_ml.monitoring.system_metrics", "SystemMetricsLogger"),
]


@pytest.mark.parametrize(("module", "name"), PUBLIC, ids=[f"{m}.{n}" for m, n in PUBLIC])
def test_documented_name_imports(module: str, name: str) -> None:
    assert callable(getattr(importlib.import_module(module), name))
