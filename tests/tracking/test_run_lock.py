"""One writer per run directory: an OS lock (flock on ``run.lock``) held for the run's life.

Every test races or kills real processes: the lock is only worth something between processes,
and only the kernel releasing it on SIGKILL makes a crashed run resumable at once.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from codex_ml.errors import CodexMLError, RunInUseError
from codex_ml.tracking import start_run
from codex_ml.tracking.run import RunExistsError
from codex_ml.tracking.run_lock import LOCK_FILE, holder_of

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
TINY = str(REPO / "configs" / "training" / "tiny.yaml")
FAST = ["training.eval_interval=5", "training.checkpoint_interval=5", "training.sample_tokens=8",
        "training.eval_batches=2", "training.histogram_interval=1000", "training.sample_interval=1000"]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "WANDB_SILENT": "true", "WANDB_MODE": "offline"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _spawn(tmp_path: Path, body: str, *args: str) -> subprocess.Popen[str]:
    script = tmp_path / f"script-{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(body), encoding="utf-8")
    return subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs"), *args], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(process: subprocess.Popen[str], expected: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if expected in line:
            return
        if not line and process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"the helper process never printed {expected!r}:\n{process.communicate()[1][-3000:]}")


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _steps(run_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run_dir / "metrics.ndjson").read_text().splitlines()]


# -- racing new runs ------------------------------------------------------------------

RACER = """
import json, os, sys, time
from codex_ml.tracking import run as run_module, start_run

# A slow disk between reading run.json and writing it (what NFS gives for free) makes the
# window between "is the name taken?" and "take it" wide enough to hit on every round.
_load_json = run_module._load_json
def slow_load_json(path):
    data = _load_json(path)
    time.sleep(0.05)
    return data
run_module._load_json = slow_load_json

root, start, rounds, period = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
for r in range(rounds):
    go = start + r * period
    time.sleep(max(0.0, go - time.time()))
    try:
        run = start_run(f"race-{r}", output_root=root, flush_interval=0.02, params={"pid": os.getpid()})
    except Exception as exc:
        print(json.dumps({"round": r, "error": type(exc).__name__, "message": str(exc)}), flush=True)
        continue
    run.log_metrics({"pid": os.getpid()}, step=0)
    time.sleep(max(0.0, go + 0.6 * period - time.time()))  # hold it while the others try
    run.log_metrics({"pid": os.getpid()}, step=1)
    run.close()
    print(json.dumps({"round": r, "won": os.getpid()}), flush=True)
"""


def test_racing_start_runs_on_one_name_exactly_one_wins(tmp_path: Path) -> None:
    """Four processes call start_run on the same new name at the same instant, twelve times over:
    each time exactly one writes the run; the others get one clear error and write nothing."""
    racers, rounds, period = 4, 12, 0.4
    start = time.time() + 4.0  # every interpreter is up and waiting by then
    processes = [_spawn(tmp_path, RACER, str(start), str(rounds), str(period)) for _ in range(racers)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert "Traceback" not in err, err
        results += [json.loads(line) for line in out.splitlines()]
    for r in range(rounds):
        outcome = [x for x in results if x["round"] == r]
        winners = [x["won"] for x in outcome if "won" in x]
        assert len(outcome) == racers and len(winners) == 1, outcome
        for loser in (x for x in outcome if "error" in x):
            assert loser["error"] in ("RunInUseError", "RunExistsError"), loser
        run_dir = tmp_path / "runs" / f"race-{r}"
        state = _load(run_dir / "run.json")
        assert len(state["sessions"]) == 1 and state["status"] == "FINISHED"
        assert _load(run_dir / "params.json") == {"pid": winners[0]}
        pids = [json.loads(line)["metrics"]["pid"] for line in (run_dir / "metrics.ndjson").read_text().splitlines()]
        assert pids == [winners[0], winners[0]]
        assert _load(run_dir / "summary.json")["records"] == 3  # params + two metrics lines
        assert not list(run_dir.glob(".write-test*"))  # no probe file left behind


# -- a live run is refused, with its holder named ------------------------------------------

HOLDER = """
import sys, time
from codex_ml.tracking import start_run
run = start_run("live", output_root=sys.argv[1], flush_interval=0.02, resume=len(sys.argv) > 2)
for step in range(5):
    run.log_metrics({"loss": 1.0 / (step + 1)})
