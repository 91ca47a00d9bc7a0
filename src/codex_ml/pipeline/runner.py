"""The pipeline runner: validate inputs, then M0 -> M1 -> RM -> M2, one tracking run for all.

The stages are the config's ``stages``, each loaded by name from the plugin registry and
called as ``stage(state, ctx)`` (:class:`PipelineState`): the four built-ins and any plugin
stages between or after them.

Every stage logs under its own metric prefix (``m0/``, ``m1/``, ``rm/``, ``m2/``) into one
run whose directory is ``output_dir``; each stage sets an MLflow/W&B tag
``pipeline.stage.<STAGE>`` and logs its checkpoint and ``stage.json`` as artifacts. A stage
whose checkpoint verifies (see :mod:`codex_ml.pipeline.store`) is reused unless ``force``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codex_ml.pipeline.config import BUILTIN_STAGES, PipelineConfig
from codex_ml.pipeline.inputs import Inputs, load_inputs
from codex_ml.rundir.paths import RunPaths

__all__ = ["STAGES", "PipelineState", "run_from_hydra", "run_pipeline"]

STAGES = ("M0", "M1", "RM", "M2")
_PREFIX = {"M0": "m0", "M1": "m1", "RM": "rm", "M2": "m2"}
#: The registered names of the built-in stages and the ids they record under.
_BUILTIN = dict(zip(BUILTIN_STAGES, STAGES))


@dataclass
class PipelineState:
    """What every pipeline stage is given (with its StageContext): the stage protocol's input.

    A stage (group ``pipeline_stages``) is a callable ``stage(state, ctx) -> dict | None``: it
    reads the inputs, the tokenizer and the models of the stages before it (``models``: M0, M1,
    RM, M2 as the built-ins add them), logs through ``ctx.run`` under ``ctx.prefix`` and returns
    its metrics, which summary.json records under its name (a built-in records itself, with its
    checkpoint, through :meth:`train_or_reuse`).
    """

    cfg: PipelineConfig
    inputs: Inputs
    tokenizer: Any
    codec: Any
    run: Any
    out: Path
    progress: bool
    models: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)  # input and checkpoint SHA-256s

    def seed(self, name: str) -> int:
        """Each stage gets its own seed so reusing one stage never shifts another's randomness."""
        if name in STAGES:
            return self.cfg.seed * 100 + STAGES.index(name)
        return self.cfg.seed * 100 + len(STAGES) + self.cfg.stages.index(name)  # plugin stages: after the built-ins'

    def train_or_reuse(self, name: str, model: Any, section: Any, deps: tuple[str, ...], train: Callable[[], dict],
                       ctx: Any) -> None:  # fmt: skip
        """Reuse stage ``name``'s verified checkpoint, or ``train()`` and save checkpoint + marker."""
        _stage(self, name, model, section, deps, train, ctx)


def run_pipeline(cfg: PipelineConfig, tracking: Any = None, *, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) the whole pipeline into ``cfg.output_dir``; returns the summary.json content."""
    from codex_ml.data.tokenizers import save_tokenizer, train_tokenizer
    from codex_ml.pipeline.loop import PromptCodec
    from codex_ml.pipeline.stages import pretrain_streams
    from codex_ml.pipeline.summary import print_table

    # Every input check comes before anything is written to the output directory.
    inputs = load_inputs(cfg.corpus, cfg.demos, cfg.prefs)
    if not inputs.demos:
        warnings.warn(f"demos file {cfg.demos!r} is empty: SFT is skipped and M1 is M0", UserWarning, stacklevel=2)
    texts = inputs.corpus + [t for d in inputs.demos for t in (d.prompt, d.completion)]
    texts += [t for p in inputs.prefs for t in (p.prompt, p.chosen, p.rejected)]
    tokenizer = train_tokenizer(cfg.tokenizer, texts, cfg.vocab_size)
    pretrain_streams(inputs.corpus, tokenizer, cfg)  # a corpus too short for one window
    if cfg.preference.method == "rloo" and cfg.preference.reward != "rm":  # exact rewards need checkable prompts
        from codex_ml.pipeline.preference import require_checkable

        require_checkable([d.prompt for d in inputs.demos] + [p.prompt for p in inputs.prefs], cfg.preference.reward)
    codec = PromptCodec(tokenizer, cfg.model.block_size)
    out = Path(cfg.output_dir).resolve()
    run = _open_run(out, tracking, cfg)  # creates the directory; a missing sink package fails before
    session = PipelineState(cfg, inputs, tokenizer, codec, run, out, progress)
    session.hashes = {name: info["sha256"] for name, info in inputs.files.items()}
    status = "FAILED"
    threads = _set_threads(cfg.threads)
    try:
        session.hashes["tokenizer"] = _sha(save_tokenizer(tokenizer, out))
        _run_stages(session)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _set_threads(threads)
        run.add_summary(_report(session, status))  # close() is summary.json's one writer
        run.close(status)
        summary = run.summary or {}
    if progress:
        print_table(session.stages)
    _print_outputs(run)
    return summary


def _print_outputs(run: Any) -> None:
    """Where the data went and the command that views each sink, as every entry point prints."""
    from codex_ml.rundir.paths import RunPaths
    from codex_ml.tracking.viewing import describe_outputs

    for line in describe_outputs(RunPaths(run.paths.root), run.sink_names):
        print(line)


def run_from_hydra(cfg: Any, tracking: Any) -> dict[str, Any]:
    """Entry for ``python -m codex_ml.cli.main pipeline=default``: ``cfg.pipeline`` holds the keys."""
    from omegaconf import OmegaConf

    data = OmegaConf.to_container(cfg.pipeline, resolve=True)
    config = PipelineConfig.from_mapping(data, source="pipeline (Hydra config)")
    base = _original_cwd()
    for key in ("corpus", "demos", "prefs", "output_dir"):  # relative to where the user ran the command
        setattr(config, key, str(base / getattr(config, key)))
    return run_pipeline(config, tracking)


def _original_cwd() -> Path:
    """The directory the command was started in, even if Hydra changed into its own."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):
        pass
    return Path.cwd()


