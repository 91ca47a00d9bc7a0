"""The four-stage pipeline: M0 pretrain -> M1 SFT -> RM reward model -> M2 preference optimisation.

Entry points: ``deploy/deploy_codex_pipeline.py`` (argparse), ``python -m codex_ml.cli.main
pipeline=default`` (Hydra, via :func:`codex_ml.pipeline.runner.run_from_hydra`) and
:func:`codex_ml.pipeline.runner.run_pipeline` from Python. Submodules import torch; this
package module does not, so ``import codex_ml.pipeline`` stays light.
"""

from __future__ import annotations

__all__: list[str] = []
