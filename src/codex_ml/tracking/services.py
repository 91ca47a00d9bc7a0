"""Run services that live in a higher layer, bound by name when first used.

``start_run`` starts two things it does not own: the system-metrics sampler
(``--system-metrics``) and the resume back-fill (replay of what a backend missed); close()
draws the curves a tracking server gets (closing_upload.py). All read the NDJSON back or
sample the machine, which is the monitoring layer's job; tracking
sits below monitoring and may not import it. So tracking names the service it needs here,
and the implementation is bound late — like a plugin's entry point — from a dotted
``module:attr`` default, or from whatever ``register`` put in its place (a test, a
program that brings its own sampler).

The contracts (what start_run and close call):

- ``system_sampler(config, run, checkpoint_dir) -> sampler | None``: start the sampler for
  ``run`` (``sampler.stop()`` is called by ``Run.close``); None when there is nothing to sample.
- ``resume_backfill(run_dir, kind, *, tracking_uri, experiment, progress, before=None) -> result``:
  send into backend ``kind`` the points of the run's NDJSON it does not hold (only those logged
  before wall time ``before`` when given); ``result.sent`` is how many were sent. The trainer
  calls it for a sink it delivers itself, a sink process (sink_host.py) for its own sink.
- ``run_plot(paths, output)``: draw the curves of the run directories ``paths`` into the PNG
  ``output`` (closing_upload.py: the plot a tracking server gets at close).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

SYSTEM_SAMPLER = "system_sampler"
RESUME_BACKFILL = "resume_backfill"
RUN_PLOT = "run_plot"

#: The default implementation of each service, by dotted path (nothing is imported until used).
DEFAULTS = {
    SYSTEM_SAMPLER: "codex_ml.monitoring.system_metrics:start_for_run",
    RESUME_BACKFILL: "codex_ml.monitoring.replay:replay",
    RUN_PLOT: "codex_ml.monitoring.plot:plot",
}

_registered: dict[str, Callable[..., Any]] = {}


def register(name: str, implementation: Callable[..., Any] | None) -> None:
    """Use ``implementation`` for service ``name`` from now on (None: back to the default)."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown tracking service {name!r}; known: {', '.join(DEFAULTS)}")
    if implementation is None:
        _registered.pop(name, None)
    else:
        _registered[name] = implementation


def service(name: str) -> Callable[..., Any]:
    """The implementation of service ``name``: the registered one, else the default (imported now)."""
    if name in _registered:
        return _registered[name]
    module, _, attr = DEFAULTS[name].partition(":")
    return getattr(importlib.import_module(module), attr)
