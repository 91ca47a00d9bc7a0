"""``hydra/sweeper=optuna`` for codex_ml: Hydra's Optuna sweeper plus pruning and resume.

Selected by configs/hydra/sweeper/codex_optuna.yaml; the CLI (codex_ml.cli.main) maps the
documented ``hydra/sweeper=optuna`` to it, because a config named ``optuna`` would clash with the
stock plugin's schema of that name. Every option of the stock sweeper is kept; ``pruner`` is
added. The loop itself is codex_ml.sweeps.optuna_sweep (docs/sweeps.md); this module stays a
thin adapter so that Hydra's plugin scan (it imports every module under ``hydra_plugins``)
costs nothing.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class CodexOptunaSweeper(OptunaSweeper):
    """The stock OptunaSweeper with a ``pruner`` and codex_ml's resumable loop."""

    def __init__(self, sampler: Any, pruner: Any = None, **options: Any) -> None:
        from codex_ml.sweeps.optuna_sweep import build_quietly

        # The config says _recursive_: false, so the sampler is built here: the stock TPE config passes
        # options Optuna 4.9+ deprecates (one FutureWarning each, on every sweep).
        super().__init__(sampler=build_quietly(sampler), **options)
        self.pruner = build_quietly(pruner)

    def sweep(self, arguments: list[str]) -> None:
        """Run (or continue) the study: see codex_ml.sweeps.optuna_sweep."""
        from codex_ml.sweeps.optuna_sweep import run_sweep

        run_sweep(self.sweeper, arguments, self.pruner)
