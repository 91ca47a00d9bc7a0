"""Tracking benchmark: what one log call costs, and how long it takes to persist everything.

Run it (``make bench`` runs the first line)::

    .venv/bin/python benchmarks/bench_tracking.py
    .venv/bin/python benchmarks/bench_tracking.py --quick --out results.json

Every system logs the same 10 scalar metrics per step, in this one process, one system after another:

- codex_ml ``run.log_metrics`` with all sinks (TensorBoard + MLflow file store + W&B offline), and with none
  (the NDJSON log only);
- ``wandb.log`` (offline), ``mlflow.log_metrics`` (synchronous, and ``synchronous=False``; file store),
  10 x ``SummaryWriter.add_scalar`` (torch), and a bare ``orjson.dumps`` line written to an open file.

Each system first runs a short warm-up session that is thrown away (imports, background services, first-call
costs), then a measured session: setup (untimed in Part 1), ``--steps`` calls each timed alone with
``time.perf_counter_ns``, then the call that persists everything (close / finish / flush), timed. Part 1 prints
per-call percentiles, Part 2 the time to persist, and a check that every sink holds every point.

Stdout is Markdown, ready to paste into docs/benchmarks.md; progress goes to stderr. Files go to a temporary
directory that is removed at the end (``--keep`` keeps it). Nothing leaves the machine: W&B runs offline and
MLflow writes a local file store. A target that is missed prints MISS; the exit status stays 0.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

KEYS = (
    "train/loss", "train/accuracy", "train/lr", "train/grad_norm", "train/tokens_per_s",
    "train/step_time", "val/loss", "val/accuracy", "system/gpu_util", "system/mem_gb",
)  # fmt: skip
CHECK_KEY = KEYS[0]
DEFAULT_STEPS, QUICK_STEPS = 5_000, 1_000
DEFAULT_WARMUP, QUICK_WARMUP = 200, 100
#: codex_ml targets (issue): per call with all sinks on, and close() for all points.
TARGET_MEDIAN_US, TARGET_P99_US, TARGET_CLOSE_S = 10.0, 50.0, 10.0
REFERENCE = "codex_ml (all sinks)"
PACKAGES = ("mlflow", "wandb", "tensorboard", "torch", "orjson", "numpy", "protobuf")

LogFn = Callable[..., Any]  # called as log(metrics, step=step)


# -- the systems under test -----------------------------------------------------------
class System:
    """One way of logging: ``start`` returns the function timed per call; ``finish`` persists."""

    name = "system"

    def start(self, workdir: Path) -> LogFn:
        """Open a run/file under ``workdir`` (untimed) and return ``log(metrics, step=...)``."""
        raise NotImplementedError

    def finish(self) -> None:
        """Close, flush or finish: everything logged is on disk when this returns."""

    def verify(self) -> dict[str, int]:
        """After finish: how many points of ``CHECK_KEY`` each store holds (name -> count)."""
        return {}


class CodexML(System):
    """codex_ml ``Run.log_metrics``, with all built-in sinks or with the NDJSON log only."""

    def __init__(self, sinks: bool) -> None:
        self.sinks = sinks
        self.name = REFERENCE if sinks else "codex_ml (NDJSON only)"
        self.run: Any = None

    def start(self, workdir: Path) -> LogFn:
        from codex_ml.tracking import start_run

        on = self.sinks
        self.run = start_run(
            "bench", output_root=str(workdir), enable_tensorboard=on, enable_mlflow=on, enable_wandb=on
        )
        wait_for_backends(self.run)
        return self.run.log_metrics

    def finish(self) -> None:
        report = self.run.close()
        if not report.complete:
            progress(f"  close report incomplete: {report.sinks}")

    def verify(self) -> dict[str, int]:
        paths = self.run.paths
        counts = {"NDJSON lines (metrics.ndjson)": count_lines(paths.metrics)}
        if not self.sinks:
            return counts
        from codex_ml.backends.names import mlflow_name

        mlflow_run = read_json(paths.run_file)["backends"]["mlflow"]
        key = mlflow_name(CHECK_KEY)
        counts["MLflow get_metric_history"] = count_mlflow(mlflow_run["tracking_uri"], mlflow_run["run_id"], key)
        counts["TensorBoard EventAccumulator"] = count_tensorboard(paths.tensorboard)
        counts["W&B history rows (.wandb file)"] = count_wandb(paths.root)
        return counts


class WandbOffline(System):
    """``run.log(metrics, step=i)`` on an offline W&B run, settings as in backends/wandb.py."""

    name = "wandb.log (offline)"

    def start(self, workdir: Path) -> LogFn:
        import wandb

        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True, save_code=False)
        self.dir = workdir
        self.run = wandb.init(project="bench", dir=str(workdir), mode="offline", reinit="create_new", settings=settings)
        return self.run.log

    def finish(self) -> None:
        self.run.finish()

    def verify(self) -> dict[str, int]:
        return {"W&B history rows (.wandb file)": count_wandb(self.dir)}


class MlflowFluent(System):
    """``mlflow.log_metrics`` on a file store, synchronous or with ``synchronous=False``."""

    def __init__(self, synchronous: bool) -> None:
        self.synchronous = synchronous
        self.name = "mlflow.log_metrics (sync)" if synchronous else "mlflow.log_metrics (synchronous=False)"

    def start(self, workdir: Path) -> LogFn:
        import mlflow

        if mlflow.active_run():  # left over from a failed session
            mlflow.end_run("KILLED")
        self.uri = (workdir / "mlruns").resolve().as_uri()
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment("bench")
        self.run_id = mlflow.start_run().info.run_id
        return functools.partial(mlflow.log_metrics, synchronous=self.synchronous)

    def finish(self) -> None:
        import mlflow

        if not self.synchronous:
            mlflow.flush_async_logging()
        mlflow.end_run()

    def verify(self) -> dict[str, int]:
        return {"MLflow get_metric_history": count_mlflow(self.uri, self.run_id, CHECK_KEY)}


class TorchSummaryWriter(System):
    """``torch.utils.tensorboard.SummaryWriter``: one call = 10 ``add_scalar`` calls."""

    name = "SummaryWriter.add_scalar x10"

    def start(self, workdir: Path) -> LogFn:
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = workdir / "tensorboard"
        self.writer = SummaryWriter(str(self.logdir))
        add_scalar = self.writer.add_scalar

        def log(metrics: dict[str, float], step: int) -> None:
            for key, value in metrics.items():
                add_scalar(key, value, step)

        return log

    def finish(self) -> None:
        self.writer.close()

    def verify(self) -> dict[str, int]:
        return {"TensorBoard EventAccumulator": count_tensorboard(self.logdir)}


class OrjsonLines(System):
    """The floor: ``orjson.dumps({step, time, metrics})`` + ``write`` to an open file."""

    name = "orjson.dumps + write"

    def start(self, workdir: Path) -> LogFn:
        import orjson

        self.path = workdir / "metrics.ndjson"
        self.file = open(self.path, "wb")  # noqa: SIM115 - closed in finish()
        dumps, write, now, newline = orjson.dumps, self.file.write, time.time, orjson.OPT_APPEND_NEWLINE

        def log(metrics: dict[str, float], step: int) -> None:
            write(dumps({"step": step, "time": now(), "metrics": metrics}, option=newline))

        return log

    def finish(self) -> None:
        self.file.close()

    def verify(self) -> dict[str, int]:
        return {"lines": count_lines(self.path)}


def all_systems() -> list[Callable[[], System]]:
    """Factories in run order; each session gets a fresh instance."""
    return [
        lambda: CodexML(sinks=True),
        lambda: CodexML(sinks=False),
        WandbOffline,
        lambda: MlflowFluent(synchronous=False),
        lambda: MlflowFluent(synchronous=True),
        TorchSummaryWriter,
        OrjsonLines,
    ]


# -- reading back what each store holds --------------------------------------------------
def wait_for_backends(run: Any, timeout: float = 120.0) -> None:
    """Block until the MLflow/W&B sinks have started (they record their ids in run.json)."""
    wanted = {"mlflow", "wandb"} & set(run.sink_names)
    deadline = time.monotonic() + timeout
    while not wanted <= read_json(run.paths.run_file).get("backends", {}).keys():
        if time.monotonic() > deadline:
            raise TimeoutError(f"sinks {sorted(wanted)} did not start within {timeout:.0f} s")
        time.sleep(0.05)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def count_lines(path: Path) -> int:
    """Number of newline-terminated lines in a file."""
    with open(path, "rb") as handle:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))


def count_mlflow(tracking_uri: str, run_id: str, key: str) -> int:
    """Points of ``key`` in an MLflow run."""
    from mlflow.tracking import MlflowClient

    return len(MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key))


def count_tensorboard(logdir: Path) -> int:
    """Scalars of ``CHECK_KEY`` in a TensorBoard log dir (no sampling: size_guidance scalars=0)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(logdir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return len(accumulator.Scalars(CHECK_KEY)) if CHECK_KEY in accumulator.Tags()["scalars"] else 0


def count_wandb(run_dir: Path) -> int:
    """History rows holding ``CHECK_KEY`` in the newest .wandb file under ``run_dir/wandb/``."""
    from codex_ml.backends.wandb import find_run_files, read_history

    files = find_run_files(run_dir)
    return sum(1 for row in read_history(files[-1]) if CHECK_KEY in row) if files else 0


# -- measuring ------------------------------------------------------------------------------
@dataclass
class Result:
    """One measured session of one system (times in seconds, per-call times in ns)."""

    name: str
    steps: int
    setup_s: float = 0.0
    log_s: float = 0.0
    finish_s: float = 0.0
    total_s: float = 0.0
    stats_us: dict[str, float] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    durations_ns: list[int] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every store holds every step."""
        return self.error is None and bool(self.stored) and all(n == self.steps for n in self.stored.values())


def make_payloads(steps: int, seed: int) -> list[dict[str, float]]:
    """One dict of 10 floats per step, built before timing starts."""
    rng = random.Random(seed)
    return [{key: rng.random() for key in KEYS} for _ in range(steps)]


def time_calls(log: LogFn, payloads: list[dict[str, float]], gap_s: float) -> list[int]:
    """Call ``log`` once per payload, timing each call alone; ``gap_s`` sleeps between calls."""
    clock = time.perf_counter_ns
    durations = [0] * len(payloads)
    for step, metrics in enumerate(payloads):
        began = clock()
        log(metrics, step=step)
        durations[step] = clock() - began
        if gap_s:
            time.sleep(gap_s)
    return durations


def run_session(system: System, payloads: list[dict[str, float]], workdir: Path, gap_s: float) -> Result:
    """Set up, time every call, time the finish, then count what was stored."""
    result = Result(system.name, len(payloads))
    workdir.mkdir(parents=True)
    gc.collect()
    began = time.perf_counter()
    log = system.start(workdir)
    first_log = time.perf_counter()
    result.durations_ns = time_calls(log, payloads, gap_s)
    last_log = time.perf_counter()
    system.finish()
    done = time.perf_counter()
    result.setup_s, result.log_s = first_log - began, last_log - first_log
    result.finish_s, result.total_s = done - last_log, done - first_log
    result.stats_us = summarize(result.durations_ns)
    result.stored = system.verify()
    return result


def measure(factory: Callable[[], System], args: argparse.Namespace, root: Path) -> Result:
    """Warm up one system with a throw-away session, then measure a fresh one."""
    system = factory()
    slug = "".join(c if c.isalnum() else "_" for c in system.name)
    try:
        progress(f"{system.name}: warm-up ({args.warmup} steps)")
        run_session(system, make_payloads(args.warmup, seed=1), root / f"{slug}-warmup", args.gap_us / 1e6)
        progress(f"{system.name}: measuring ({args.steps} steps)")
        result = run_session(factory(), make_payloads(args.steps, seed=0), root / slug, args.gap_us / 1e6)
    except Exception as exc:  # noqa: BLE001 - one broken system must not hide the others' results
        progress(f"{system.name}: FAILED: {type(exc).__name__}: {exc}")
        return Result(system.name, args.steps, error=f"{type(exc).__name__}: {exc}")
    progress(f"  median {result.stats_us['median']:.1f} us, log {result.log_s:.2f} s, finish {result.finish_s:.2f} s")
    return result


def summarize(durations_ns: list[int]) -> dict[str, float]:
    """median, p90, p99, max and mean in microseconds (nearest-rank percentiles)."""
    ordered = sorted(durations_ns)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))] / 1e3

    return {
        "median": statistics.median(ordered) / 1e3,
        "p90": rank(90),
        "p99": rank(99),
        "max": ordered[-1] / 1e3,
        "mean": statistics.fmean(ordered) / 1e3,
    }


def timer_overhead_ns(samples: int = 20_000) -> float:
    """Median cost of two back-to-back ``perf_counter_ns`` calls (included in every timing)."""
    clock = time.perf_counter_ns
    return statistics.median(-clock() + clock() for _ in range(samples))


# -- reporting -------------------------------------------------------------------------------
def machine_info(args: argparse.Namespace) -> dict[str, Any]:
    """Where and with what the numbers were taken."""
    import codex_ml

    return {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "timer_overhead_ns": timer_overhead_ns(),
        "steps": args.steps,
        "warmup": args.warmup,
        "gap_us": args.gap_us,
        "versions": {"codex_ml": codex_ml.__version__, **{p: package_version(p) for p in PACKAGES}},
    }


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_version(name: str) -> str:
    """Installed version of a distribution, or 'not installed'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def print_machine(info: dict[str, Any]) -> None:
    """The machine and package versions, as a Markdown list."""
    load = info["load_average_start"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    print(f"- date: {info['date_utc']} UTC; {info['cpus']} CPUs ({info['cpu_model']}); {info['platform']}")
    print(f"- {info['python']}; {versions}")
    if load:
        print(f"- load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)")
    print(
        f"- {info['steps']:,} steps x {len(KEYS)} keys per system after {info['warmup']} warm-up steps; "
        f"gap between calls {info['gap_us']} us; timer overhead {info['timer_overhead_ns']:.0f} ns per call (included)"
    )


def table(header: list[str], rows: list[list[str]], align: str) -> None:
    """Print a Markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()


def ratio(value: float, reference: float | None) -> str:
    """``value / reference`` as e.g. ``120x``, ``1.3x`` or ``0.45x``."""
    if not reference:
        return "n/a"
    r = value / reference
    return f"{r:,.0f}x" if r >= 10 else f"{r:.1f}x" if r >= 1 else f"{r:.2g}x"


def per_call_verdict(stats: dict[str, float]) -> str:
    """PASS, or MISS naming the percentile(s) over target."""
    missed = [f"{k} > {t:g} us" for k, t in (("median", TARGET_MEDIAN_US), ("p99", TARGET_P99_US)) if stats[k] > t]
    return "MISS (" + ", ".join(missed) + ")" if missed else "PASS"


def print_part1(results: list[Result]) -> None:
    """Per-call cost table."""
    reference = next((r.stats_us["median"] for r in results if r.name == REFERENCE and not r.error), None)
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "error", r.error, "", "", "", "", ""])
            continue
        s = r.stats_us
        target = per_call_verdict(s) if r.name.startswith("codex_ml") else ""
        cells = [f"{s[k]:,.1f}" for k in ("median", "p90", "p99", "max")]
        rows.append([r.name, f"{r.steps:,}", *cells, ratio(s["median"], reference), target])
    print(f"### Part 1: cost of one call logging {len(KEYS)} scalars (microseconds)\n")
    target = f"target (median <= {TARGET_MEDIAN_US:g}, p99 <= {TARGET_P99_US:g})"
    header = ["system", "calls", "median", "p90", "p99", "max", "median vs codex_ml", target]
    table(header, rows, "lrrrrrrl")


def print_part2(results: list[Result]) -> None:
    """Time-to-persist table."""
    ref = next((r for r in results if r.name == REFERENCE and not r.error), None)
    rows = []
    for r in results:
        if r.error:
            rows.append([r.name, "error", r.error, "", "", "", "", "", ""])
            continue
        stored = "all" if r.complete else "MISSING: " + ", ".join(f"{k} {v:,}" for k, v in r.stored.items())
        target = ("PASS" if r.finish_s <= TARGET_CLOSE_S else "MISS") if r.name == REFERENCE else ""
        rows.append([
            r.name, f"{r.steps * len(KEYS):,}", f"{r.setup_s:.3f}", f"{r.log_s:.3f}", f"{r.finish_s:.3f}",
            f"{r.total_s:.3f}", ratio(r.total_s, ref.total_s if ref else None), stored, target,
        ])  # fmt: skip
    print("### Part 2: time to persist every point (seconds)\n")
    header = ["system", "points", "setup", "log phase", "close/flush", "total (first log to persisted)",
              "total vs codex_ml", "stored", f"target (close <= {TARGET_CLOSE_S:g} s)"]  # fmt: skip
    table(header, rows, "lrrrrrrll")


def print_verification(results: list[Result]) -> None:
    """Per-store counts of ``CHECK_KEY`` for every system."""
    rows = [
        [r.name, store, f"{r.steps:,}", f"{count:,}", "ok" if count == r.steps else "MISSING"]
        for r in results
        if not r.error
        for store, count in r.stored.items()
    ]
    print(f"### Points of `{CHECK_KEY}` read back after close\n")
    table(["system", "store", "expected", "found", ""], rows, "llrrl")


def write_json(path: Path, info: dict[str, Any], results: list[Result]) -> None:
    """Raw results, per-call durations included."""
    data = {"machine": info, "results": [asdict(r) | {"complete": r.complete} for r in results]}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# -- command line ------------------------------------------------------------------------------
def progress(message: str) -> None:
    """A progress line on stderr (stdout stays clean Markdown)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Options; ``--quick`` lowers the defaults of --steps and --warmup."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See docs/benchmarks.md.")
    quick = f"{QUICK_STEPS:,} steps and {QUICK_WARMUP} warm-up steps (under a minute)"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--steps", type=int, help=f"measured calls per system (default {DEFAULT_STEPS:,})")
    parser.add_argument("--warmup", type=int, help=f"warm-up calls per system, own session (default {DEFAULT_WARMUP})")
    gap = "sleep this long between calls, untimed, so background threads run as during training (default 0)"
    parser.add_argument("--gap-us", type=float, default=0.0, help=gap)
    parser.add_argument("--out", type=Path, help="write raw results (per-call durations included) to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory with every run")
    args = parser.parse_args(argv)
    args.steps = args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS)
    args.warmup = args.warmup if args.warmup is not None else (QUICK_WARMUP if args.quick else DEFAULT_WARMUP)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    return args


def prepare_environment() -> None:
    """Offline backends, local stores only, and codex_ml importable from a source checkout."""
    os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "MLFLOW_ALLOW_FILE_STORE": "true"})
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # never log to a server the user happens to point at
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Creating a new experiment" per session
    if importlib.util.find_spec("codex_ml") is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv: list[str] | None = None) -> int:
    """Run every system, print the tables, write --out."""
    args = parse_args(argv)
    prepare_environment()
    info = machine_info(args)
    root = Path(tempfile.mkdtemp(prefix="codex-bench-"))
    try:
        results = [measure(factory, args, root) for factory in all_systems()]
    finally:
        if args.keep:
            progress(f"runs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    info["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print_machine(info)
    print()
    print_part1(results)
    print_part2(results)
    print_verification(results)
    if args.out:
        write_json(args.out, info, results)
        progress(f"raw results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
