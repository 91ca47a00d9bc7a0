"""The run files a tracking server gets at close (config, summary, plot) never hold close() past
its deadline: a server that freezes right after the sinks closed costs the close timeout plus the
sinks' grace, one warning, and the run's own files are untouched."""

from __future__ import annotations

import json
import os
import signal
import time

from codex_ml.tracking import start_run
from codex_ml.tracking.services import RUN_PLOT, register
from codex_ml.tracking.worker import STOP_GRACE

CLOSE_TIMEOUT = 3.0


def test_a_server_frozen_during_the_closing_upload_costs_at_most_the_deadline(tmp_path, team_server, capfd) -> None:
    pid = int((team_server.data_dir / "mlflow.pid").read_text())

    def freeze_instead_of_plotting(paths, output) -> None:
        os.killpg(pid, signal.SIGSTOP)  # the sinks have closed; the uploads come next

    register(RUN_PLOT, freeze_instead_of_plotting)
    try:
        run = start_run("frozen-at-close", output_root=tmp_path, enable_mlflow=True, mlflow_tracking_uri=team_server.uri,
                        flush_interval=0.05, close_timeout=CLOSE_TIMEOUT)  # fmt: skip
        for step in range(20):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        began = time.monotonic()
        report = run.close()
        closing = time.monotonic() - began
    finally:
        register(RUN_PLOT, None)
        os.killpg(pid, signal.SIGCONT)
    assert report.complete and report.sinks["mlflow"]["delivered"] == 20  # the sink itself was done
    assert closing < CLOSE_TIMEOUT + STOP_GRACE + 2, closing
    err = capfd.readouterr().err
    assert "not all uploaded before the close timeout" in err and "[monitoring-error]" not in err, err
    assert json.loads(run.paths.summary.read_text())["status"] == "FINISHED"
