"""Command-line entry points: ``codex-ml`` / ``python -m codex_ml.cli`` (Typer)."""