def _set_threads(count: int) -> int:
    """Set torch's intra-op threads (0 leaves them); returns the previous count."""
    import torch

    previous = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    return previous


def _sha(path: Path) -> str:
    from codex_ml.pipeline.inputs import sha256_file

    return sha256_file(path)


def _open_run(out: Path, tracking: Any, cfg: PipelineConfig) -> Any:
    """One tracking run whose directory is ``out``; an existing one is resumed (appended to)."""
    from codex_ml.health.config import HealthConfig
    from codex_ml.tracking import TrackingConfig, start_run

    config = (tracking or TrackingConfig()).replace(output_root=str(out.parent), run_name=out.name)
    return start_run(
        out.name,
        config=config,
        resume=RunPaths(out).run_file.is_file(),
        checkpoint_dir=out,
        params={"pipeline": cfg.resolved()},
        tags={"pipeline": "M0-M1-RM-M2", "pipeline.method": cfg.preference.method, "pipeline.seed": cfg.seed},
        health=HealthConfig.from_mapping(cfg.health),
    )


def _run_stages(s: PipelineState) -> None:
    """Run the configured stages in order, each loaded by name from the plugin registry."""
    from codex_ml.pipeline.loop import StageContext
    from codex_ml.plugins.select import load

    for name in s.cfg.stages:
        key = _BUILTIN.get(name, name)  # built-ins are recorded as M0/M1/RM/M2
        stage = load("pipeline_stages", name)
        ctx = StageContext(s.run, _PREFIX.get(key, name), s.seed(key), s.progress)
        began = time.perf_counter()
        metrics = stage(s, ctx)
        if key not in s.stages:  # a plugin stage: the runner records what it returned
            s.stages[key] = {"status": "trained", "seconds": round(time.perf_counter() - began, 3),
                             "seed": ctx.seed, "metrics": dict(metrics or {})}  # fmt: skip
            s.run.set_tags({f"pipeline.stage.{key}": "trained"})


def _stage(s: PipelineState, name: str, model: Any, section: Any, deps: tuple[str, ...], train: Callable[[], dict],
           ctx: Any) -> None:  # fmt: skip
    """Reuse the stage's verified checkpoint, or train it and save checkpoint + marker."""
    from codex_ml.pipeline.store import MARKER_FILE, fingerprint, read_verified_marker, save_stage, stage_state
    from codex_ml.training.checkpoints import load_model_state

    directory = RunPaths(s.out).checkpoints / name
    seed = s.seed(name)
    fp = fingerprint({
        "stage": name, "section": dataclasses.asdict(section), "model": dataclasses.asdict(s.cfg.model),
        "seed": seed, "val_fraction": s.cfg.val_fraction, "deps": {d: s.hashes[d] for d in deps},
    })
    marker, why = (None, "--force") if s.cfg.force else read_verified_marker(directory, fp)
    if marker is not None:
        load_model_state(model, stage_state(directory, marker)["model"], str(directory))
        record = {**marker["record"], "status": "reused"}
        _note(s, f"{name}: checkpoint verified, stage skipped (use --force to retrain)")
    else:
        _note(s, f"{name}: training ({why})")
        (directory / MARKER_FILE).unlink(missing_ok=True)  # a crash from here on leaves no stale marker
        began = time.perf_counter()
        metrics = train()
        record = {"status": "trained", "seconds": round(time.perf_counter() - began, 3), "seed": seed,
                  "steps": section.steps, "metrics": metrics}
        path, marker = save_stage(directory, {"stage": name, "model": model.state_dict()}, section.steps,
                                  {"stage": name, "fingerprint": fp, "record": record})
        s.run.log_artifact(path, f"{name}-checkpoint.pt")
        s.run.log_artifact(directory / MARKER_FILE, f"{name}-stage.json")
    record.update(checkpoint=os.path.relpath(directory / marker["checkpoint"], s.out), sha256=marker["sha256"])
    s.hashes[name] = marker["sha256"]
    s.stages[name] = record
    s.run.set_tags({f"pipeline.stage.{name}": record["status"]})


def _note(s: PipelineState, message: str) -> None:
    if s.progress:
        print(f"[pipeline] {message}", file=sys.stderr)


def _report(s: PipelineState, status: str) -> dict[str, Any]:
    """The pipeline part of summary.json."""
    from codex_ml.pipeline.summary import acceptance, package_versions

    pending = [_BUILTIN.get(name, name) for name in s.cfg.stages if _BUILTIN.get(name, name) not in s.stages]
    return {
        "pipeline_status": status,
        "failed_stage": pending[0] if pending and status != "FINISHED" else None,
        "stages": s.stages,
        "acceptance": acceptance(s.stages, s.cfg.preference.method),
        "inputs": s.inputs.files,
        "seed": s.cfg.seed,
        "stage_seeds": {key: s.seed(key) for key in (_BUILTIN.get(name, name) for name in s.cfg.stages)},
        "config": s.cfg.resolved(),
        "versions": package_versions(),
    }
