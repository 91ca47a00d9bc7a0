"""In-process alternation for bench_trainer.py: the real trainer loop, logging switched on and off in blocks.

Separate processes cannot resolve a 1 % cost on a shared machine (run-to-run noise is ~15 %), so the
tracked and bare arms run inside one process, one training loop, one model: the trainer's own
``_loop`` logs through a :class:`Gate`. In a *tracked* block the gate forwards every call to the run
(exactly the calls ``train-model`` makes) and the system-metrics sampler runs; in a *bare* block it
drops them and the sampler is stopped. The sink threads, W&B's service process and the Prometheus
server stay alive throughout (idle in bare blocks), so both arms share the same process state.

Each block starts with untimed *transition* steps (at least 1.5 flush intervals): the writer drains
once a second, so without them the sink work of a tracked block's last second would be charged to
the bare block after it, and a tracked block would start without its steady-state backlog. Pairs
alternate their order (tracked-bare, bare-tracked, ...) so a linear drift cancels within two pairs.
The ratio per pair is bare time / tracked time (= tracked tokens/s over bare tokens/s).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The selections ``--sinks`` accepts: which sinks the tracked arm's run has.
SINK_CHOICES = ("all", "none", "tensorboard", "mlflow", "wandb", "prometheus", "system")
#: A tracking server for the MLflow sink instead of a local file store (benchmarks/bench_mlflow_server.py).
MLFLOW_URI_ENV = "CODEX_BENCH_MLFLOW_URI"


class ScheduleDone(Exception):
    """Raised out of the trainer loop by the gate once the last block is timed (the run then closes)."""


def tracking_for(selection: str, root: Path, run_name: str) -> Any:
    """The TrackingConfig of one ``--sinks`` selection: every sink is TensorBoard + MLflow (local file
    store under the run, or the server in $CODEX_BENCH_MLFLOW_URI: bench_mlflow_server.py --trainer-load
    sets it) + W&B offline + Prometheus + the system-metrics sampler at 1 s."""
    from codex_ml.monitoring.ui import free_port
    from codex_ml.tracking.config import TrackingConfig

    on = {name: selection in ("all", name) for name in SINK_CHOICES[2:]}
    return TrackingConfig(
        output_root=str(root), run_name=run_name, enable_tensorboard=on["tensorboard"], enable_mlflow=on["mlflow"],
        mlflow_tracking_uri=(os.environ.get(MLFLOW_URI_ENV) or (root / run_name / "mlruns").as_uri())
        if on["mlflow"] else None,
        enable_wandb=on["wandb"], prometheus_port=free_port() if on["prometheus"] else None,
        system_metrics="AUTO" if on["system"] else None, system_metrics_interval=1.0)


def t_quantile(n: int, p: float = 0.975) -> float:
    """Student's t quantile with ``n - 1`` degrees of freedom (Cornish-Fisher, good to ~1e-3 for n >= 5)."""
    from statistics import NormalDist

    z, nu = NormalDist().inv_cdf(p), max(n - 1, 1)
    return z + (z**3 + z) / (4 * nu) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * nu**2) \
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * nu**3)


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its t-based 95 % interval (nan with fewer than two values)."""
    if len(values) < 2:
        return (values[0] if values else math.nan), math.nan
    return statistics.mean(values), t_quantile(len(values)) * statistics.stdev(values) / math.sqrt(len(values))


def trimmed_mean(values: list[float], cut: float = 0.2) -> float:
    """Mean of ``values`` without the lowest and highest ``cut`` fraction (robust to load bursts)."""
    ordered = sorted(values)
    k = int(len(ordered) * cut)
    return statistics.mean(ordered[k:len(ordered) - k] or ordered)


def bootstrap_ci(values: list[float], estimator: Any = trimmed_mean, resamples: int = 2000) -> tuple[float, float]:
    """The percentile 95 % bootstrap interval of ``estimator`` over ``values`` (fixed seed: reproducible)."""
    import random

    if len(values) < 2:
        return math.nan, math.nan
    rng = random.Random(0)
    stats = sorted(estimator(rng.choices(values, k=len(values))) for _ in range(resamples))
    return stats[int(0.025 * resamples)], stats[int(0.975 * resamples) - 1]


@dataclass
class Plan:
    """Block sizes in training steps: ``transition`` untimed then ``timed`` timed steps per block.
    A size of 0 is set from seconds (``transition_s``, ``timed_s``) by timing ``calibrate`` steps first."""

    pairs: int
    transition: int = 0
    timed: int = 0
    transition_s: float = 1.5  # > the writer's 1 s flush interval plus a sink's delivery of one batch
    timed_s: float = 3.0
    calibrate: int = 40
    stop_at_width: float = 0.0  # stop early once the 95 % half-width is below this (0: run every pair)
    min_pairs: int = 10
    budget_s: float = 0.0  # stop after this many seconds of blocks, at a pair boundary (0: no limit)


@dataclass
class Outcome:
    """Seconds per timed block of each arm, pair by pair, and what the run saw."""

    selection: str
    threads: int
    tokens_per_step: int
    plan: Plan
    tracked: list[float] = field(default_factory=list)
    bare: list[float] = field(default_factory=list)
    #: CPU seconds per block of this process and its children (W&B's service): contention-proof, not wall.
    tracked_cpu: list[float] = field(default_factory=list)
    bare_cpu: list[float] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)
    ready_s: float = math.nan  # first log call -> every sink has delivered the first records (warm-up)
    seconds: float = 0.0

    def ratios(self) -> list[float]:
        """Tracked tokens/s over bare tokens/s, one per complete pair."""
        return [b / t for t, b in zip(self.tracked, self.bare)]

    def cpu_ratios(self) -> list[float]:
        """Bare CPU seconds over tracked CPU seconds per pair (the CPU-cost view of the same blocks); psutil's
        clock ticks every 10 ms, so a pair with a block below one tick (smoke runs) is left out."""
        return [b / t for t, b in zip(self.tracked_cpu, self.bare_cpu) if t > 0 and b > 0]


class Gate:
    """Stands between the trainer loop and its run; the loop's only view of the run.

    Counts training steps (the ``train/loss`` records; ``log_interval`` must be 1) and walks the plan:
    for each pair, two blocks in alternating order, each ``transition`` untimed then ``timed`` timed steps.
    """

    def __init__(self, run: Any, outcome: Outcome) -> None:
        self._run, self.outcome, plan = run, outcome, outcome.plan
        self.tracked = True
        self._events: list[tuple[str, int]] = []  # (mode, pair) per block, in order
        for pair in range(plan.pairs):
            first = ("tracked", "bare") if pair % 2 == 0 else ("bare", "tracked")
            self._events += [(first[0], pair), (first[1], pair)]
        self._block = -1
        self._steps_left = 0
        self._timing_from: float | None = None
        self._started = False
        self._calibrating = 0
        self._calibrate_from = 0.0
        self._calibration: list[float] = []
        self._cpu = CpuClock()
        self._cpu_from = 0.0
        self._blocks_from = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)  # flush, health_stop, set_tags, ... go to the run unchanged

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        """Forward in tracked blocks, drop in bare ones; then advance the plan by one step."""
        if self.tracked:
            self._run.log_metrics(metrics, step)
        if "train/loss" in metrics:
            self._tick()

    def log_histogram(self, name: str, values: Any, step: int | None = None) -> None:
        """Forwarded in tracked blocks only (the plan keeps evaluations out of the measured steps)."""
        if self.tracked:
            self._run.log_histogram(name, values, step)

    def log_text(self, name: str, text: str, step: int | None = None) -> None:
        """Forwarded in tracked blocks only."""
        if self.tracked:
            self._run.log_text(name, text, step)

    def _tick(self) -> None:
        plan = self.outcome.plan
        if not self._started:  # the first step: wait (untimed) until every sink has started and delivered
            self._started = True
            self.outcome.ready_s = wait_for_sinks(self._run)
            self._calibrating = self.outcome.plan.calibrate if not (plan.transition and plan.timed) else 0
            self._calibrate_from = time.perf_counter()
            if not self._calibrating:
                self._begin_block()
            return
        if self._calibrating:  # tracked steps that size the blocks in steps
            self._calibrating -= 1
            now = time.perf_counter()
            self._calibration.append(now - self._calibrate_from)
            self._calibrate_from = now
            if not self._calibrating:
                step_s = statistics.median(self._calibration)  # a burst of other work must not size the blocks
                plan.transition = plan.transition or math.ceil(plan.transition_s / step_s)
                plan.timed = plan.timed or math.ceil(plan.timed_s / step_s)
                self._begin_block()
            return
        self._steps_left -= 1
        if self._steps_left == plan.timed and self._timing_from is None:
            self._timing_from, self._cpu_from = time.perf_counter(), self._cpu.seconds()  # the transition is over
        elif self._steps_left == 0:
            self._end_block(time.perf_counter() - (self._timing_from or math.nan), self._cpu.seconds() - self._cpu_from)

    def _begin_block(self) -> None:
        self._block += 1
        if self._block >= len(self._events) or self._enough():
            raise ScheduleDone
        mode = self._events[self._block][0]
        self._switch(mode == "tracked")
        self._steps_left = self.outcome.plan.transition + self.outcome.plan.timed
        self._timing_from = None
        if not self.outcome.plan.transition:
            self._timing_from, self._cpu_from = time.perf_counter(), self._cpu.seconds()

    def _end_block(self, seconds: float, cpu: float) -> None:
        mode = self._events[self._block][0]
        (self.outcome.tracked if mode == "tracked" else self.outcome.bare).append(seconds)
        (self.outcome.tracked_cpu if mode == "tracked" else self.outcome.bare_cpu).append(cpu)
        ratios = self.outcome.ratios()
        if self._block % 2 and len(ratios) % 10 == 0:  # progress for long runs: stderr, every 10 pairs
            mean, half = mean_ci(ratios)
            low, high = bootstrap_ci(ratios)
            cpu, cpu_half = mean_ci(self.outcome.cpu_ratios())
            print(f"  {self.outcome.selection}: {len(ratios)} pairs, ratio {mean:.4f} +- {half:.4f}, trimmed "
                  f"{trimmed_mean(ratios):.4f} [{low:.4f}, {high:.4f}], cpu {cpu:.4f} +- {cpu_half:.4f}",
                  file=sys.stderr, flush=True)
        self._begin_block()

    def _enough(self) -> bool:
        plan, ratios = self.outcome.plan, self.outcome.ratios()
        if self._block == 0:
            self._blocks_from = time.perf_counter()
        elif not self._block % 2 and plan.budget_s and time.perf_counter() - self._blocks_from > plan.budget_s:
            return True
        if self._block % 2 or not plan.stop_at_width or len(ratios) < plan.min_pairs:
            return False
        low, high = bootstrap_ci(ratios, resamples=500)
        return (high - low) / 2 < plan.stop_at_width

    def _switch(self, tracked: bool) -> None:
        """Turn logging and the sampler on or off (the sink threads stay up either way)."""
        if tracked == self.tracked:
            return
        self.tracked = tracked
        sampler = getattr(self._run, "system_metrics", None)
        if sampler is not None:
            sampler.start() if tracked else sampler.stop()


class CpuClock:
    """CPU seconds (user + system) of this process and its live children, e.g. W&B's service process."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()

    def seconds(self) -> float:
        """The sum now; a child that exited since is no longer counted (none do while blocks run)."""
        total = sum(self._me.cpu_times()[:2])
        for child in self._me.children(recursive=True):
            try:
                total += sum(child.cpu_times()[:2])
            except Exception:  # noqa: BLE001 - it exited between listing and reading
                continue
        return total


