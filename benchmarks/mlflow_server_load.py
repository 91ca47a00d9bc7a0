"""The load of benchmarks/bench_mlflow_server.py: writer and reader processes against one MLflow server.

A writer process logs into one MLflow run per case, either through codex_ml (``start_run`` with only the MLflow
sink on, plus the NDJSON log that is always on) or through MLflow's own ``MlflowClient.log_batch``. A case is

- ``burst``: log as fast as possible (the server's throughput). codex_ml's calls only queue; its MLflow sink
  sends ``log_batch`` calls of up to 1,000 metrics from its own thread, and the case ends when the sink has
  delivered every point. The MLflow client sends batches of ``Case.batch`` metrics, synchronously.
- ``paced``: a fixed step rate of 10 scalars per step, as a training loop logs; every log call is timed (what
  the training thread pays). The MLflow client sends one ``log_batch`` of 10 per step (what ``mlflow.log_metrics``
  does).

The reader process polls ``get_metric_history`` of the probe key of a few runs during a paced case and records,
for every new point, how long after its log call (the point's own timestamp) it became visible. Writers and
the reader live for a whole pool (one pool per number of runs), so imports are paid once; a barrier starts
every case's logging at the same moment in every process.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEYS = tuple(f"train/k{i}" for i in range(10))
#: The key the reader polls (every step has it).
PROBE = KEYS[0]
EXPERIMENT = "bench_mlflow_server"
#: The reader's shortest gap between two polls of one run (it shares the server and the CPUs with the load).
MIN_POLL_GAP = 0.01
BARRIER_TIMEOUT = 600.0


@dataclass(frozen=True)
class Case:
    """One measurement: who logs, how, into how many runs at once."""

    kind: str  # "codex", "mlflow" or "ndjson" (codex_ml without sinks: paced only, the hot path's reference)
    mode: str  # "burst" or "paced"
    runs: int
    steps: int = 0  # burst: steps per run (the MLflow client stops early at ``seconds``)
    batch: int = 1000  # burst, MLflow client: metrics per log_batch call (a multiple of len(KEYS))
    seconds: float = 0.0  # burst, MLflow client: time box; paced: duration
    rate: float = 0.0  # paced: steps/s per run

    @property
    def client(self) -> str:
        """The client column of the tables."""
        if self.kind in ("codex", "ndjson"):
            return "codex_ml" if self.kind == "codex" else "codex_ml NDJSON only"
        return f"MlflowClient b={self.batch}" if self.mode == "burst" else "MlflowClient b=10/step"


def payload(step: int) -> dict[str, float]:
    """The 10 scalars of one step (distinct values, so a mixed-up point would show)."""
    return {key: step + index / 10 for index, key in enumerate(KEYS)}


class CodexWriter:
    """One codex_ml run with only the MLflow sink on (the NDJSON log is always on)."""

    def __init__(self, uri: str, root: Path, name: str) -> None:
        from codex_ml.tracking import start_run

        self.run = start_run(name, output_root=str(root), enable_mlflow=True, mlflow_tracking_uri=uri,
                             mlflow_experiment=EXPERIMENT, close_timeout=1800.0)  # fmt: skip
        self.run_id = _wait_for_mlflow_run(self.run)

    def log(self, values: dict[str, float], step: int) -> None:
        """The hot path: queue the step."""
        self.run.log_metrics(values, step=step)

    def burst(self, case: Case) -> dict[str, Any]:
        """Queue every step at once, then wait until the sink has delivered them all."""
        steps = [payload(step) for step in range(case.steps)]
        began = time.time()
        for step, values in enumerate(steps):
            self.run.log_metrics(values, step=step)
        logged = time.time()
        self.delivered()
        return {"steps": case.steps, "began": began, "logged": logged, "delivered": time.time()}

    def delivered(self, timeout: float = 1800.0) -> None:
        """Block until the MLflow sink has taken every record written so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.run.flush()
            health = self.run.health()
            sink = health["sinks"]["mlflow"]
            if sink["delivered"] + sink["dropped"] + sink["undelivered"] >= health["records_written"]:
                return
            time.sleep(0.02)
        raise TimeoutError(f"the MLflow sink did not deliver within {timeout:.0f} s")

    def finish(self) -> dict[str, Any]:
        """Close the run; what its close report says."""
        failures = self.run.health()["sinks"]["mlflow"]["failures"]
        report = self.run.close()
        mlflow = report.sinks.get("mlflow", {})
        return {"complete": report.complete, "dropped": mlflow.get("dropped", 0),
                "undelivered": mlflow.get("undelivered", 0), "errors": failures}  # fmt: skip


