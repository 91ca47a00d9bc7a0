"""End to end against the public reference trainer: ``train-model`` with every sink vs nanoGPT's ``train.py``.

Issue 14 item 3: the wall time of ``codex-ml train-model`` with every sink on (TensorBoard, MLflow
file store, W&B offline, Prometheus, the system-metrics sampler at 1 s), start to exit, must not
exceed the reference trainer's on the same settings, measured side by side in the same run.

The reference is nanoGPT (github.com/karpathy/nanoGPT), checked out in a scratch directory and never
committed (docs/benchmarks.md#reference-trainer says how to get it). Its character-level data
(``train.bin``, ``val.bin``, ``meta.pkl``, laid out as its ``data/shakespeare_char/prepare.py`` writes
them) is prepared here from ``--corpus``, in a scratch directory: nothing is downloaded.

Both trainers get the settings of bench_trainer.py (4 layers, 4 heads, 128 dims, context 64, batch 12,
lr 1e-3 -> 1e-4 with 100 warm-up steps, eval every 500 steps on ``training.eval_batches`` batches,
dropout 0, fp32 on the CPU, torch's default thread count); nanoGPT's flags are derived from the
resolved train-model config, so an extra override (e.g. ``model.n_layer=2``) reaches both. Known
differences, all in the reference's own code: nanoGPT estimates the loss on the train *and* val
splits at each evaluation (twice the evaluation batches), runs ``max_iters + 1`` updates, always has
learned positions (train-model's default is rotary: pass ``model.position=learned`` for the same
model), and does not sample text, log histograms or keep a checkpoint schedule.

Processes alternate pair by pair (reference first in even pairs, last in odd ones) so a drift in the
machine's load cancels. Per process: wall start to exit, time to the first step, steps/s from step 50
to the end (evaluations included), the median step, the final val loss, and the process's CPU seconds
(steadier than wall on a busy machine). Both trainers inherit the environment: ``OMP_NUM_THREADS=1`` in front
of the command runs both on one torch thread.

    .venv/bin/python benchmarks/bench_reference.py --reference /tmp/nanogpt               # 2,000 steps, 3 pairs
    .venv/bin/python benchmarks/bench_reference.py --reference /tmp/nanogpt --steps 300 --pairs 4 --bare
    .venv/bin/python benchmarks/bench_reference.py --reference /tmp/nanogpt --quick       # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_trainer as bench  # noqa: E402 - the sibling modules live beside this script
import trainer_processes as procs  # noqa: E402
from trainer_alternate import mean_ci  # noqa: E402

DEFAULT_CORPUS = bench.DEFAULT_DATA
#: train-model config key -> nanoGPT train.py global (max_steps also sets lr_decay_iters).
REFERENCE_KEYS = {
    "model.n_layer": "n_layer", "model.n_head": "n_head", "model.n_embd": "n_embd", "model.block_size": "block_size",
    "model.dropout": "dropout", "model.bias": "bias", "training.batch_size": "batch_size",
    "training.max_steps": "max_iters", "training.lr": "learning_rate", "training.min_lr": "min_lr",
    "training.warmup_steps": "warmup_iters", "training.weight_decay": "weight_decay", "training.beta1": "beta1",
    "training.beta2": "beta2", "training.grad_clip": "grad_clip", "training.eval_interval": "eval_interval",
    "training.eval_batches": "eval_iters", "training.grad_accum_steps": "gradient_accumulation_steps",
}


def prepare_char_data(corpus: Path, out: Path) -> dict[str, Any]:
    """Write nanoGPT's char-level ``train.bin``/``val.bin`` (uint16 ids) and ``meta.pkl`` for ``corpus``
    into ``out``, split 90/10 as its shakespeare_char/prepare.py does; return the meta dict."""
    import numpy as np

    text = corpus.read_text(encoding="utf-8")  # universal newlines, like prepare.py's open(..., 'r')
    chars = sorted(set(text))
    if len(chars) > 65535:
        raise ValueError(f"{corpus} has {len(chars)} distinct characters; nanoGPT's uint16 ids hold 65535")
    stoi = {ch: i for i, ch in enumerate(chars)}
    ids = np.array([stoi[ch] for ch in text], dtype=np.uint16)
    cut = int(len(text) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    ids[:cut].tofile(out / "train.bin")
    ids[cut:].tofile(out / "val.bin")
    meta = {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}
    with (out / "meta.pkl").open("wb") as f:
        pickle.dump(meta, f)
    return meta


def reference_flags(config: Any, data_dir: Path, out_dir: Path) -> list[str]:
    """nanoGPT ``--key=value`` flags for the resolved train-model ``config`` (CPU, fp32, no compile)."""
    flat = {f"{section}.{key}": value for section in ("model", "training")
            for key, value in getattr(config, section).__dict__.items()}
    flags = {ref: flat[ours] for ours, ref in REFERENCE_KEYS.items()}
    flags["lr_decay_iters"] = flags["max_iters"]
    # os.path.join("data", "/abs") is "/abs": an absolute dataset points train.py at our scratch data.
    flags |= {"dataset": str(data_dir), "out_dir": str(out_dir), "device": "cpu", "dtype": "float32",
              "compile": False, "wandb_log": False, "log_interval": 1, "always_save_checkpoint": False}
    # configurator.py literal_evals each value and asserts its type equals the default's (floats stay floats).
    return [f"--{k}={float(v) if isinstance(v, float) else v}" for k, v in flags.items()]


def run_reference(reference: Path, flags: list[str]) -> dict[str, Any]:
    """One nanoGPT process (cwd = the checkout: train.py execs ./configurator.py); its stdout lines are
    timestamped as they arrive (unbuffered) for the time to first step and steps/s."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    load, cpu, began = os.getloadavg()[0], children_cpu(), time.time()
    child = subprocess.Popen([sys.executable, "train.py", *flags], cwd=reference, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = [(time.time() - began, line) for line in child.stdout]  # type: ignore[union-attr]
    stderr = child.stderr.read()  # type: ignore[union-attr]
    code = child.wait()
    wall = time.time() - began
    if code:
        raise RuntimeError(f"nanoGPT train.py exited {code}: {stderr[-2000:]}")
    return {"arm": "reference", "wall": wall, "cpu": children_cpu() - cpu, "load": load, **parse_reference(lines)}


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children: less sensitive to a busy machine
    than wall time (the other processes' load shows in wall, not in CPU, short of cache effects)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_reference(lines: list[tuple[float, str]]) -> dict[str, Any]:
    """Start-up marks, steps/s after step 50, median step and final val loss from nanoGPT's output."""
    iters, step_ms, val0, val_loss = {}, [], float("nan"), float("nan")
    for at, line in lines:
        if line.startswith("iter "):  # "iter 12: loss 2.1, time 55.1ms, mfu ..."
            n = int(line.split(":")[0].split()[1])
            iters[n] = at
            step_ms.append(float(line.split("time ")[1].split("ms")[0]))
        elif line.startswith("step "):  # "step 500: train loss 1.9, val loss 2.0"
            val_loss = float(line.rsplit("val loss ", 1)[1])
            val0 = at if val0 != val0 else val0
    return {"opened": lines[0][0] if lines else float("nan"), "val0": val0, "first_step": iters.get(0, float("nan")),
            "steps_per_s": _rate(iters), "median_step_ms": statistics.median(step_ms[50:] or step_ms or [float("nan")]),
            "final_val": val_loss}


def _rate(times: dict[int, float], after: int = 50) -> float:
    """Steps per second from step ``after`` to the last one (nan if the run was shorter)."""
    last = max(times, default=-1)
    start = after if after in times else min(times, default=-1)
    return (last - start) / (times[last] - times[start]) if last > start else float("nan")


def run_train_model(overrides: list[str], root: Path, name: str, tracked: bool) -> dict[str, Any]:
    """One ``codex-ml train-model`` process (trainer_processes.run_once), plus the figures its
    metrics.ndjson gives: steps/s after step 50, median step, final val loss."""
    load, cpu = os.getloadavg()[0], children_cpu()
    result = procs.run_once(overrides, root, name, tracked, threads=0)  # 0: torch's default thread count
    result["cpu"] = children_cpu() - cpu
    steps, step_s, val_loss = {}, [], float("nan")
    with (root / name / "metrics.ndjson").open() as records:
        for line in records:
            record = json.loads(line)
            metrics = record.get("metrics", {})
            if "train/loss" in metrics:
                steps[record["step"]] = record["time"]
                step_s.append(metrics["time/step_s"])
            if "val/loss" in metrics:
                val_loss = metrics["val/loss"]
    return {**result, "arm": "every sink" if tracked else "bare", "load": load, "steps_per_s": _rate(steps),
            "median_step_ms": 1000 * statistics.median(step_s[50:] or step_s or [float("nan")]), "final_val": val_loss}


def alternate(args: argparse.Namespace, overrides: list[str], config: Any, scratch: Path) -> list[dict[str, Any]]:
    """``args.pairs`` pairs: reference, every sink[, bare], the order reversed every other pair."""
    data_dir = scratch / "reference-data"
    prepare_char_data(args.corpus, data_dir)
    flags = reference_flags(config, data_dir, scratch / "reference-out")
    arms = ["reference", "every sink", *(["bare"] if args.bare else [])]
    results = []
    for pair in range(args.pairs):
        for arm in arms if pair % 2 == 0 else arms[::-1]:
            if arm == "reference":
                result = run_reference(args.reference, flags)
            else:
                result = run_train_model(overrides, scratch, f"p{pair}-{arm.replace(' ', '-')}", arm != "bare")
            results.append(result | {"pair": pair})
            print(f"  pair {pair + 1}/{args.pairs} {arm:10} wall {result['wall']:6.1f} s, first step at "
                  f"{result['first_step']:5.2f} s, {result['steps_per_s']:5.2f} steps/s, load {result['load']:.2f}",
                  file=sys.stderr, flush=True)
    return results


def report(results: list[dict[str, Any]]) -> list[str]:
    """The side-by-side table (median and min-max per arm) and the per-pair wall ratios to the reference."""
    arms = [a for a in ("reference", "every sink", "bare") if any(r["arm"] == a for r in results)]
    by = {a: [r for r in results if r["arm"] == a] for a in arms}
    lines = [f"{'':30}" + "".join(f"{a:>24}" for a in arms)]
    for key, label in (("wall", "wall start to exit, s"), ("cpu", "CPU (user+sys, children), s"), ("opened", "first output / run opened, s"),
                       ("val0", "step-0 val loss at, s"), ("first_step", "first step done at, s"),
                       ("steps_per_s", "steps/s, step 50 to end"), ("median_step_ms", "median step, ms"),
                       ("final_val", "final val loss")):
        lines.append(f"{label:30}" + "".join(f"{_cell([r[key] for r in by[a]]):>24}" for a in arms))
    for arm in arms[1:]:
        ratios = [t["wall"] / r["wall"] for r, t in zip(by["reference"], by[arm])]
        mean, half = mean_ci(ratios)
        lines.append(f"{arm}/reference wall per pair: {', '.join(f'{x:.3f}' for x in ratios)}; mean {mean:.3f} "
                     f"+- {half:.3f} (95 %), min-max {min(ratios):.3f}-{max(ratios):.3f} (target <= 1.0); CPU ratio "
                     f"{statistics.mean(t['cpu'] / r['cpu'] for r, t in zip(by['reference'], by[arm])):.3f}")
    return lines


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):7.3f} ({min(values):.2f}-{max(values):.2f})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="a nanoGPT checkout (train.py, model.py, configurator.py)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="a text file (default: tiny Shakespeare)")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per process")
    parser.add_argument("--pairs", type=int, default=3, help="alternating pairs (or triples with --bare)")
    parser.add_argument("--bare", action="store_true", help="also run train-model with no sinks in each pair")
    parser.add_argument("--quick", action="store_true", help="smoke run: a tiny model, 10 steps, one pair")
    parser.add_argument("--json", type=Path, help="also append the per-process results as one JSON line here")
    parser.add_argument("overrides", nargs="*", help="extra train-model overrides, e.g. model.position=learned")
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.steps = 1, min(args.steps, 10)
    return args