run.flush()
print("holding", flush=True)
time.sleep(120)
"""


def test_a_live_run_is_refused_naming_the_holders_pid_and_host(tmp_path: Path) -> None:
    """While a process writes a run, a second start_run of it (resume or not) fails with one
    RunInUseError naming that process's pid and host, and changes nothing in the run."""
    holder = _spawn(tmp_path, HOLDER)
    try:
        _wait_for_line(holder, "holding")
        run_dir = tmp_path / "runs" / "live"
        before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
        for resume in (True, False):
            with pytest.raises(RunInUseError) as info:
                start_run("live", output_root=str(tmp_path / "runs"), resume=resume, flush_interval=0.02)
            message = str(info.value)
            assert isinstance(info.value, CodexMLError)
            assert f"pid {holder.pid}" in message and socket.gethostname() in message, message
            assert "--resume" in message and "resume=True" not in message
        assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
        found = holder_of(run_dir)
        assert found is not None and found["pid"] == holder.pid and found["host"] == socket.gethostname()
    finally:
        holder.kill()
        holder.communicate(timeout=30)


def test_sigkilled_holder_leaves_a_run_resumable_at_once(tmp_path: Path) -> None:
    """SIGKILL the process writing a run: the kernel drops its lock, so --resume works right away
    even though run.lock still names the dead process."""
    holder = _spawn(tmp_path, HOLDER)
    _wait_for_line(holder, "holding")
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    run_dir = tmp_path / "runs" / "live"
    assert str(holder.pid) in (run_dir / LOCK_FILE).read_text()  # stale content, no lock
    assert holder_of(run_dir) is None
    run = start_run("live", output_root=str(tmp_path / "runs"), resume=True, flush_interval=0.02)
    try:
        assert holder_of(run_dir)["pid"] == os.getpid()
        run.log_metrics({"loss": 0.1})
    finally:
        run.close()
    assert _steps(run_dir) == list(range(6))
    assert len(_load(run_dir / "run.json")["sessions"]) == 2


def test_stale_lock_file_of_a_dead_process_never_blocks(tmp_path: Path) -> None:
    """A run.lock left by a process that no longer exists (any content, even garbage) is ignored."""
    with start_run("old", output_root=str(tmp_path), flush_interval=0.02) as run:
        run.log_metrics({"loss": 1.0})
    for content in ('{"pid": 999999999, "host": "%s", "started": 0}' % socket.gethostname(), "garbage\x00"):
        (tmp_path / "old" / LOCK_FILE).write_text(content)
        with start_run("old", output_root=str(tmp_path), resume=True, flush_interval=0.02) as run:
            run.log_metrics({"loss": 0.5})
    assert _steps(tmp_path / "old") == [0, 1, 2]


def test_lock_is_released_by_close_and_a_finished_run_is_not_in_use(tmp_path: Path) -> None:
    """After close() the next session may open the run; a finished run's name still needs --resume."""
    with start_run("done", output_root=str(tmp_path), flush_interval=0.02) as run:
        with pytest.raises(RunInUseError):
            start_run("done", output_root=str(tmp_path), resume=True)
    assert holder_of(tmp_path / "done") is None
    with pytest.raises(RunExistsError, match="--resume"):
        start_run("done", output_root=str(tmp_path))
    start_run("done", output_root=str(tmp_path), resume=True).close()


# -- forks and exec'd children -----------------------------------------------------------

FORKER = """
import os, sys, time
from codex_ml.tracking import start_run
run = start_run("forked", output_root=sys.argv[1], flush_interval=0.02)
child = os.fork()
if child == 0:
    run.log_metrics({"child": 1.0}, step=100)
    run.close()  # a forked child's close must not release the parent's lock
    os.write(1, f"child {os.getpid()}\\n".encode())  # one write: PYTHONUNBUFFERED would split a print
    time.sleep(120)  # outlives the parent
    os._exit(0)
sleeper = __import__("subprocess").Popen(["sleep", "120"], close_fds=False)
os.write(1, f"sleeper {sleeper.pid}\\n".encode())  # one write each: the two processes' lines never interleave
time.sleep(1.0)
os.write(1, b"holding\\n")
time.sleep(120)
"""


