"""The training loop of ``codex-ml train-model``: a GPT on a text corpus, logging through the tracking core.

Step numbering: step ``s`` (1..max_steps) is logged after the ``s``-th optimizer update; the
untrained model's val loss is logged at step 0. A resumed run continues at ``last checkpoint + 1``
(a run with no checkpoint restarts at step 0), so ``metrics.ndjson`` holds every training step
exactly once. Ctrl-C or SIGTERM stops after the current step with a checkpoint of it
(:mod:`codex_ml.training.stopping`).

Distributed (``torchrun``): every rank trains on its own batches, DDP averages the gradients,
logged losses are averaged over ranks, rank 0 owns the run (sinks, checkpoints) and the
others log to a :class:`~codex_ml.training.distributed.NullRun`.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from codex_ml.tracking.config import TrackingConfig
from codex_ml.training import components as build
from codex_ml.training.batches import RandomWindows
from codex_ml.training.config import TrainConfig, merge_tree
from codex_ml.training.core import Stepper, due, named
from codex_ml.training.distributed import DistInfo, all_reduce_mean, cleanup, init_distributed
from codex_ml.training.elastic import record_session
from codex_ml.training.errors import TrainingError
from codex_ml.training.faults import parse_faults
from codex_ml.health.events import IN_LOOP_ACTIONS
from codex_ml.training.health_guard import HealthGuard, HealthStopError, health_config, rewind_event
from codex_ml.training.observe import estimate_loss, generate_sample, log_histograms, val_metrics
from codex_ml.training.run_setup import open_run, run_name_for
from codex_ml.training.stopping import GracefulStop

__all__ = ["TrainResult", "Trainer", "train"]


@dataclass
class TrainResult:
    """What a training session achieved."""

    run_dir: Path
    last_step: int
    final_train_loss: float
    final_val_loss: float
    best_val_loss: float
    tokens_per_s: float
    finished: bool  # False when stop_after_steps ended the session before max_steps
    sample: str = ""
    early_stop: dict[str, str] | None = None  # the tags of an early stop the on_eval hook asked for


#: Called on rank 0 after each evaluation but step 0's with ``(step, val_loss)``; a dict it returns
#: stops training after that step (checkpoint, run FINISHED) and is recorded as the run's tags.
OnEval = Callable[[int, float], "dict[str, str] | None"]


def train(config: TrainConfig, tracking: TrackingConfig | None = None, *,
          resume: build.ResumePoint | None = None, on_eval: OnEval | None = None, elastic: Any = None) -> TrainResult:
    """Train ``config`` (continuing ``resume`` if given), logging per ``tracking``; handles torchrun.
    ``on_eval`` may stop training early (a sweep's pruner, codex_ml.sweeps). ``elastic`` is the
    :class:`~codex_ml.training.elastic.ElasticPlan` of a job torchrun may restart (recorded in the run)."""
    info, device = init_distributed(config.training.device)
    try:
        trainer = Trainer(config, tracking or config.tracking_config(), info, device, resume)
        trainer.on_eval = on_eval
        trainer.elastic = elastic
        return trainer.fit()
    finally:
        cleanup()


def _run_status(run_dir: Path) -> str | None:
    """The status in ``run.json`` (None when unreadable). A run killed after its final
    checkpoint is still RUNNING: resuming it trains nothing, back-fills the sinks and closes it."""
    from codex_ml.rundir.run_files import read_run_json

    return read_run_json(run_dir).get("status")


class Trainer:
    """One training session. Everything that can fail on bad input fails in ``__init__``,
    before the run directory is touched."""

    def __init__(self, config: TrainConfig, tracking: TrackingConfig, info: DistInfo, device: torch.device,
                 resume: build.ResumePoint | None = None) -> None:
        self.info, self.device, self.resume = info, device, resume
        t = config.training
        if resume is not None:
            tracking = tracking.replace(run_name=resume.run_dir.name, output_root=str(resume.run_dir.parent))
        self.tracking = tracking.replace(run_name=run_name_for(tracking, info))
        # Checkpoints keep the effective tracking settings, so a resume reopens the same sinks.
        self.config = config = config.with_tracking(self.tracking)
        self.run_dir = Path(self.tracking.output_root) / self.tracking.run_name
        torch.manual_seed(t.seed)  # the same initial weights on every rank
        tokenizer_dir = self.run_dir / build.TOKENIZER_DIR
        # A restart (no checkpoint) may have stopped before its tokenizer was saved: train it again.
        self.new_tokenizer = resume is None or not tokenizer_dir.is_dir()
        self.data = build.prepare_data(config, None if self.new_tokenizer else tokenizer_dir)
        self.model = build.build_model(config, self.data.tokenizer.vocab_size).to(device)
        self.optimizer = build.build_optimizer(self.model, config)
        self.scheduler = build.build_scheduler(self.optimizer, config)
        self.stepper = Stepper(self.optimizer, self.model.parameters(), t.grad_clip, scheduler=self.scheduler)
        self.windows = RandomWindows(self.data.train, t.batch_size, config.model.block_size, t.seed + 7919 * info.rank)
        RandomWindows(self.data.val, 1, config.model.block_size, 0)  # evaluation windows must fit too: fail now, not at the first eval
        torch.manual_seed(t.seed + info.rank)  # dropout differs per rank, like the batches
        self.start_step, self.best_val, self.saved_step, self.evaluated_step = 0, math.inf, -1, -1
        if resume is not None and not resume.restart:
            self._restore(resume)
        if self.start_step >= t.max_steps and _run_status(self.run_dir) == "FINISHED":
            raise TrainingError(f"{self.run_dir} already trained {self.start_step} of training.max_steps="
                                f"{t.max_steps} steps; resume with a larger training.max_steps=N to train further")
        self.ddp = self._wrap_ddp()
        # Injected faults (training.fault) wrap the batch source and the forward pass; without
        # them these are the plain objects, so a normal step pays nothing for the feature.
        self.faults = parse_faults(t.fault)
        # Health rules: most run on the tracking writer thread; `skip` ones in this loop (health_guard.py).
        self.health = health_config(config.health)
        if info.enabled and any(r.get("action") in IN_LOOP_ACTIONS for r in self.health.active().values()):
            raise TrainingError("health actions 'skip' and 'rollback' are not supported with several ranks yet (each "
                                "rank would judge its own loss); use action stop or log under torchrun")
        self.guard: HealthGuard | None = None
        self.rollbacks = 0
        self.stop_reason: dict[str, Any] | None = None  # why the loop stopped itself (too many rollbacks)
        self.on_eval: OnEval | None = None
        self.elastic: Any = None  # the ElasticPlan under torchrun --max-restarts (see fit)
        self.early_stop: dict[str, str] | None = None  # the tags on_eval returned to stop early
        self.batches = self.faults.batches(self.windows) if self.faults else self.windows
        self.forward = self.faults.forward(self.ddp) if self.faults else self.ddp
        if self.faults and info.is_main:
            print(f"[train] fault injection on (training.fault): {t.fault}", file=sys.stderr, flush=True)
        self.autocast_dtype = torch.bfloat16 if t.precision == "bf16" else None

    # -- setup ------------------------------------------------------------------------
    def _restore(self, resume: build.ResumePoint) -> None:
        """Load model/optimizer/scheduler/RNG state from the checkpoint (nothing is written)."""
        from codex_ml.training.checkpoints import load_model_state, restore_rng_state

        state, source = resume.state, str(resume.checkpoint_path)
        if resume.skipped and self.info.is_main:
            print(f"[train] resuming from {resume.checkpoint_path.name}; skipped the newer {'; '.join(resume.skipped)}",
                  file=sys.stderr)
        load_model_state(self.model, state["model"], source)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise TrainingError(f"{source}: optimizer/scheduler state does not fit this config ({exc})") from exc
        self.start_step = self.saved_step = int(state["step"])
        self.best_val = float(state.get("best_val_loss", math.inf))
        ranks = state.get("ranks") or []
        if len(ranks) == self.info.world_size:
            self.windows.load_state_dict(ranks[self.info.rank]["batches"])
            restore_rng_state(ranks[self.info.rank]["rng"])
        else:  # a different number of processes: continue with fresh, step-dependent streams
            seed = self.config.training.seed + 7919 * self.info.rank + 104729 * self.start_step
            self.windows.generator.manual_seed(seed)
            torch.manual_seed(seed)
            print(f"[train] resuming on {self.info.world_size} process(es), the checkpoint had {len(ranks)}: "
                  "batches continue from a new random stream", file=sys.stderr)

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.info.enabled:
            return self.model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids)

    def _autocast(self) -> Any:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _params(self) -> dict[str, Any]:
        extra = {
            "model": {"vocab_size": self.data.tokenizer.vocab_size, "num_parameters": self.model.num_parameters(),
                      "class": type(self.model).__name__},  # the class model.name built (a plugin's shows here)
            "data": {"resolved_path": str(self.data.source), "train_tokens": len(self.data.train),
                     "val_tokens": len(self.data.val)},
            "distributed": {"world_size": self.info.world_size, "device": str(self.device)},
        }
        return merge_tree(self.config.to_dict(), extra)

    # -- the loop ---------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Open the run, train to max_steps (or stop_after_steps, or a signal), close the run.

        After SIGINT/SIGTERM (see :mod:`codex_ml.training.stopping`) the run is closed KILLED
        with a checkpoint of the last step, then the signal takes its course.
        """
        run = open_run(self)
        if self.elastic is not None and self.info.is_main:  # torchrun --max-restarts (codex_ml.training.elastic)
            record_session(self.elastic, self.info.world_size)  # says which job owns the run: its restarts continue it
            run.flush()  # params.json on disk even if a worker dies at once (a restart from step 0 reads it)
        guard = HealthGuard(self.health, run)
        self.guard = guard if guard.active else None
        self.stepper.guard = guard.allow if guard.active else None
        if self.info.is_main and self.new_tokenizer:
            from codex_ml.data.tokenizers import save_tokenizer

            save_tokenizer(self.data.tokenizer, self.run_dir / build.TOKENIZER_DIR)
        status = "FAILED"
        stop = GracefulStop()
        try:
            with stop:
                result = self._loop(run, stop)
            if run.health_link is not None:
                run.health_link.stop()  # training is over: the final checkpoint and close are not a stall
            status = "FAILED" if stop.health else "KILLED" if stop.asked and not stop.early else "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            run.close(status)
        stop.end_process_as_asked()
        if stop.health:  # the run is closed FAILED with a checkpoint of its last step: say why, exit 3
            reason = run.health_stop or self.stop_reason
            raise HealthStopError(reason or {"rule": "health", "message": "a health rule asked to stop"},
                                  self.run_dir, result.last_step)
        return result

    def _loop(self, run: Any, stop: GracefulStop) -> TrainResult:
        # Longer than most functions on purpose: the whole step reads top to bottom in one place.
        t, cfg = self.config.training, self.config
        end = t.max_steps if t.stop_after_steps is None else min(t.max_steps, self.start_step + t.stop_after_steps)
        tokens_per_step = t.batch_size * cfg.model.block_size * t.grad_accum_steps * self.info.world_size
        bar = self._progress_bar()
        val_loss = self.best_val
        if self.start_step == 0:
            val_loss = self._evaluate(run, 0)
            bar.set_postfix(val=f"{val_loss:.4f}", refresh=False)
        loss, log_time, train_time, sample = math.nan, 0.0, 0.0, ""
        step = self.start_step
        while step < end:  # not a for loop: a rollback moves `step` back to its checkpoint
            step += 1
            t0 = time.perf_counter()
            if self.faults:
                self.faults.begin(step)
            waits = [0.0, 0.0]  # data wait, forward/backward (seconds)
            update = self.stepper.update(step, lambda: self._forward_backward(waits))
            loss = update.loss
            t2 = time.perf_counter()
            step_time = t2 - t0 + log_time  # the previous step's logging belongs to this step's cost
            train_time += step_time
            if due(step, t.log_interval, step == end):
                loss, norm = all_reduce_mean([loss, float(update.grad_norm)], self.info, self.device)
                run.log_metrics({
                    **named("train", {"loss": loss, "lr": update.lr, "grad_norm": norm,
                                      "tokens_per_s": tokens_per_step / step_time}),
                    **named("time", {"step_s": step_time, "data_wait_s": waits[0], "fwd_bwd_s": waits[1],
                                     "optimizer_s": t2 - update.compute_end, "logging_s": log_time}),
                }, step)
                bar.set_postfix(loss=f"{loss:.4f}", **self._bar_val(val_loss), refresh=False)
            bar.update(1)
            log_time = time.perf_counter() - t2
            if self.guard is not None and self.guard.rollback is not None:
                step = self._rollback(run, step, stop)
                bar.n = step
                continue
            val_loss, sample = self._periodic(run, step, end, val_loss, sample)
            if self.evaluated_step == step:  # the bar must not end on the val loss of an earlier step
                bar.set_postfix(loss=f"{loss:.4f}", val=f"{val_loss:.4f}", refresh=False)
            if run.health_stop is not None:  # a rule with action stop fired (rank 0 knows; NullRun says None)
                stop.request_health_stop()
            if self.early_stop is not None:
                stop.request_early_stop()
            if stop.agreed(self.info, self.device):
                end = self._stop_at(run, step, stop)
                break
        bar.close()
        done = end == t.max_steps and not stop.signum
        return TrainResult(self.run_dir, end, loss, val_loss, self.best_val,
                           tokens_per_step * (end - self.start_step) / max(train_time, 1e-9), done, sample,
                           self.early_stop)

    def _rollback(self, run: Any, step: int, stop: GracefulStop) -> int:
        """A rule with ``action: rollback`` refused the update of ``step``: restore the newest
        checkpoint before it (model, optimizer, schedule; not the batch stream, so the data of the
        steps in between is skipped), record a ``rewind`` event and return the checkpoint's step.
        With no checkpoint yet the update is just skipped; after ``training.max_rollbacks`` rewinds
        the run stops instead (FAILED, exit 3)."""
        from codex_ml.training.checkpoints import list_step_checkpoints, load_checkpoint, load_model_state

        event, self.guard.rollback = self.guard.rollback, None  # type: ignore[union-attr]
        limit = self.config.training.max_rollbacks
        if self.rollbacks >= limit:
            self.stop_reason = {"rule": event.rule, "message": f"{event.message} (after {limit} rollbacks, stopping)"}
            stop.request_health_stop()
            return step
        older = [(s, p) for s, p in list_step_checkpoints(self.run_dir / build.CHECKPOINT_DIR) if s < step]
        if not older:
            print(f"[train] {event.rule} at step {step}: no checkpoint to roll back to yet; the update was skipped",
                  file=sys.stderr, flush=True)
            return step
        self.rollbacks += 1
        to_step, path = older[-1]
        state = load_checkpoint(path)
        load_model_state(self.model, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.best_val = float(state.get("best_val_loss", self.best_val))
        self.saved_step = to_step
        run.log_event(rewind_event(to_step, step, path.name))
        print(f"[train] {event.rule} at step {step}: rolled back to the checkpoint of step {to_step} "
              f"({self.rollbacks}/{limit}); training goes on from step {to_step + 1} with new data",
              file=sys.stderr, flush=True)
        return to_step

    def _forward_backward(self, waits: list[float]) -> torch.Tensor:
        """Forward and backward over ``grad_accum_steps`` micro-batches; the mean loss (detached).
        Adds the data wait and the forward/backward time to ``waits``."""
        t = self.config.training
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(t.grad_accum_steps):
            ta = time.perf_counter()
            x, y = (b.to(self.device, non_blocking=True) for b in self.batches.next())
            tb = time.perf_counter()
            # Only the last micro-batch all-reduces gradients (DDP no_sync on the others).
            sync = micro == t.grad_accum_steps - 1 or not self.info.enabled
            with (contextlib.nullcontext() if sync else self.ddp.no_sync()), self._autocast():
                _, micro_loss = self.forward(x, y)
            (micro_loss / t.grad_accum_steps).backward()
            loss_sum += micro_loss.detach().float()
            self._sync()  # CUDA runs ahead of the CPU; wait so the timing is real
            waits[0] += tb - ta
            waits[1] += time.perf_counter() - tb
        return loss_sum / t.grad_accum_steps

    def _bar_val(self, val_loss: float) -> dict[str, str]:
        """``val=`` for the progress bar, only once this session has evaluated (a resumed run's
        best val loss is not its current one)."""
        return {"val": f"{val_loss:.4f}"} if self.evaluated_step >= 0 else {}

    def _stop_at(self, run: Any, step: int, stop: GracefulStop) -> int:
        """Checkpoint ``step`` (unless it just was) after a stop signal; return the last step."""
        if self.saved_step != step:
            run.flush()
            self._checkpoint(step, False)
        if self.info.is_main and stop.early:
            print(f"[train] stopped early after step {step} with a checkpoint of it ({self.early_stop}); "
                  "the run ends FINISHED", file=sys.stderr, flush=True)
        elif self.info.is_main and not stop.health:  # a health stop says why itself (HealthStopError)
            print(f"[train] {stop.name}: stopped after step {step} with a checkpoint of it; the run ends KILLED. "
                  f"Continue it with --resume {self.run_dir}", file=sys.stderr, flush=True)
        return step

    def _periodic(self, run: Any, step: int, end: int, val_loss: float, sample: str) -> tuple[float, str]:
        """Evaluation, histograms, samples and checkpoints due after ``step``."""
        t = self.config.training
        last, finished = step == end, step == t.max_steps
        is_best = False
        if due(step, t.eval_interval, finished):
            val_loss = self._evaluate(run, step)
            is_best = val_loss < self.best_val
            self.best_val = min(self.best_val, val_loss)
        if self.info.is_main and due(step, t.histogram_interval, finished):
            log_histograms(run, self.model, step)
        if self.info.is_main and due(step, t.sample_interval, finished):
            sample = generate_sample(self.model, self.data.tokenizer, t.sample_tokens, t.seed, self.device)
            run.log_text("samples/generation", sample, step)
        if due(step, t.checkpoint_interval, last) or is_best:
            # The log must be at least as new as the checkpoint: a resume starts after it, so
            # steps still queued when a crash hits would otherwise never be logged.
            run.flush()
            self._checkpoint(step, is_best)
        return val_loss, sample

    def _evaluate(self, run: Any, step: int) -> float:
        t = self.config.training
        # Every rank evaluates the same fixed batches on its identical weights, so all agree
        # on "best" (it decides checkpoint collectives) without another all-reduce.
        loss = estimate_loss(self.model, self.data.val, t.batch_size, self.config.model.block_size,
                             t.eval_batches, t.seed + 1, self.device, self._autocast)
        run.log_metrics(val_metrics(loss), step)
        self.evaluated_step = step
        if self.on_eval is not None and self.info.is_main and step > 0 and self.early_stop is None:
            self.early_stop = self.on_eval(step, loss)
            if self.early_stop is not None:
                run.set_tags(self.early_stop)
        return loss

    def _checkpoint(self, step: int, is_best: bool) -> None:
        """Rank 0 writes; every rank contributes its RNG and batch-stream state."""
        from codex_ml.training.checkpoints import capture_rng_state, save_checkpoint

        self.saved_step = step
        mine = {"batches": self.windows.state_dict(), "rng": capture_rng_state()}
        ranks: list[Any] = [mine]
        if self.info.enabled:
            ranks = [None] * self.info.world_size
            dist.all_gather_object(ranks, mine)
        if not self.info.is_main:
            return
        state = {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "step": step, "config": self.config.to_dict(),
            "best_val_loss": self.best_val, "world_size": self.info.world_size, "ranks": ranks,
        }
        save_checkpoint(self.run_dir / build.CHECKPOINT_DIR, state, step=step, is_best=is_best,
                        keep_last=self.config.training.keep_last)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _progress_bar(self) -> Any:
        from tqdm import tqdm

        t = self.config.training
        return tqdm(total=t.max_steps, initial=self.start_step, unit="step", dynamic_ncols=True,
                    desc=f"training {self.tracking.run_name}", disable=not (t.progress and self.info.is_main))