class ClientWriter:
    """One MLflow run written with ``MlflowClient.log_batch`` from the calling thread."""

    def __init__(self, client: Any, experiment_id: str, name: str) -> None:
        from mlflow.entities import Metric

        self.client, self.metric, self.errors = client, Metric, 0
        self.run_id = client.create_run(experiment_id, run_name=name).info.run_id

    def log(self, values: dict[str, float], step: int) -> None:
        """One synchronous ``log_batch`` of this step's scalars (what ``mlflow.log_metrics`` sends)."""
        stamp = int(time.time() * 1000)
        self._send([self.metric(k, v, stamp, step) for k, v in values.items()])

    def _send(self, metrics: list[Any], tries: int = 10) -> None:
        """``log_batch``; a refused call (an overloaded server answers 400 when its database pool is
        exhausted, which MLflow's client does not retry) is counted and sent again, as a careful script would."""
        for attempt in range(tries):
            try:
                self.client.log_batch(self.run_id, metrics=metrics)
                return
            except Exception:  # noqa: BLE001 - counted; the last one is raised
                self.errors += 1
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)

    def burst(self, case: Case) -> dict[str, Any]:
        """Batches of ``case.batch`` metrics (whole steps), back to back, until done or the time box ends."""
        per_call = case.batch // len(KEYS)
        began = time.time()
        deadline, step = began + case.seconds, 0
        while step < case.steps and time.time() < deadline:
            stamp, last = int(time.time() * 1000), min(step + per_call, case.steps)
            metrics = [self.metric(k, v, stamp, s) for s in range(step, last) for k, v in payload(s).items()]
            self._send(metrics)
            step = last
        ended = time.time()
        return {"steps": step, "began": began, "logged": ended, "delivered": ended}

    def delivered(self) -> None:
        """Synchronous calls: everything is on the server when the last call returned."""

    def finish(self) -> dict[str, Any]:
        """End the MLflow run."""
        self.client.set_terminated(self.run_id)
        return {"complete": True, "dropped": 0, "undelivered": 0, "errors": self.errors}


def paced(writer: Any, case: Case) -> dict[str, Any]:
    """``case.rate`` steps/s for ``case.seconds``; every log call timed, and the process's CPU time (the
    calling thread and codex_ml's writer and sink threads). A call that overruns its period delays the next
    step (as it would delay training), so the achieved rate is reported too."""
    steps, period = int(case.seconds * case.rate), 1.0 / case.rate
    calls, first = [], 0.0
    began, cpu = time.time(), time.process_time()
    start = time.perf_counter()
    for step in range(steps):
        wait = start + step * period - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        values = payload(step)
        t0 = time.perf_counter_ns()
        writer.log(values, step)
        calls.append(time.perf_counter_ns() - t0)
        first = first or t0
    last = t0
    logged, cpu = time.time(), time.process_time() - cpu
    writer.delivered()
    return {"steps": steps, "began": began, "logged": logged, "delivered": time.time(), "calls_ns": calls,
            "cpu_s": cpu, "achieved": (steps - 1) / max(1e-9, (last - first) / 1e9)}


class NdjsonWriter(CodexWriter):
    """codex_ml with no sink at all (the NDJSON log only): the reference for the hot path's cost."""

    def __init__(self, root: Path, name: str) -> None:
        from codex_ml.tracking import start_run

        self.run, self.run_id = start_run(name, output_root=str(root)), None

    def delivered(self, timeout: float = 60.0) -> None:
        """Everything is in metrics.ndjson once flushed."""
        self.run.flush(timeout)

    def finish(self) -> dict[str, Any]:
        """Close the run."""
        return {"complete": self.run.close().complete, "dropped": 0, "undelivered": 0, "errors": 0}


