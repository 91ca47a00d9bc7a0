"""Health rules the training loop must act on before the optimizer step (actions ``skip``, ``rollback``).

Rules whose action is ``log`` or ``stop`` run on the run's writer thread (tracking/health_link.py):
seeing an event a second later is soon enough to log it or to stop at the next step. A rule whose
action is ``skip`` must decide before the offending update touches the weights, so the trainer
evaluates it itself, on the update's loss and gradient norm (two floats it already has), through
:class:`HealthGuard` — the same rule objects, fed the same ``train/loss``/``train/grad_norm``
values, so a backtest of the run finds the same events.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from codex_ml.errors import CodexMLError
from codex_ml.health.config import HealthConfig
from codex_ml.health.events import IN_LOOP_ACTIONS
from codex_ml.health.monitor import HealthMonitor
from codex_ml.rundir.records import METRICS

__all__ = ["HealthGuard", "HealthStopError", "health_config", "rewind_event", "stop_message"]

#: The exit status of a run a health rule stopped (1 is a crash, 2 a user error).
EXIT_HEALTH_STOP = 3


class HealthStopError(CodexMLError, RuntimeError):
    """A health rule with ``action: stop`` fired: the run was checkpointed and ended FAILED."""

    exit_code = EXIT_HEALTH_STOP

    def __init__(self, event: dict[str, Any], run_dir: Any, step: int) -> None:
        super().__init__(stop_message(event, run_dir, step))
        self.event = event


def stop_message(event: dict[str, Any], run_dir: Any, step: int) -> str:
    """The one line a stopped run ends with: what fired, where the checkpoint is, how to go on."""
    return (f"health rule {event['rule']!r} stopped the run after step {step}: {event['message']}. "
            f"A checkpoint of step {step} is in {run_dir}; resume with --resume {run_dir} "
            f"(or change health.{event['rule']}.action)")


def health_config(section: Any) -> HealthConfig:
    """A HealthConfig from a config's ``health:`` section (a mapping, None or a HealthConfig)."""
    return section if isinstance(section, HealthConfig) else HealthConfig.from_mapping(section)


class HealthGuard:
    """The in-loop rules of a config; ``allow(step, loss, grad_norm)`` is the Stepper's guard."""

    def __init__(self, config: HealthConfig, run: Any) -> None:
        others = [n for n, r in config.active().items() if r.get("action") not in IN_LOOP_ACTIONS]
        self.monitor = HealthMonitor(config, exclude=others)
        self.run = run
        #: Steps whose update was not applied.
        self.skipped: list[int] = []
        #: The event of a rule with ``action: rollback`` that refused the last update (the loop
        #: rewinds to the last good checkpoint, then clears it).
        self.rollback: Any = None

    @property
    def active(self) -> bool:
        """Whether any rule runs in the loop (no guard at all otherwise: zero cost)."""
        return bool(self.monitor.rules)

    def allow(self, step: int, loss: float, grad_norm: float) -> bool:
        """False (and the events logged) when an in-loop rule fires on this update."""
        record = (METRICS, step, time.time(), {"train/loss": loss, "train/grad_norm": grad_norm})
        events = self.monitor.observe(record)
        if not events:
            return True
        self.skipped.append(step)
        for event in events:
            if event.action == "rollback":
                self.rollback = event
                note = f"{event.message}; the update of step {step} was not applied, rolling back to the last checkpoint"
            else:
                note = f"{event.message}; the update of step {step} was skipped (its batch not applied)"
            self.run.log_event(dataclasses.replace(event, message=note))
        return False


def rewind_event(to_step: int, from_step: int, checkpoint: str) -> dict[str, Any]:
    """The ``rewind`` record of events.ndjson: metrics logged before it at steps after ``to_step``
    are superseded (docs/run-directory.md); readers show the surviving timeline."""
    return {"time": time.time(), "step": to_step, "rule": "rewind", "severity": "warning", "metric": None,
            "value": float(from_step), "threshold": None, "action": "rollback",
            "message": f"rewound from step {from_step} to the checkpoint of step {to_step} ({checkpoint}); "
                       f"the data of steps {to_step + 1}-{from_step} is skipped"}
