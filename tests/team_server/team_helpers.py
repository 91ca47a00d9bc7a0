"""Shared by the team-server tests: the script's path, a run's MLflow state and metric history counted per step."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The script under test (and the one the fixture starts the server with).
SCRIPT = REPO / "scripts" / "mlflow_server.sh"


def mlflow_state(run_dir: Path) -> dict:
    """The ``mlflow`` entry run.json records (run_id, tracking_uri, experiment...)."""
    return json.loads((run_dir / "run.json").read_text())["backends"]["mlflow"]


def step_counts(uri: str, run_id: str, keys: list[str]) -> dict[str, Counter]:
    """How many times each step of each key is in ``get_metric_history`` (every step once: all 1)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return {key: Counter(m.step for m in client.get_metric_history(run_id, key)) for key in keys}


def exactly_once(counts: dict[str, Counter], steps: range) -> dict[str, str]:
    """The keys whose history is not every step of ``steps`` exactly once, with what is wrong."""
    wrong = {}
    for key, counter in counts.items():
        missing = [s for s in steps if s not in counter]
        doubled = sorted(s for s, n in counter.items() if n > 1)
        extra = sorted(s for s in counter if s not in steps)
        if missing or doubled or extra:
            wrong[key] = f"missing {missing[:10]}{'...' if len(missing) > 10 else ''} ({len(missing)}), doubled {doubled[:10]}, extra {extra[:10]}"
    return wrong
