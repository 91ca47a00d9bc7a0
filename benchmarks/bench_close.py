"""Start-up and close benchmark: how long a run takes to start, and to close after a burst of points.

Run it (what docs/benchmarks.md, "Start-up and close", shows)::

    .venv/bin/python benchmarks/bench_close.py                     # start-up, then 50k and 200k points
    .venv/bin/python benchmarks/bench_close.py --points 50000 --sinks mlflow --no-floor
    .venv/bin/python benchmarks/bench_close.py --startup-only

Part 1, start-up, every sink on (TensorBoard, MLflow local file store, W&B offline, Prometheus exporter on a free
port, system metrics every 1 s): seconds from calling ``start_run`` to its return, to the first ``log_metrics``
returning, and to each sink's first delivered point (its backend started and took the point). A second start in
the same process shows the warm figure (imports done).

Part 2, close: for each point count (points = steps x 10 keys), each sink alone and then every sink together,
a run starts, waits until MLflow and W&B have started (so close measures delivery, not connecting), logs every
step as fast as it can, then ``close()`` is timed. With every sink on, a watcher thread notes when each sink's
thread ends, which is that sink's close time. Every row checks that each sink confirmed every point.

Part 3, the floor: the backend alone, the same points written the way codex_ml writes them, in this process:
``MlflowClient.log_batch`` of 1,000 metrics into a file store, tensorboard's ``EventFileWriter`` with one event
per step, ``wandb.log`` once per step offline then ``finish()``.

Stdout is Markdown; progress goes to stderr. Everything is written to a temporary directory removed at the end.
Nothing leaves the machine. The machine's load (``os.getloadavg``) is printed before and after: on a shared
machine, compare figures taken at similar load.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

KEYS = tuple(f"train/k{i}" for i in range(10))
SINKS = ("tensorboard", "mlflow", "wandb", "prometheus")
TARGET_CLOSE_S = 10.0


def progress(message: str) -> None:
    """One line on stderr."""
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def sink_options(names: tuple[str, ...], system_metrics: bool) -> dict[str, Any]:
    """start_run keyword arguments switching on ``names`` (and the 1 s sampler when asked)."""
    options: dict[str, Any] = {
        "enable_tensorboard": "tensorboard" in names,
        "enable_mlflow": "mlflow" in names,
        "enable_wandb": "wandb" in names,
    }
    if "prometheus" in names:
        options["prometheus_port"] = free_port()
    if system_metrics:
        options.update(system_metrics="AUTO", system_metrics_interval=1.0)
    return options


def wait_started(run: Any, timeout: float = 120.0) -> None:
    """Block until every sink's thread has started its backend (left the "starting" phase)."""
    deadline = time.monotonic() + timeout
    while any(w.phase == "starting" for w in run._dispatcher.workers):  # noqa: SLF001 - a benchmark may look inside
        if time.monotonic() > deadline:
            raise TimeoutError("sinks did not start")
        time.sleep(0.01)


# -- Part 1: start-up ----------------------------------------------------------------------
def measure_startup(root: Path, label: str) -> dict[str, Any]:
    """Seconds from start_run to its return, to the first log_metrics returning, to each sink's first point."""
    from codex_ml.tracking import start_run

    began = time.perf_counter()
    run = start_run(label, output_root=str(root), **sink_options(SINKS, system_metrics=True))
    returned = time.perf_counter() - began
    run.log_metrics(dict.fromkeys(KEYS, 1.0), step=0)
    first_log = time.perf_counter() - began
    first_point: dict[str, float] = {}
    while len(first_point) < len(run.sink_names) and time.perf_counter() - began < 120:
        for name, stats in run.health()["sinks"].items():
            if stats["delivered"] and name not in first_point:
                first_point[name] = time.perf_counter() - began
        time.sleep(0.005)
    run.close()
    return {"label": label, "start_run": returned, "first_log": first_log, "first_point": first_point}


