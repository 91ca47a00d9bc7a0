"""A disk that fills up under the run directory: one [monitoring-error] line, training goes on,
and logging catches up, in order, once space returns."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from codex_ml.rundir.reader import ReadReport, iter_records

ROOT = Path(__file__).resolve().parents[2]

# RLIMIT_FSIZE makes writes past a size fail (EFBIG) exactly as a full disk does (ENOSPC) for
# our writer, without needing privileges to mount a small filesystem; raising the limit again
# is "space returns".
SCRIPT = textwrap.dedent(
    """
    import resource, signal, sys, time
    from codex_ml.tracking import start_run

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    run = start_run("full", output_root=sys.argv[1], flush_interval=0.02)
    run.log_metrics({"loss": 0.0}, step=0)
    run.flush()
    size = run.paths.metrics.stat().st_size
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 200, resource.RLIM_INFINITY))  # the disk fills up
    for step in range(1, 400):
        run.log_metrics({"loss": float(step)}, step=step)
        time.sleep(0.0005)
    time.sleep(0.2)
    print("training went on", flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))  # space returns
    for step in range(400, 500):
        run.log_metrics({"loss": float(step)}, step=step)
    report = run.close()
    print("complete" if report.complete else "incomplete")
    """
)


def test_disk_full_reports_once_and_catches_up_when_space_returns(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["training went on", "complete"]
    errors = [line for line in done.stderr.splitlines() if line.startswith("[monitoring-error]")]
    assert len(errors) == 1 and "ndjson: cannot write metrics.ndjson" in errors[0], done.stderr
    report = ReadReport("metrics.ndjson")
    steps = [r["step"] for r in iter_records(tmp_path / "full" / "metrics.ndjson", report)]
    assert steps == list(range(500)) and report.bad_lines == [] and not report.torn_tail
