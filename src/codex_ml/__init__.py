"""codex_ml: train small language models and watch them train.

Importing this package is cheap on purpose: it loads no torch, mlflow, wandb or
tensorboard. The tracking entry point is re-exported lazily::

    import codex_ml
    with codex_ml.start_run(run_name="demo") as run:
        run.log_metrics({"loss": 1.0}, step=0)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "start_run", "CodexMLError"]

from codex_ml.errors import CodexMLError


def __getattr__(name: str) -> Any:
    # Lazy so that `import codex_ml` stays light even if tracking grows imports.
    if name == "start_run":
        from codex_ml.tracking import start_run

        return start_run
    raise AttributeError(f"module 'codex_ml' has no attribute {name!r}")