def writer_main(index: int, uri: str, root: str, inbox: Any, outbox: Any, barrier: Any) -> None:
    """A writer process: for each case from ``inbox``, open a run, report ready, wait for the barrier, log."""
    import sys

    from mlflow.tracking import MlflowClient

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - MLflow prints a "View run" line per run it ends
    client = MlflowClient(tracking_uri=uri)
    experiment_id = experiment_for(client)
    number = 0
    while (case := inbox.get()) is not None:
        number += 1
        try:
            name = f"{case.kind}-{case.mode}-r{case.runs}-n{number}-w{index}-{os.getpid()}"
            writer = (CodexWriter(uri, Path(root), name) if case.kind == "codex"
                      else NdjsonWriter(Path(root), name) if case.kind == "ndjson"
                      else ClientWriter(client, experiment_id, name))  # fmt: skip
            outbox.put(("ready", index, writer.run_id))
            barrier.wait(BARRIER_TIMEOUT)
            result = writer.burst(case) if case.mode == "burst" else paced(writer, case)
            result.update(writer.finish(), run_id=writer.run_id, index=index)
            outbox.put(("done", index, result))
        except Exception:  # noqa: BLE001 - reported to the parent, which stops the benchmark
            outbox.put(("error", index, traceback.format_exc()))
            return


def experiment_for(client: Any) -> str:
    """The benchmark's experiment id (created once; a race between writers is resolved by a re-read)."""
    found = client.get_experiment_by_name(EXPERIMENT)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(EXPERIMENT)
    except Exception:  # noqa: BLE001 - another writer created it first
        return client.get_experiment_by_name(EXPERIMENT).experiment_id


def reader_main(uri: str, inbox: Any, outbox: Any, barrier: Any, stop: Any) -> None:
    """The reader process: for each list of run ids from ``inbox``, poll their probe histories until ``stop``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    while (run_ids := inbox.get()) is not None:
        try:
            barrier.wait(BARRIER_TIMEOUT)
            outbox.put(("read", -1, poll(client, run_ids, stop)))
        except Exception:  # noqa: BLE001 - reported to the parent
            outbox.put(("error", -1, traceback.format_exc()))
            return


def poll(client: Any, run_ids: list[str], stop: Any) -> dict[str, Any]:
    """Poll until ``stop`` is set, then once more. A new point became visible between the previous poll of
    its run (sent at ``prev``) and this poll's answer (``got``): the delay is the middle of that window
    minus its log time; ``upper`` is the bound (answer minus log time)."""
    seen: dict[str, set[int]] = {run_id: set() for run_id in run_ids}
    previous = {run_id: time.time() for run_id in run_ids}
    delays, upper, gaps, last_round, errors = [], [], [], False, 0
    while True:
        last_round = stop.is_set()
        cycle = time.time()
        for run_id in run_ids:
            sent = time.time()
            try:
                history = client.get_metric_history(run_id, PROBE)
            except Exception:  # noqa: BLE001 - an overloaded server refuses some reads: counted, polled again
                errors += 1
                time.sleep(0.2)
                continue
            got = time.time()
            for metric in history:
                if metric.step not in seen[run_id]:
                    seen[run_id].add(metric.step)
                    logged = metric.timestamp / 1000
                    delays.append((max(previous[run_id], logged) + got) / 2 - logged)
                    upper.append(got - logged)
            gaps.append(sent - previous[run_id])
            previous[run_id] = sent
        if last_round:
            return {"delays": delays, "upper": upper, "poll_gap": sum(gaps) / max(1, len(gaps)),
                    "seen": sum(len(s) for s in seen.values()), "errors": errors}  # fmt: skip
        time.sleep(max(0.0, MIN_POLL_GAP - (time.time() - cycle)))


def _wait_for_mlflow_run(run: Any, timeout: float = 120.0) -> str:
    """The MLflow run id, once the sink has started (it records it in run.json)."""
    import json

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saved = json.loads(run.paths.run_file.read_text(encoding="utf-8")).get("backends", {}).get("mlflow", {})
        if saved.get("run_id"):
            return saved["run_id"]
        if run.health()["sinks"]["mlflow"]["disabled"]:
            raise RuntimeError(f"the MLflow sink could not start: {run.reporter.errors[-1:]}")
        time.sleep(0.05)
    raise TimeoutError(f"the MLflow sink did not start within {timeout:.0f} s")
