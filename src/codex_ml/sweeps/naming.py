"""The sweep's name and directory, settled before Hydra parses the command line.

A sweep lives in ``<sweep.root>/<sweep.name>`` (default ``sweeps/<name>``); each trial is a run
directory in it. Re-running the same command must find the same directory (that is how a killed
sweep resumes), so the default name is not a date like Hydra's ``multirun/<date>/<time>`` but is
derived from the command: ``<training config>-<8 hex digits of a hash of the overrides>``, e.g.
``tiny-3f2a9c1e``. ``hydra.sweeper.n_trials`` and ``n_jobs`` are left out of the hash, so asking
for more trials continues the same study. ``sweep.name=NAME`` (or ``tracking.sweep=NAME``) names it.
"""

from __future__ import annotations

import hashlib

__all__ = ["DEFAULT_ROOT", "default_sweep_name", "is_multirun", "with_sweep_name"]

DEFAULT_ROOT = "sweeps"
MULTIRUN_FLAGS = ("-m", "--multirun")
# Overrides that change how much of a sweep runs, not which sweep it is.
_NOT_HASHED = ("hydra.sweeper.n_trials", "hydra.sweeper.n_jobs")
_NAME_KEYS = ("sweep.name", "tracking.sweep")


def is_multirun(args: list[str]) -> bool:
    """Whether Hydra is asked for a multirun (``-m``/``--multirun``)."""
    return any(arg in MULTIRUN_FLAGS for arg in args)


def _key_value(arg: str) -> tuple[str, str]:
    key, _, value = arg.partition("=")
    return key.lstrip("+~"), value


def default_sweep_name(args: list[str]) -> str:
    """``<training config>-<hash of the overrides>``: the same command gives the same name."""
    training = "base"
    kept = []
    for arg in args:
        if arg.startswith("-"):
            continue  # Hydra flags (-m) and their order do not make another sweep
        key, value = _key_value(arg)
        if key.split("@")[0] == "training" and value:
            training = value
        if key not in _NOT_HASHED:
            kept.append(f"{key}={value}")
    digest = hashlib.sha1("\n".join(sorted(kept)).encode()).hexdigest()[:8]
    return f"{training}-{digest}"


def with_sweep_name(args: list[str]) -> tuple[list[str], str]:
    """``args`` with ``sweep.name`` set (from ``tracking.sweep``, else the default) and the name."""
    given = {key: value for key, value in map(_key_value, args) if key in _NAME_KEYS}
    name = given.get("sweep.name") or given.get("tracking.sweep") or default_sweep_name(args)
    if "sweep.name" in given:
        return args, name
    return [*args, f"++sweep.name={name}"], name