def test_forked_children_neither_release_nor_keep_the_lock(tmp_path: Path) -> None:
    """A forked child that closes its copy of the run leaves the parent's lock held; once the
    parent is SIGKILLed the run is free even though the child and an exec'd subprocess live on."""
    parent = _spawn(tmp_path, FORKER)
    pids: dict[str, int] = {}
    try:
        # One loop for all three lines: under load the child may print after the parent's "holding".
        deadline, holding = time.monotonic() + 60, False
        while (len(pids) < 2 or not holding) and time.monotonic() < deadline:
            words = parent.stdout.readline().split()
            if len(words) == 2:
                pids[words[0]] = int(words[1])
            holding = holding or words == ["holding"]
        assert len(pids) == 2 and holding, (pids, holding)
        run_dir = tmp_path / "runs" / "forked"
        assert holder_of(run_dir)["pid"] == parent.pid  # the child's close() did not release it
        lock = (run_dir / LOCK_FILE).resolve()
        for pid in pids.values():  # neither the forked child nor the exec'd program holds the file
            fds = Path(f"/proc/{pid}/fd")
            assert all(os.path.realpath(fds / fd) != str(lock) for fd in os.listdir(fds)), pid
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)  # not communicate(): the children still hold its stdout
        assert holder_of(run_dir) is None
        start_run("forked", output_root=str(tmp_path / "runs"), resume=True, flush_interval=0.02).close()
        assert 100 in _steps(run_dir)
    finally:
        parent.kill()
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        parent.communicate(timeout=30)


# -- the CLI ------------------------------------------------------------------------------

def _train_model(*args: str, cwd: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "codex_ml.cli", "train-model", "--no-progress", *args]
    return subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _train_steps(run_dir: Path) -> list[int]:
    lines = [json.loads(line) for line in (run_dir / "metrics.ndjson").read_text().splitlines()]
    return [line["step"] for line in lines if "train/loss" in line["metrics"]]


def test_two_train_model_resumes_at_once_one_trains_the_other_exits_2(tmp_path: Path) -> None:
    """Two `train-model --resume runs/X` started together: one trains, the other (whose resume
    meets a run still training) exits 2 with one `error:` line naming the first, and no step is
    logged twice."""
    first = _train_model("--config", TINY, "--output-root", str(tmp_path), "--run-name", "cli",
                         "training.max_steps=100000", "training.stop_after_steps=5", *FAST, cwd=tmp_path)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    run_dir = tmp_path / "cli"
    # max_steps is out of reach: the winner is still training when the loser tries, whatever the timing.
    jobs = [_train_model("--resume", str(run_dir), "training.stop_after_steps=null", cwd=tmp_path) for _ in range(2)]
    try:
        deadline = time.monotonic() + 300
        while all(job.poll() is None for job in jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        loser = next(job for job in jobs if job.poll() is not None)
        winner = next(job for job in jobs if job is not loser)
        _, err = loser.communicate(timeout=30)
        assert loser.returncode == 2, err
        assert "Traceback" not in err and err.count("error:") == 1, err
        assert "in use" in err and f"pid {winner.pid}" in err, err
        while _train_steps(run_dir)[-1] < 7 and winner.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # let the winner log a few steps
        assert winner.poll() is None, winner.communicate()[1][-3000:]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.send_signal(signal.SIGTERM)
            job.communicate(timeout=60)
    train_steps = _train_steps(run_dir)
    assert train_steps == sorted(set(train_steps)) and train_steps[:6] == [1, 2, 3, 4, 5, 6], train_steps
    assert len(_load(run_dir / "run.json")["sessions"]) == 2  # the first and the winner


def test_demo_does_not_move_aside_a_run_that_is_still_being_written(tmp_path: Path) -> None:
    """`codex-ml demo` moves an earlier `runs/demo` aside; one that another process is still
    writing is refused instead (RunInUseError naming it), and stays where it is."""
    from codex_ml.cli.demo_command import archive_existing_run
    from codex_ml.tracking.config import TrackingConfig

    holder = _spawn(tmp_path, HOLDER.replace('"live"', '"demo"'))
    try:
        _wait_for_line(holder, "holding")
        with pytest.raises(RunInUseError, match=f"pid {holder.pid}"):
            archive_existing_run(TrackingConfig(output_root=str(tmp_path / "runs")), "demo")
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["demo"]
    finally:
        holder.kill()
        holder.communicate(timeout=30)
    assert archive_existing_run(TrackingConfig(output_root=str(tmp_path / "runs")), "demo") is not None
