"""codex_ml's Hydra sweeper plugin (hydra/sweeper=optuna); see codex_ml_sweeper.py and docs/sweeps.md."""
