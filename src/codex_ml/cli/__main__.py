"""``codex-ml`` (the console script) and ``python -m codex_ml.cli``.

Kept small on purpose: the two read-back commands users run most often in a new process
(``monitoring inspect`` and ``monitoring export``) go through ``codex_ml.cli.lean`` without
building the Typer app; every other command line, ``--help`` and every usage error go to the
Typer app in ``codex_ml.cli.app``. ``app`` is still importable from here (tests and tools use
``from codex_ml.cli.__main__ import app``); it is built on first access.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``--system-metrics`` with no value means AUTO).

    A bad command line (unknown option, value of the wrong type or out of range) is one
    ``error:`` line and exit status 2, like every other user error; exits via SystemExit.
    Called without ``argv`` (the console script), a successful ``monitoring inspect`` or
    ``export`` to a file ends the process with ``os._exit(0)`` once its output is flushed
    (``codex_ml.cli.lean``), so code after ``main()`` does not run then.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    from codex_ml.cli import lean

    if lean.run(args, end_process=argv is None):
        sys.exit(0)
    from codex_ml.cli.app import run

    run(args)


def __getattr__(name: str) -> Any:
    # The Typer app, built when first asked for (importing this module must stay light).
    if name == "app":
        from codex_ml.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    main()