def print_startup(rows: list[dict[str, Any]]) -> None:
    """Part 1 as a Markdown table."""
    print("### Start-up, every sink on (seconds from calling start_run)\n")
    print("| start | start_run returned | first log_metrics returned | " + " | ".join(f"{s}: first point stored" for s in SINKS) + " |")
    print("|---|---:|---:|" + "---:|" * len(SINKS))
    for row in rows:
        cells = [f"{row['first_point'][s]:.3f}" if s in row["first_point"] else "-" for s in SINKS]
        print(f"| {row['label']} | {row['start_run']:.3f} | {row['first_log']:.3f} | " + " | ".join(cells) + " |")
    print()


# -- Part 2: close ------------------------------------------------------------------------
def watch_workers(run: Any, began: list[float], ended: dict[str, float], stop: threading.Event) -> None:
    """Note when each sink has closed (its thread ended, or its sink process reported), from close()'s start."""
    workers = list(run._dispatcher.workers)  # noqa: SLF001
    while not stop.is_set() and len(ended) < len(workers):
        for worker in workers:
            if worker.sink.name not in ended and worker.finished and began:
                ended[worker.sink.name] = time.perf_counter() - began[0]
        time.sleep(0.002)


def measure_close(root: Path, names: tuple[str, ...], steps: int, system_metrics: bool) -> dict[str, Any]:
    """Log ``steps`` x 10 keys as fast as possible into a run with ``names`` on, then time close()."""
    from codex_ml.tracking import start_run

    label = "+".join(names) if len(names) < len(SINKS) else "every sink" + (" + system metrics 1 s" if system_metrics else "")
    run = start_run(f"close-{'-'.join(names)}-{steps}", output_root=str(root), **sink_options(names, system_metrics))
    wait_started(run)
    payload = dict.fromkeys(KEYS, 0.5)
    logging_began = time.perf_counter()
    for step in range(steps):
        payload["train/k0"] = step * 1e-3  # not all constant, so no backend can fold the points
        run.log_metrics(payload, step=step)
    log_s = time.perf_counter() - logging_began
    began: list[float] = []
    ended: dict[str, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_workers, args=(run, began, ended, stop), daemon=True)
    watcher.start()
    began.append(time.perf_counter())
    report = run.close(timeout=300)
    close_s = time.perf_counter() - began[0]
    stop.set()
    watcher.join()
    for worker in run._dispatcher.workers:  # noqa: SLF001 - ended between the watcher's last look and close's return
        ended.setdefault(worker.sink.name, close_s)
    delivered = {name: stats["delivered"] for name, stats in report.sinks.items()}
    return {"label": label, "points": steps * len(KEYS), "steps": steps, "log_s": log_s, "close_s": close_s,
            "per_sink": ended, "complete": report.complete and all(n >= steps for n in delivered.values()),
            "delivered": delivered}  # fmt: skip


def print_close(rows: list[dict[str, Any]]) -> None:
    """Part 2 as a Markdown table."""
    print("### Close after logging as fast as possible (seconds)\n")
    print("| points | sinks | log phase | close() | " + " | ".join(f"{s} done" for s in SINKS) + " | all stored | close <= 10 s |")
    print("|---:|---|---:|---:|" + "---:|" * len(SINKS) + "---|---|")
    for row in rows:
        cells = [f"{row['per_sink'][s]:.2f}" if s in row["per_sink"] else "" for s in SINKS]
        verdict = "PASS" if row["close_s"] <= TARGET_CLOSE_S else "MISS"
        print(f"| {row['points']:,} | {row['label']} | {row['log_s']:.2f} | {row['close_s']:.2f} | "
              + " | ".join(cells) + f" | {'yes' if row['complete'] else 'NO ' + str(row['delivered'])} | {verdict} |")
    print()


