"""Training health end to end: detection latency of injected faults, false positives, and the cost.

    .venv/bin/python benchmarks/bench_health_detection.py --quick            # 3-4 minutes
    .venv/bin/python benchmarks/bench_health_detection.py                    # about 11 minutes
    .venv/bin/python benchmarks/bench_health_detection.py --reuse /tmp/hc_runs --data ../shared/data/tinyshakespeare.txt

1. Latency: one ``train-model`` run of the base config per fault (``training.fault``: nan, spike
   x20, hang 15 s, slow_data 0.5 s, leak 10 MB with 1 s system metrics), default health rules.
   For each: the fault step, the first event at or after it (from the run's live
   ``events.ndjson``), and the latency in steps and seconds (event time minus the time of the
   fault step's metrics record; for ``hang``, minus the last step's record, against the
   issue's bound max(3 x median step interval, 10 s)). Events before the fault are counted too.
2. False positives: events of ``spike``, ``grad_explosion``, ``throughput_drop`` and
   ``data_stall`` over clean runs of seeds 1..N: existing runs (``--reuse DIR``: run directories
   whose params name one of the seeds and no fault) are backtested, else runs of ``--max-steps``
   steps are trained; then a few short pipeline runs (``deploy/deploy_codex_pipeline.py``),
   backtested with ``spike``/``grad_explosion`` widened to the stage-prefixed names.
3. Cost: median ``train/tokens_per_s`` (steps 50..end) of the same run with health on (the
   defaults) and ``health.enabled=false``, in alternating pairs (``--together``: each pair at
   the same time, so both see the same load); plus the in-process CPU cost per record that
   ``benchmarks/bench_health.py`` prints, and the share of a step it amounts to.

Every run it launches has ``OMP_NUM_THREADS=1`` (torch then uses one intra-op thread), so it
competes less with whatever else the machine runs; the tokens/s ratio is still only as steady
as the machine. Nothing here asserts: it prints tables (docs/benchmarks.md#training-health).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codex_ml.health import HealthConfig
from codex_ml.health.backtest import backtest_report
from codex_ml.health.events import HealthEvent, read_events
from codex_ml.rundir.reader import ReadReport, read_metrics

REPO = Path(__file__).resolve().parents[1]
BASE_CONFIG = REPO / "configs" / "training" / "base.yaml"
PIPELINE_CONFIG = REPO / "configs" / "pipeline" / "tiny.yaml"
#: The rules whose events on a clean run are false positives (the issue's target: none).
FP_RULES = ("spike", "grad_explosion", "throughput_drop", "data_stall")
#: One torch/OMP thread per launched run: the machine is shared, and a fixed thread count keeps runs comparable.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Fault:
    """One injected fault: its ``training.fault`` kind and argument, the rule that should catch it."""

    kind: str
    step: int
    arg: str
    rule: str
    tail: int  # steps trained after the fault (the run's max_steps is step + tail)
    flags: list[str] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        """The ``training.fault`` value."""
        return f"{self.kind}@{self.step}:{self.arg}" if self.arg else f"{self.kind}@{self.step}"


def faults(quick: bool, hang_s: float | None) -> list[Fault]:
    """The faults of docs/training.md's examples (quick: all at step 60, after spike's 50-value warm-up)."""
    at = {"nan": 300, "spike": 500, "hang": 400, "slow_data": 200, "leak": 100}
    if quick:
        at = dict.fromkeys(at, 60)
    # leak: 1 s samples so memory_leak's 20-sample window fills in seconds; `stop` ends the run
    # at the event so the leak stays bounded (tail caps it at 10 MB x tail if nothing fires)
    leak_flags = ["--system-metrics", "AUTO", "--system-metrics-interval", "1"]
    return [
        Fault("nan", at["nan"], "", "nonfinite", 5),
        Fault("spike", at["spike"], "x20", "spike", 5),
        Fault("hang", at["hang"], f"{hang_s or (12 if quick else 15):g}s", "stall", 5),
        Fault("slow_data", at["slow_data"], "0.5s", "data_stall", 15 if quick else 30),
        Fault("leak", at["leak"], "10MB", "memory_leak", 400, leak_flags, ["health.memory_leak.action=stop"]),
    ]


@dataclass
class Trainer:
    """Launches ``codex-ml train-model`` runs of one config under one output root."""

    root: Path
    config: Path
    data: str | None

    def start(self, name: str, overrides: Sequence[str], flags: Sequence[str] = ()) -> subprocess.Popen:
        """Start one run in the background, its output in ``<root>/<name>.log``."""
        data = [f"data.path={self.data}"] if self.data else []
        command = [sys.executable, "-m", "codex_ml.cli", "train-model", "--config", str(self.config),
                   "--output-root", str(self.root), "--run-name", name, "--no-progress", *flags,
                   "training.progress=false", *data, *overrides]  # fmt: skip
        with open(self.root / f"{name}.log", "w") as log:  # the child keeps its own copy of the descriptor
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)

    def run(self, name: str, overrides: Sequence[str], flags: Sequence[str] = ()) -> tuple[Path, int, float]:
        """Train one run; return its directory, exit status and wall seconds."""
        began = time.perf_counter()
        status = self.start(name, overrides, flags).wait()
        return self.root / name, status, time.perf_counter() - began


def train_records(run: Path) -> list[dict]:
    """The run's metrics records that are training steps (they carry ``train/loss``), in file order
    (none when the run wrote no metrics log: see its ``.log``)."""
    if not (run / "metrics.ndjson").is_file():
        return []
    return [r for r in read_metrics(run / "metrics.ndjson", ReadReport(str(run))) if "train/loss" in r["metrics"]]


def fmt_s(seconds: float | None) -> str:
    """Seconds for a table cell ('-' when unknown)."""
    return "-" if seconds is None else f"{seconds:.2f}"


def latency_row(fault: Fault, run: Path, status: int) -> list[str]:
    """One latency table row from a fault run's records and live events."""
    records = train_records(run)
    times = {r["step"]: r["time"] for r in records}
    events = read_events(run / "events.ndjson")
    first_step = fault.step - 1 if fault.kind == "hang" else fault.step  # a hang has no record of its own step
    before = [e for e in events if e.step is not None and e.step < first_step]
    after = [e for e in events if e.step is None or e.step >= first_step]
    hit: HealthEvent | None = next((e for e in after if e.rule == fault.rule), None)
    first = after[0] if after else None
    d_steps = d_s = None
    if hit is not None and first_step in times:
        d_s = hit.time - times[first_step]
        d_steps = None if fault.kind == "hang" or hit.step is None else hit.step - fault.step
    target, met = issue_target(fault, records, d_steps, d_s)
    first_cell = "-" if first is None else f"{first.rule}@{first.step}"
    return [fault.token, str(fault.step), fault.rule, first_cell, "-" if d_steps is None else str(d_steps),
            fmt_s(d_s), target, met, str(len(before)), str(status)]


