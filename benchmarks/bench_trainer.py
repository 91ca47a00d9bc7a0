"""Trainer benchmark: what tracking costs a user's training, measured precisely; and the model's quality.

The issue's setup (docs/benchmarks.md#trainer): a character model on tiny Shakespeare, 4 layers, 4 heads,
128 dims, context 64, batch 12, lr 1e-3 decayed to 1e-4, dropout 0. "Every sink" is TensorBoard + MLflow
(local file store) + W&B offline + Prometheus + the system-metrics sampler at 1 s.

Modes:

- ``alternate`` (default): one process per thread setting; the trainer's real loop, with logging on
  (tracked) and off (bare) in alternating blocks, many pairs; prints tracked/bare tokens/s with its
  95 % interval, one row per ``--sinks`` selection (benchmarks/trainer_alternate.py says how).
- ``processes``: ``codex-ml train-model`` processes, bare and with every sink, alternated; wall time
  start to exit with its spread and the time to the first step (benchmarks/trainer_processes.py).
- ``quality``: one whole training run with every sink, final val loss, bare loop before and after.

    .venv/bin/python benchmarks/bench_trainer.py                                  # every sink, default threads
    .venv/bin/python benchmarks/bench_trainer.py --threads default,1 --sinks all,none,tensorboard,mlflow,wandb,prometheus,system
    .venv/bin/python benchmarks/bench_trainer.py --mode processes --pairs 4 --steps 300
    .venv/bin/python benchmarks/bench_trainer.py --mode quality --steps 2000 [model.position=learned]
    .venv/bin/python benchmarks/bench_trainer.py --quick                          # smoke run, seconds

The trainer's default model uses rotary positions; ``model.position=learned`` trains the public
reference's model (a GPT-2 position table) for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import trainer_alternate as alt  # noqa: E402 - the sibling modules live beside this script
import trainer_processes as procs  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


def _overrides(data: Path, steps: int) -> list[str]:
    return [
        f"data.path={data}", "data.tokenizer=char", "model.n_layer=4", "model.n_head=4", "model.n_embd=128",
        "model.block_size=64", "model.dropout=0.0", "training.batch_size=12", f"training.max_steps={steps}",
        "training.lr=1e-3", "training.min_lr=1e-4", "training.warmup_steps=100", "training.eval_interval=500",
        "training.eval_batches=100", "training.histogram_interval=500", "training.sample_interval=1000",
        "training.checkpoint_interval=1000", "training.progress=false", "training.device=cpu",
    ]


def bare_step_times(config: object, steps: int) -> list[float]:
    """Seconds per step of a plain loop: same model, batches, AdamW, clipping and schedule; no logging."""
    import torch

    from codex_ml.training import components as build
    from codex_ml.training.batches import RandomWindows

    torch.manual_seed(0)
    data = build.prepare_data(config)
    model = build.build_model(config, data.tokenizer.vocab_size)
    optimizer, t = build.build_optimizer(model, config), config.training
    scheduler = build.build_scheduler(optimizer, config)
    windows = RandomWindows(data.train, t.batch_size, config.model.block_size, 0)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        x, y = windows.next()
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        optimizer.step()
        scheduler.step()
        loss.item()
        times.append(time.perf_counter() - began)
    return times


def run_trainer(config: object, root: Path) -> tuple[object, list[float], float]:
    """Train with every sink and the sampler on; return the result, per-step seconds, wall time."""
    from codex_ml.monitoring.ui import free_port
    from codex_ml.tracking.config import TrackingConfig
    from codex_ml.training.trainer import train

    tracking = TrackingConfig(output_root=str(root), run_name="bench", enable_tensorboard=True, enable_mlflow=True,
                              enable_wandb=True, prometheus_port=free_port(), system_metrics="AUTO",
                              system_metrics_interval=1.0)
    began = time.perf_counter()
    result = train(config, tracking)
    wall = time.perf_counter() - began
    step_times = [json.loads(line)["metrics"]["time/step_s"] for line in (root / "bench" / "metrics.ndjson").open()
                  if "time/step_s" in line]
    return result, step_times, wall


def run_quality(args: argparse.Namespace) -> None:
    """One whole run with every sink (final val loss), a bare loop before and after it."""
    import torch

    from codex_ml.training.config import load_config

    if args.threads != "default":
        torch.set_num_threads(int(args.threads.split(",")[0]))
    config = load_config(overrides=[*_overrides(args.data, args.steps), *(_quick_model() if args.quick else []),
                                    *args.overrides])
    before = bare_step_times(config, args.bare_steps)
    with tempfile.TemporaryDirectory() as tmp:
        result, trainer_times, wall = run_trainer(config, Path(tmp))
    after = bare_step_times(config, args.bare_steps)
    bare = before[20:] + after[20:]  # drop warm-up steps (allocator, first-call overheads)
    tokens = config.training.batch_size * config.model.block_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, data {args.data}, "
          f"overrides {args.overrides or 'none'}")
    if bare and len(trainer_times) > 20:  # --bare-steps 0: quality only (e.g. to compare seeds)
        print(f"{'':28} {'bare loop':>12} {'trainer':>12} {'ratio':>8}")
        for name, pick in (("tokens/s (mean over steps)", statistics.mean), ("tokens/s (median step)", statistics.median)):
            b, t = tokens / pick(bare), tokens / pick(trainer_times[20:])
            print(f"{name:28} {b:12,.0f} {t:12,.0f} {t / b:8.3f}")
    print(f"final val loss {result.final_val_loss:.4f} (target <= 1.88), best {result.best_val_loss:.4f}; "
          f"trainer wall time {wall:.0f} s (incl. evaluation, checkpoints, sink start/close)")
    print(f"sample: {result.sample[:120]!r}")


def run_alternate(args: argparse.Namespace) -> None:
    """One child process per thread setting (torch's thread count is set once per process)."""
    for threads in args.threads.split(","):
        cmd = [sys.executable, __file__, "--mode", "alternate-child", "--threads", threads, *_shared_args(args)]
        subprocess.run(cmd, check=True)


def _shared_args(args: argparse.Namespace) -> list[str]:
    out = ["--data", str(args.data), "--sinks", args.sinks, "--pairs", str(args.pairs),
           "--stop-at-width", str(args.stop_at_width), "--budget-s", str(args.budget_s), "--transition", str(args.transition), "--timed", str(args.timed)]
    return out + (["--quick"] if args.quick else []) + (["--json", str(args.json)] if args.json else []) + args.overrides


def alternate_child(args: argparse.Namespace) -> None:
    """Measure every ``--sinks`` selection in this process, one after another, and print the table."""
    import torch

    from codex_ml.training.config import load_config

    if args.threads != "default":
        torch.set_num_threads(int(args.threads))
    plan_args = {"pairs": args.pairs, "transition": args.transition, "timed": args.timed,
                 "stop_at_width": args.stop_at_width, "budget_s": args.budget_s}
    config = load_config(overrides=[*_overrides(args.data, 0), *alt.measured_overrides(alt.Plan(1)),
                                    *(_quick_model() if args.quick else []), *args.overrides])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for selection in args.sinks.split(","):
            outcome = alt.measure(config, selection, alt.Plan(**plan_args), Path(tmp))
            rows.append(alt.summary_row(outcome) | {"transition": outcome.plan.transition,
                                                    "timed": outcome.plan.timed, "sink_names": outcome.sinks})
            print(f"  {selection}: {len(outcome.ratios())} pairs in {outcome.seconds:.0f} s", file=sys.stderr, flush=True)
    _print_alternate(rows, args)
    if args.json:
        with args.json.open("a") as out:
            for row in rows:
                out.write(json.dumps(row | {"load": os.getloadavg()}) + "\n")


def _print_alternate(rows: list[dict], args: argparse.Namespace) -> None:
    import torch

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\ntorch {torch.__version__}, {rows[0]['threads']} threads ({args.threads}), {os.cpu_count()} CPUs, "
          f"load {load}; blocks of {rows[0]['transition']} untimed + {rows[0]['timed']} timed steps")
    print("ratio = tracked tokens/s / bare tokens/s per adjacent pair of blocks (wall clock); 95 % intervals: "
          "t over pairs for the mean, bootstrap for the 20 %-trimmed mean; cpu = the same from CPU seconds")
    print(f"{'sinks':12} {'pairs':>5} {'bare tok/s':>10} {'tracked':>8} {'mean +- 95%':>16} "
          f"{'trimmed [95% CI]':>26} {'cpu mean +- 95%':>17} {'ready s':>7}")
    for r in rows:
        print(f"{r['sinks']:12} {r['pairs']:5} {r['bare_tok_s']:10,.0f} {r['tracked_tok_s']:8,.0f} "
              f"{r['ratio']:7.4f} +-{100 * r['half_width']:5.2f}% "
              f"{r['trimmed']:7.4f} [{r['boot_low']:.4f}, {r['boot_high']:.4f}] "
              f"{r['cpu_ratio']:7.4f} +-{100 * r['cpu_half_width']:5.2f}% {r['ready_s']:7.2f}")
    for r in rows:
        half = (r["boot_high"] - r["boot_low"]) / 2
        if not half < 0.01:
            print(f"{r['sinks']}: the trimmed mean's interval is +-{100 * half:.2f} % over {r['pairs']} pairs; +-1 % "
                  f"needs about {math.ceil(r['pairs'] * (half / 0.01) ** 2)} pairs at this spread")