def wait_for_sinks(run: Any, timeout: float = 120.0) -> float:
    """Flush and wait until every sink has taken every record written so far; the seconds it took."""
    began = time.perf_counter()
    while time.perf_counter() - began < timeout:
        run.flush()
        health = run.health()
        written = health["records_written"]
        if all(s["delivered"] + s["dropped"] + s["undelivered"] >= written for s in health["sinks"].values()):
            break
        time.sleep(0.05)
    return time.perf_counter() - began


def measure(config: Any, selection: str, plan: Plan, root: Path) -> Outcome:
    """Train ``config`` with the sinks of ``selection``, alternating tracked and bare blocks per ``plan``."""
    import torch

    from codex_ml.training.distributed import init_distributed
    from codex_ml.training.trainer import Trainer

    class GatedTrainer(Trainer):
        """The trainer whose loop logs through a Gate (its loop and steps are the product's, unchanged)."""

        def _loop(self, run: Any, stop: Any) -> Any:
            self.gate = Gate(run, outcome)
            return super()._loop(self.gate, stop)

    t = config.training
    outcome = Outcome(selection, torch.get_num_threads(), t.batch_size * config.model.block_size, plan)
    info, device = init_distributed(t.device)
    trainer = GatedTrainer(config, tracking_for(selection, root, f"alt-{selection}"), info, device)
    began = time.perf_counter()
    try:
        trainer.fit()
    except ScheduleDone:
        pass  # the run was closed (FAILED) by fit's finally; the blocks are timed
    outcome.seconds = time.perf_counter() - began
    outcome.sinks = list(getattr(trainer, "gate", None) and trainer.gate.sink_names or [])
    return outcome


