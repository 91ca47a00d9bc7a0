"""Outages of the team server while a run logs into it: the mlflow server killed -9 and started
again on its port (scripts/mlflow_server.sh start), and PostgreSQL itself restarted.

Training never waits for the server. The sink rides out what its retries cover and is disabled
after a longer outage (the rest stays in metrics.ndjson); today's back-fill,
``codex-ml monitoring export RUN --to mlflow``, then sends exactly what the server lacks. Either
way the server ends with every step of every key exactly once, and a second back-fill sends nothing.
"""

from __future__ import annotations

import json
import threading
import time

from team_helpers import exactly_once, mlflow_state, step_counts
from typer.testing import CliRunner

from codex_ml.monitoring.cli import app as monitoring_app
from codex_ml.tracking import start_run

KEYS = [f"train/k{i}" for i in range(5)]
STEPS = 300
OUTAGE_AT = 60


def _log_through(tmp_path, server, name: str, outage) -> tuple:
    """Log STEPS steps ~20 ms apart (a fast training loop); run ``outage`` on a thread at OUTAGE_AT,
    after the MLflow run exists; close once the outage is over."""
    run = start_run(name, output_root=tmp_path, enable_mlflow=True, mlflow_tracking_uri=server.uri,
                    flush_interval=0.05, close_timeout=60)  # fmt: skip
    _wait_for_mlflow_run(run)
    trouble = threading.Thread(target=outage, name="outage")
    began = time.monotonic()
    for step in range(STEPS):
        if step == OUTAGE_AT:
            trouble.start()
        run.log_metrics({key: step + i / 10 for i, key in enumerate(KEYS)}, step=step)
        time.sleep(0.02)
    logging_s = time.monotonic() - began
    trouble.join()
    return run, run.close(), logging_s


def _wait_for_mlflow_run(run, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while "mlflow" not in json.loads(run.paths.run_file.read_text()).get("backends", {}):
        assert time.monotonic() < deadline, "the MLflow sink never started"
        time.sleep(0.05)


def _backfill(run) -> str:
    result = CliRunner().invoke(monitoring_app, ["export", str(run.paths.root), "--to", "mlflow"])
    assert result.exit_code == 0, result.output
    return result.output


def _check_every_step_once(run, server, report, logging_s) -> None:
    assert logging_s < STEPS * 0.02 + 10  # logging never waited for the server
    run_id = mlflow_state(run.paths.root)["run_id"]
    missed = report.sinks["mlflow"]["undelivered"] + report.sinks["mlflow"]["dropped"]
    before = step_counts(server.uri, run_id, KEYS)
    assert sum(sum(c.values()) for c in before.values()) <= len(KEYS) * STEPS  # never a point twice
    _backfill(run)
    after = step_counts(server.uri, run_id, KEYS)
    assert exactly_once(after, range(STEPS)) == {}, (report, server.log_tail())
    if not missed:  # the sink delivered everything itself: the back-fill had nothing to add
        assert after == before
    _backfill(run)
    assert step_counts(server.uri, run_id, KEYS) == after  # idempotent


def test_server_killed_and_restarted_mid_run(tmp_path, team_server) -> None:
    def crash_and_restart() -> None:
        team_server.kill_server()
        team_server.start()  # the script: same port and store, PostgreSQL still up

    run, report, logging_s = _log_through(tmp_path, team_server, "killed-server", crash_and_restart)
    _check_every_step_once(run, team_server, report, logging_s)


def test_postgres_restarted_mid_run(tmp_path, team_server) -> None:
    run, report, logging_s = _log_through(tmp_path, team_server, "pg-restart",
                                          lambda: team_server.restart_postgres("fast"))  # fmt: skip
    # The server's connection pool pings before use: it reconnects, and the client retries the 5xx it got meanwhile.
    assert report.sinks["mlflow"]["disabled"] is False, report
    _check_every_step_once(run, team_server, report, logging_s)
