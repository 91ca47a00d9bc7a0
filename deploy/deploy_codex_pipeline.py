#!/usr/bin/env python
"""Run the four-stage pipeline (M0 pretrain -> M1 SFT -> RM -> M2) on JSONL inputs.

    python deploy/deploy_codex_pipeline.py --output-dir runs/pipeline          # bundled data
    python deploy/deploy_codex_pipeline.py --corpus c.jsonl --demos d.jsonl --prefs p.jsonl \\
        --output-dir out --enable-wandb --mlflow-enable --method dpo sft.steps=500

Settings come from the defaults, then ``--config FILE``, then the flags, then ``key=value``
overrides (e.g. ``pretrain.steps=200``). Re-running into the same ``--output-dir`` skips
stages whose checkpoints verify; ``--force`` retrains them. See docs/pipeline.md.
"""

from __future__ import annotations

import argparse
import sys

from codex_ml.errors import CodexMLError, print_error
from codex_ml.pipeline.config import METHODS, PipelineConfig, apply_overrides, load_config_file
from codex_ml.tracking.flags import add_tracking_arguments, tracking_config_from

_DEFAULTS = PipelineConfig()


def build_parser() -> argparse.ArgumentParser:
    """The command line: pipeline flags, stage overrides and the shared tracking flags."""
    parser = argparse.ArgumentParser(
        prog="deploy_codex_pipeline.py",
        description="Pretrain (M0), supervised fine-tune (M1), train a reward model (RM) and optimise "
        "the policy against it (M2), streaming every stage's metrics to the enabled sinks.",
        epilog="Overrides: any config key as section.key=value, e.g. pretrain.steps=200 model.n_embd=96 "
        "preference.kl_coef=0.1. Keys and defaults: configs/pipeline/default.yaml.",
    )
    group = parser.add_argument_group("pipeline")
    group.add_argument("--corpus", help=f"pretraining corpus: .txt, or JSONL of strings / {{\"text\"}} (default: {_DEFAULTS.corpus})")
    group.add_argument("--demos", help=f'SFT demos, JSONL {{"prompt","completion"}}; empty skips SFT (default: {_DEFAULTS.demos})')
    group.add_argument("--prefs", help=f'preference pairs, JSONL {{"prompt","chosen","rejected"}} or [prompt, a, b, label] (default: {_DEFAULTS.prefs})')
    group.add_argument("--output-dir", help=f"run directory: checkpoints, summary.json, metrics, sink files (default: {_DEFAULTS.output_dir})")
    group.add_argument("--seed", type=int, help=f"base random seed (default: {_DEFAULTS.seed})")
    group.add_argument("--config", metavar="FILE", help="YAML config (keys as in configs/pipeline/default.yaml)")
    group.add_argument("--force", action="store_true", default=None, help="retrain every stage even if its checkpoint verifies")
    group.add_argument("--method", choices=METHODS, help="M2 method: rloo (policy vs reward model, KL to M1) or dpo")
    group.add_argument("--no-progress", action="store_true", help="no progress bars or final table")
    group.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. sft.steps=500")
    # The run directory is --output-dir: --run-name/--output-root would only be refused.
    add_tracking_arguments(parser, exclude=("run_name", "output_root"))
    return parser


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    """Defaults < --config file < flags < key=value overrides."""
    data = load_config_file(args.config) if args.config else {}
    flags = {"corpus": args.corpus, "demos": args.demos, "prefs": args.prefs, "output_dir": args.output_dir,
             "seed": args.seed, "force": args.force}
    data.update({k: v for k, v in flags.items() if v is not None})
    if args.method:
        data.setdefault("preference", {})["method"] = args.method
    data = apply_overrides(data, args.overrides)
    return PipelineConfig.from_mapping(data, source=args.config or "pipeline config")


def main(argv: list[str] | None = None) -> int:
    """Parse, validate, run; a CodexMLError is one clear line and exit status 2.

    Flags, config and inputs are all checked before ``--output-dir`` is created.
    """
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        tracking = tracking_config_from(args)
        from codex_ml.pipeline.runner import run_pipeline

        summary = run_pipeline(config, tracking, progress=not args.no_progress)
    except CodexMLError as err:
        return print_error(err)
    return 0 if summary.get("pipeline_status") == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