def _quick_model() -> list[str]:
    return ["model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=32", "training.batch_size=4",
            "training.eval_batches=2"]


def run_processes(args: argparse.Namespace) -> None:
    """Alternate bare and every-sink train-model processes; print wall and time-to-first-step."""
    overrides = [*_overrides(args.data, args.steps), *(_quick_model() if args.quick else []), *args.overrides]
    threads = 0 if args.threads == "default" else int(args.threads.split(",")[0])
    with tempfile.TemporaryDirectory() as tmp:
        results = procs.alternate(overrides, Path(tmp), args.pairs, threads,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{args.steps} steps per process, threads {args.threads}, {os.cpu_count()} CPUs, load {load}")
    print("\n".join(procs.report(results)))
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps({"mode": "processes", "steps": args.steps, "results": results}) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("alternate", "processes", "quality", "alternate-child"), default="alternate")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", default="default",
                        help="torch intra-op threads: 'default' (torch's), a number, or a list (default,1)")
    parser.add_argument("--sinks", default="all", help=f"comma list of {', '.join(alt.SINK_CHOICES)}: a row each")
    parser.add_argument("--pairs", type=int, default=100, help="pairs of blocks (alternate) or of processes")
    parser.add_argument("--stop-at-width", type=float, default=0.0,
                        help="stop a selection early once its 95%% half-width is below this (e.g. 0.008)")
    parser.add_argument("--budget-s", type=float, default=0.0,
                        help="alternate: stop a selection after this many seconds of blocks (0: no limit)")
    parser.add_argument("--transition", type=int, default=0, help="untimed steps per block (0: 1.5 s worth)")
    parser.add_argument("--timed", type=int, default=0, help="timed steps per block (0: 3 s worth)")
    parser.add_argument("--steps", type=int, default=300, help="steps per process (processes) or of the run (quality)")
    parser.add_argument("--bare-steps", type=int, default=300, help="quality: bare-loop steps before and after")
    parser.add_argument("--quick", action="store_true", help="smoke run: a tiny model, 2 pairs of short blocks")
    parser.add_argument("--json", type=Path, help="also append the rows as JSON lines to this file")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. model.bias=false")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps, args.bare_steps = min(args.pairs, 2), min(args.steps, 20), min(args.bare_steps, 20)
        args.transition, args.timed = args.transition or 2, args.timed or 3
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen mode."""
    args = parse_args(argv)
    if not args.data.is_file():
        print(f"error: {args.data} not found; pass --data PATH to tiny Shakespeare", file=sys.stderr)
        return 2
    unknown = set(args.sinks.split(",")) - set(alt.SINK_CHOICES)
    if unknown:
        print(f"error: --sinks {','.join(sorted(unknown))}: choose from {', '.join(alt.SINK_CHOICES)}", file=sys.stderr)
        return 2
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    {"alternate": run_alternate, "alternate-child": alternate_child, "processes": run_processes,
     "quality": run_quality}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