def issue_target(fault: Fault, records: list[dict], d_steps: int | None, d_s: float | None) -> tuple[str, str]:
    """The issue's latency target for this fault, and whether it was met ('-' where it sets none)."""
    if fault.kind == "nan":
        return "same step", _yes(d_steps == 0)
    if fault.kind == "spike":
        return "<= 1 step", _yes(d_steps is not None and 0 <= d_steps <= 1)
    if fault.kind != "hang":
        return "-", "-"
    # the issue's bound, max(3 x median step interval, 10 s), over the last 50 intervals before the hang
    gaps = [b["time"] - a["time"] for a, b in zip(records, records[1:]) if b["step"] < fault.step][-50:]
    bound = max(3 * statistics.median(gaps), 10.0) if gaps else 10.0
    over = f" (+{d_s - bound:.2f} s)" if d_s is not None and d_s > bound else ""
    return f"<= {bound:.1f} s", _yes(d_s is not None and d_s <= bound) + over


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Columns as wide as their widest cell, the first left-aligned."""
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths))]
        print("  ".join(cells))


def bench_latency(trainer: Trainer, quick: bool, hang_s: float | None) -> None:
    """Train one run per fault and print the latency table."""
    rows = []
    for fault in faults(quick, hang_s):
        overrides = [f"training.fault={fault.token}", f"training.max_steps={fault.step + fault.tail}",
                     "training.seed=1", *fault.overrides]
        run, status, wall = trainer.run(f"fault-{fault.kind}", overrides, fault.flags)
        rows.append(latency_row(fault, run, status))
        print(f"  [{fault.token}: {wall:.0f} s]", file=sys.stderr, flush=True)
    print("\n== Detection latency (live events.ndjson; seconds = event time - fault step's record time; "
          "hang: - last step's record) ==")
    print_table(["fault", "step", "expected", "first event", "d steps", "d s", "target", "met", "before", "exit"], rows)
    print("(before: events at steps before the fault; exit: train-model's status, non-zero for leak, whose "
          "memory_leak action is stop; hang: its event names the last finished step, so no step latency;\n"
          " stall fires at its limit, max(2.5 x median step interval, 9 s) by default, plus up to one watchdog tick; "
          "leak: memory_leak fits 20 samples, 1 s apart here, after 4 of warm-up, so it cannot fire before ~24 s "
          "of sampling)")


def reusable_runs(folder: Path, seeds: list[int]) -> list[tuple[int, Path]]:
    """(seed, run) per seed of ``seeds``: of the run directories under ``folder`` whose params name
    that seed and no fault, the one with the longest metrics log (a short probe run is not a
    second sample of that seed)."""
    import json

    best: dict[int, Path] = {}
    for params in folder.glob("*/params.json"):
        values, metrics = json.loads(params.read_text()), params.parent / "metrics.ndjson"
        seed, fault = values.get("training.seed"), values.get("training.fault")
        if seed in seeds and not fault and metrics.is_file():
            if seed not in best or metrics.stat().st_size > (best[seed] / "metrics.ndjson").stat().st_size:
                best[seed] = params.parent
    return sorted(best.items())


def fp_row(label: str, run: Path, config: HealthConfig | None = None) -> tuple[list[str], int]:
    """One false-positive row (backtest with ``config``) and its count of FP_RULES events."""
    report = backtest_report(run, config)
    counts = {rule: sum(e.rule == rule for e in report.events) for rule in FP_RULES}
    other = sorted({e.rule for e in report.events} - set(FP_RULES))
    recorded = "-" if not (run / "events.ndjson").exists() else str(len(report.recorded))
    row = [label, str(report.metrics_records), *(str(counts[r]) for r in FP_RULES),
           str(len(report.events) - sum(counts.values())) + (f" ({','.join(other)})" if other else ""), recorded]
    return row, sum(counts.values())


def bench_false_positives(trainer: Trainer, seeds: list[int], reuse: Path | None, steps: int) -> None:
    """Backtest (or train, then backtest) one clean run per seed; print the table."""
    runs = reusable_runs(reuse, seeds) if reuse else []
    if reuse and not runs:
        print(f"error: no run directory under {reuse} has training.seed in {seeds} and no fault", file=sys.stderr)
        raise SystemExit(2)
    if not runs:
        for seed in seeds:
            run, status, wall = trainer.run(f"clean-s{seed}", [f"training.seed={seed}", f"training.max_steps={steps}"])
            print(f"  [clean seed {seed}: {wall:.0f} s, exit {status}]", file=sys.stderr, flush=True)
            runs.append((seed, run))
    rows, total = [], 0
    for seed, run in runs:
        row, count = fp_row(f"{run.name} (seed {seed})", run)
        rows.append(row)
        total += count
    print(f"\n== False positives: {len(runs)} clean runs, default rules "
          f"({'backtest of ' + str(reuse) if reuse else 'trained here, then backtested'}) ==")
    print_table(["run", "records", *FP_RULES, "other", "live"], rows)
    print(f"total {'/'.join(FP_RULES)} events: {total}  (live: events the run recorded; '-': it wrote no events.ndjson)")


def bench_pipelines(root: Path, count: int) -> None:
    """Train ``count`` short pipeline runs (tiny config, longer stages) and backtest them; print the table."""
    if count <= 0:
        return
    # the pipeline logs stage-prefixed names (m0/train/loss, ...) and no tokens/s or data wait,
    # so the default spike/grad_explosion patterns see nothing: widen them to every stage
    widened = HealthConfig.from_mapping({"spike": {"metrics": ["*/train/loss"]},
                                         "grad_explosion": {"metrics": ["*/train/grad_norm"]}})
    rows, total = [], 0
    for seed in range(1, count + 1):
        out = root / f"pipeline-s{seed}"
        command = [sys.executable, "deploy/deploy_codex_pipeline.py", "--config", str(PIPELINE_CONFIG),
                   "--output-dir", str(out), "--seed", str(seed), "--no-progress", "pretrain.steps=300",
                   "sft.steps=300", "reward.steps=200", "preference.steps=30"]  # fmt: skip
        began = time.perf_counter()
        with open(root / f"pipeline-s{seed}.log", "w") as log:
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO).returncode
        print(f"  [pipeline seed {seed}: {time.perf_counter() - began:.0f} s, exit {status}]", file=sys.stderr)
        for label, config in ((f"{out.name} default", None), (f"{out.name} widened", widened)):
            row, n = fp_row(label, out, config)
            rows.append(row)
            total += n
    print(f"\n== False positives: {count} pipeline runs (configs/pipeline/tiny.yaml, pretrain/sft 300 steps, "
          "reward 200, preference 30), backtested ==")
    print_table(["run", "records", *FP_RULES, "other", "live"], rows)
    print(f"total: {total}  (widened: spike on */train/loss, grad_explosion on */train/grad_norm; the pipeline "
          "logs no tokens/s or data wait, so throughput_drop and data_stall have nothing to watch)")


def median_of(run: Path, name: str = "train/tokens_per_s", first: int = 50) -> float:
    """Median of metric ``name`` over steps ``first``..end of a run."""
    values = [r["metrics"][name] for r in train_records(run) if r["step"] >= first and name in r["metrics"]]
    return statistics.median(values) if values else float("nan")


def cost_pair(trainer: Trainer, pair: int, steps: int, together: bool) -> dict[str, float]:
    """Median tokens/s of one health-on and one health-off run: one after the other (order flipped
    every pair), or both at once (``together``: they then share whatever load the machine has)."""
    order = ("on", "off") if pair % 2 == 0 else ("off", "on")
    names = {label: f"cost-{'t' if together else 'a'}{pair}-{label}" for label in order}
    overrides = {label: ["training.seed=1", f"training.max_steps={steps}", *(["health.enabled=false"] * (label == "off"))]
                 for label in order}  # fmt: skip
    began = time.perf_counter()
    if together:
        children = [trainer.start(names[label], overrides[label]) for label in order]
        statuses = [child.wait() for child in children]
    else:
        statuses = [trainer.run(names[label], overrides[label])[1] for label in order]
    print(f"  [cost pair {pair + 1} {'together' if together else ','.join(order)}: "
          f"{time.perf_counter() - began:.0f} s, exit {statuses}]", file=sys.stderr, flush=True)
    off_step_s = median_of(trainer.root / names["off"], "time/step_s")
    return {**{label: median_of(trainer.root / names[label]) for label in order}, "off_step_s": off_step_s}


def bench_cost(trainer: Trainer, pairs: int, steps: int, together: bool) -> float:
    """Health on / off pairs; print tokens/s and the ratio; return the median step seconds with health off."""
    rows, ratios, step_s = [], [], []
    for pair in range(pairs):
        speeds = cost_pair(trainer, pair, steps, together)
        ratios.append(speeds["on"] / speeds["off"])
        step_s.append(speeds["off_step_s"])
        order = "together" if together else ("on,off" if pair % 2 == 0 else "off,on")
        rows.append([str(pair + 1), order, f"{speeds['on']:.0f}", f"{speeds['off']:.0f}", f"{ratios[-1]:.3f}"])
    print(f"\n== Cost: median train/tokens_per_s, steps 50..{steps}, health on (defaults) vs health.enabled=false"
          f"{', each pair run at the same time' if together else ', alternating'} ==")
    print_table(["pair", "order", "on tok/s", "off tok/s", "on/off"], rows)
    print(f"ratio on/off: median {statistics.median(ratios):.3f}, min {min(ratios):.3f}, max {max(ratios):.3f} "
          f"over {pairs} pairs (OMP_NUM_THREADS=1; a shared machine's other jobs move single runs by more than this)")
    return statistics.median(step_s)


def record_cost(records: int, step_s: float) -> None:
    """Print the in-process cost per record that benchmarks/bench_health.py measures, and the
    tokens/s ratio it implies for steps of ``step_s`` seconds (one metrics record per step)."""
    command = [sys.executable, str(REPO / "benchmarks" / "bench_health.py"), "--records", str(records)]
    out = subprocess.run(command, capture_output=True, text=True, env=ENV, cwd=REPO)
    print(f"\n== In-process cost (benchmarks/bench_health.py --records {records}) ==")
    print((out.stdout or out.stderr).strip())
    found = re.search(r"([\d.]+) us CPU", out.stdout)
    if found and step_s > 0:
        # the rules run on the writer thread; if every microsecond of it were taken from the
        # training thread (one core, the GIL), a step would lose this share
        share = float(found.group(1)) * 1e-6 / step_s
        print(f"estimate from CPU time: {found.group(1)} us per record / {step_s * 1e3:.0f} ms median step "
              f"(health off) = {share:.4%} of a step, tokens/s ratio about {1 - share:.4f}")


def main() -> None:
    """Parse arguments and run the three parts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="faults at step 60, 2 seeds, 1 cost pair, 1 pipeline")
    parser.add_argument("--config", type=Path, default=BASE_CONFIG, help="training config (default: base.yaml)")
    parser.add_argument("--data", help="data.path for every run (default: the config's, the bundled sample)")
    parser.add_argument("--max-steps", type=int, help="steps of each clean and cost run (default 250; quick 120)")
    parser.add_argument("--seeds", type=int, help="clean runs, seeds 1..N (default 10; quick 2)")
    parser.add_argument("--reuse", type=Path, help="backtest existing clean runs under DIR instead of training")
    parser.add_argument("--pipelines", type=int, help="pipeline runs to backtest (default 3; quick 1)")
    parser.add_argument("--pairs", type=int, help="health on/off pairs for the cost (default 3; quick 1)")
    parser.add_argument("--together", action="store_true",
                        help="cost: run each on/off pair at the same time (same load) instead of alternating")
    parser.add_argument("--hang-s", type=float, help="length of the injected hang (default 15 s; quick 12 s)")
    parser.add_argument("--parts", default="latency,fp,cost", help="comma-separated: latency, fp, cost")
    parser.add_argument("--workdir", type=Path, help="keep the runs here (default: a temporary folder, removed)")
    args = parser.parse_args()
    steps = args.max_steps or (120 if args.quick else 250)
    seeds = list(range(1, (args.seeds or (2 if args.quick else 10)) + 1))
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench-health-"))
    root.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(root.resolve(), args.config.resolve(), args.data and str(Path(args.data).resolve()))
    parts = set(args.parts.split(","))
    print(f"config {args.config}, data {args.data or 'the config default'}, OMP_NUM_THREADS=1, "
          f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), runs in {root}")
    began = time.perf_counter()
    try:
        if "latency" in parts:
            bench_latency(trainer, args.quick, args.hang_s)
        if "fp" in parts:
            bench_false_positives(trainer, seeds, args.reuse, steps)
            bench_pipelines(root, args.pipelines if args.pipelines is not None else (1 if args.quick else 3))
        if "cost" in parts:
            step_s = bench_cost(trainer, args.pairs or (1 if args.quick else 3), steps, args.together)
            record_cost(5_000 if args.quick else 20_000, step_s)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