# -- Part 3: the backends alone --------------------------------------------------------------
def floor_mlflow(root: Path, steps: int) -> float:
    """MlflowClient.log_batch of 1,000 metrics into a fresh file store, as the sink sends them."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=(root / "floor-mlruns").resolve().as_uri())
    run_id = client.create_run(client.create_experiment(f"floor-{steps}")).info.run_id
    now = int(time.time() * 1000)
    metrics = [Metric(key, 0.5, now, step) for step in range(steps) for key in KEYS]
    began = time.perf_counter()
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start : start + 1000])
    client.set_terminated(run_id)
    return time.perf_counter() - began


def floor_tensorboard(root: Path, steps: int) -> float:
    """tensorboard's EventFileWriter, one Event holding 10 scalars per step, then close."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    began = time.perf_counter()
    writer = EventFileWriter(str(root / f"floor-tb-{steps}"))
    now = time.time()
    for step in range(steps):
        values = [summary_pb2.Summary.Value(tag=k, simple_value=0.5) for k in KEYS]
        writer.add_event(event_pb2.Event(step=step, wall_time=now, summary=summary_pb2.Summary(value=values)))
    writer.close()
    return time.perf_counter() - began


def floor_wandb(root: Path, steps: int) -> float:
    """wandb.log once per step on an offline run, then finish()."""
    import wandb

    settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
    run = wandb.init(project="floor", dir=str(root), mode="offline", reinit="create_new", settings=settings)
    began = time.perf_counter()
    for step in range(steps):
        run.log({**dict.fromkeys(KEYS, 0.5), "step": step})
    run.finish()
    return time.perf_counter() - began


FLOORS = {"mlflow": floor_mlflow, "tensorboard": floor_tensorboard, "wandb": floor_wandb}


def print_floor(rows: list[tuple[int, str, float]]) -> None:
    """Part 3 as a Markdown table."""
    print("### The backend alone, same points (seconds)\n")
    print("| points | backend | seconds |")
    print("|---:|---|---:|")
    for points, name, seconds in rows:
        print(f"| {points:,} | {name} | {seconds:.2f} |")
    print()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md.")
    parser.add_argument("--points", type=int, nargs="+", default=[50_000, 200_000], help="points per run (steps x 10)")
    parser.add_argument("--sinks", default="each,all", help="comma list: each (every sink alone), all, or sink names")
    parser.add_argument("--no-floor", action="store_true", help="skip Part 3 (the backends alone)")
    parser.add_argument("--no-startup", action="store_true", help="skip Part 1")
    parser.add_argument("--startup-only", action="store_true", help="Part 1 only")
    return parser.parse_args(argv)


def selections(spec: str) -> list[tuple[str, ...]]:
    """The sink sets a --sinks value names."""
    out: list[tuple[str, ...]] = []
    for item in spec.split(","):
        if item == "each":
            out += [(name,) for name in SINKS]
        elif item == "all":
            out.append(SINKS)
        elif item in SINKS:
            out.append((item,))
        else:
            raise SystemExit(f"error: unknown sink {item!r}; choose from each, all, {', '.join(SINKS)}")
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for and print their tables."""
    args = parse_args(argv)
    os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_ALLOW_FILE_STORE": "true"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="codex-bench-close-"))
    try:
        if not args.no_startup:
            progress("start-up ...")
            startup = [measure_startup(root, "first (cold imports)"), measure_startup(root, "second (warm)")]
            print_startup(startup)
        if args.startup_only:
            return 0
        closes, floors = [], []
        for points in args.points:
            steps = max(1, points // len(KEYS))
            for names in selections(args.sinks):
                progress(f"close: {points:,} points, {'+'.join(names)} ...")
                closes.append(measure_close(root, names, steps, system_metrics=names == SINKS))
            if not args.no_floor:
                for name, floor in FLOORS.items():
                    progress(f"floor: {points:,} points, {name} alone ...")
                    floors.append((steps * len(KEYS), name, floor(root, steps)))
        print_close(closes)
        if floors:
            print_floor(floors)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"Load average (1, 5, 15 min): before {tuple(round(x, 2) for x in load_before)}, "
          f"after {tuple(round(x, 2) for x in os.getloadavg())}; {os.cpu_count()} CPUs.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