def measured_overrides(plan: Plan) -> list[str]:
    """Config overrides that keep evaluations, histograms, samples and checkpoints out of the blocks:
    the loop runs until the gate stops it, so max_steps is only an upper bound."""
    never = 10**9
    return [f"training.max_steps={never}", "training.log_interval=1", f"training.eval_interval={never}",
            f"training.histogram_interval={never}", f"training.sample_interval={never}",
            f"training.checkpoint_interval={never}"]


def summary_row(outcome: Outcome) -> dict[str, Any]:
    """The figures of one selection: tokens/s of each arm (median block), ratio mean and 95 % half-width."""
    steps, tokens = outcome.plan.timed, outcome.tokens_per_step
    mean, half = mean_ci(outcome.ratios())
    low, high = bootstrap_ci(outcome.ratios())
    cpu_mean, cpu_half = mean_ci(outcome.cpu_ratios())
    return {
        "trimmed": trimmed_mean(outcome.ratios()) if outcome.ratios() else math.nan, "boot_low": low,
        "boot_high": high, "cpu_ratio": cpu_mean, "cpu_half_width": cpu_half,
        "blocks": {"tracked": outcome.tracked, "bare": outcome.bare, "tracked_cpu": outcome.tracked_cpu,
                   "bare_cpu": outcome.bare_cpu},
        "sinks": outcome.selection, "threads": outcome.threads, "pairs": len(outcome.ratios()),
        "bare_tok_s": tokens * steps / statistics.median(outcome.bare) if outcome.bare else math.nan,
        "tracked_tok_s": tokens * steps / statistics.median(outcome.tracked) if outcome.tracked else math.nan,
        "ratio": mean, "half_width": half, "ready_s": outcome.ready_s, "seconds": outcome.seconds,
        "sd": statistics.stdev(outcome.ratios()) if len(outcome.ratios()) > 1 else math.nan,
    }


def pairs_needed(sd: float, width: float) -> int:
    """Pairs for a 95 % half-width of ``width`` at a per-pair spread ``sd`` (normal approximation)."""
    return math.ceil((1.96 * sd / width) ** 2) if sd == sd and width > 0 else 0
