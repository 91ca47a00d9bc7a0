"""Sweeps: Hydra multirun and Optuna trials, each a complete run under ``sweeps/<sweep>/<trial>``.

See docs/sweeps.md. A killed sweep resumes when the same command is run again: finished trials
are not re-run and the interrupted one continues from its checkpoint.
"""
