"""Trainer benchmark: quality (val loss) and the cost of tracking, side by side with a bare loop.

The issue's setup: a character model on tiny Shakespeare, 4 layers, 4 heads, 128 dims, context 64,
batch 12, 2,000 steps, lr 1e-3 decayed to 1e-4, dropout 0. The trainer runs with every sink on
(NDJSON, TensorBoard, MLflow, W&B offline, Prometheus) and the system-metrics sampler at 1 s. A
bare PyTorch loop of the same model, batch and optimizer, measured in the same process before
and after the trainer, gives the reference speed. Targets: final val loss <= 1.88; trainer
tokens/s >= 0.97 x bare.

    .venv/bin/python benchmarks/bench_trainer.py [--data ../shared/data/tinyshakespeare.txt] [--steps 2000]
    .venv/bin/python benchmarks/bench_trainer.py --bare-steps 0 model.position=learned   # the reference's model

The trainer's default model uses rotary positions; ``model.position=learned`` trains the public
reference's model (a GPT-2 position table) for comparison (docs/benchmarks.md#trainer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> int:
    """Run both loops and print the side-by-side table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--bare-steps", type=int, default=300, help="steps of the bare loop before and after")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); 1 is steadier on a shared machine")
    parser.add_argument("overrides", nargs="*", help="extra config overrides, e.g. model.bias=false")
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"error: {args.data} not found; pass --data PATH to tiny Shakespeare", file=sys.stderr)
        return 2
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    import torch

    from codex_ml.training.config import load_config

    if args.threads:
        torch.set_num_threads(args.threads)

    config = load_config(overrides=[*_overrides(args.data, args.steps), *args.overrides])
    before = bare_step_times(config, args.bare_steps)
    with tempfile.TemporaryDirectory() as tmp:
        result, trainer_times, wall = run_trainer(config, Path(tmp))
    after = bare_step_times(config, args.bare_steps)
    bare = before[20:] + after[20:]  # drop warm-up steps (allocator, first-call overheads)
    tokens = config.training.batch_size * config.model.block_size
    rows = [
        ("tokens/s (mean over steps)", tokens / statistics.mean(bare), tokens / statistics.mean(trainer_times[20:])),
        ("tokens/s (median step)", tokens / statistics.median(bare), tokens / statistics.median(trainer_times[20:])),
    ] if bare else []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps, data {args.data}, "
          f"overrides {args.overrides or 'none'}")
    if bare:  # --bare-steps 0: quality only (e.g. to compare seeds), no speed comparison
        print(f"{'':28} {'bare loop':>12} {'trainer':>12} {'ratio':>8}")
        for name, bare_value, trainer_value in rows:
            print(f"{name:28} {bare_value:12,.0f} {trainer_value:12,.0f} {trainer_value / bare_value:8.3f}")
    print(f"final val loss {result.final_val_loss:.4f} (target <= 1.88), best {result.best_val_loss:.4f}; "
          f"trainer wall time {wall:.0f} s (incl. evaluation, checkpoints, sink start/close)")
    print(f"sample: {result.sample[:120]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