def check_inputs(args: argparse.Namespace) -> str | None:
    """The user error in the arguments, if any (one line, for ``error:``)."""
    needed = ("train.py", "model.py", "configurator.py")
    if args.reference is None or not all((args.reference / name).is_file() for name in needed):
        return (f"--reference {args.reference or '(not given)'}: not a nanoGPT checkout (needs {', '.join(needed)}); "
                "fetch github.com/karpathy/nanoGPT into a scratch directory (docs/benchmarks.md#reference-trainer)")
    if not args.corpus.is_file():
        return f"--corpus {args.corpus}: not found; pass a text file (e.g. tiny Shakespeare)"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the alternating pairs and print the table."""
    args = parse_args(argv)
    problem = check_inputs(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    import torch

    from codex_ml.training.config import load_config

    os.environ.pop("MLFLOW_TRACKING_URI", None)
    # Evaluate at the end in both trainers (nanoGPT only evaluates at multiples of eval_interval).
    quick = [*bench._quick_model(), f"training.eval_interval={args.steps}"] if args.quick else []
    overrides = [*bench._overrides(args.corpus.resolve(), args.steps), *quick, *args.overrides]
    config = load_config(overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="bench-reference-") as tmp:
        results = alternate(args, overrides, config, Path(tmp))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\n{args.steps} steps per process, torch {torch.__version__} with its default {torch.get_num_threads()} "
          f"threads, {os.cpu_count()} CPUs, load {load}; overrides {args.overrides or 'none'}")
    if args.steps % config.training.eval_interval:
        print("note: --steps is not a multiple of eval_interval: nanoGPT skips the final evaluation train-model makes")
    print("\n".join(report(results)))
    if args.json:
        with args.json.open("a") as out:
            out.write(json.dumps({"steps": args.steps, "overrides": args.overrides, "results": results}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
