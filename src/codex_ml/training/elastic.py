"""Elastic restarts under ``torchrun --max-restarts=N``: a restarted worker group continues its own run.

When a worker dies, torchrun stops every worker of the job and starts them again with the same
command line. The new workers must continue the run the job started, not refuse it ("a run
already exists") nor start a second one:

- **The run name** must be the same in every attempt: ``--run-name``, or else the rendezvous id
  (``--rdzv-id``, ``TORCHELASTIC_RUN_ID``). Without either (rdzv id ``none``) the job is refused
  before it trains: a restart could not find its run.
- **Which job made the run** is recorded by rank 0 in ``<run>/torchrun.json``: the rendezvous id and
  the torchrun agents (one per node: host, pid and start time of the worker's parent process) of
  every session. A later group continues the run only if it has the same rendezvous id and shares
  an agent with it: agents live for the whole job and survive a worker restart, so this holds for
  a restart and never for a new ``torchrun`` launch (its agents are new processes), which is
  refused as before. ``TORCHELASTIC_RESTART_COUNT`` alone cannot tell: only the node whose worker
  failed counts a restart; the other agents restart theirs as a "membership change" with count 0.
- **Continuing** is the ``--resume`` path (:func:`~codex_ml.training.components.find_resume_point`):
  the newest checkpoint, the same MLflow and W&B runs, sinks back-filled, steps after the checkpoint
  trained again but not logged twice. The run lock of a dead rank 0 is a ``flock``, which the kernel
  dropped with the process (:mod:`codex_ml.tracking.run_lock`).
- **A run that already finished** (a worker died after the close) is left as it is; the restarted
  workers exit 0.

The decision is rank 0's (it reads the shared run directory) and broadcast, so all ranks agree.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codex_ml.training.errors import TrainingError

__all__ = ["TORCHRUN_FILE", "ElasticLaunch", "ElasticPlan", "agent_id", "plan_elastic", "record_session", "say", "shared_store_warning"]

#: The file in the run directory that says which torchrun job made the run (see the module docstring).
TORCHRUN_FILE = "torchrun.json"
# Set by torchrun in every worker (torch.distributed.run's documentation).
_RUN_ID = "TORCHELASTIC_RUN_ID"
_RESTART_COUNT = "TORCHELASTIC_RESTART_COUNT"
_MAX_RESTARTS = "TORCHELASTIC_MAX_RESTARTS"
#: The rendezvous id torchrun uses when ``--rdzv-id`` is not given: not an identity.
_NO_ID = "none"


@dataclass(frozen=True)
class ElasticLaunch:
    """What torchrun tells a worker about restarts."""

    run_id: str
    restart_count: int
    max_restarts: int

    @classmethod
    def from_env(cls, environ: Any = os.environ) -> ElasticLaunch | None:
        """This worker's launch, or None unless torchrun may restart it (``--max-restarts`` > 0)."""
        if _RUN_ID not in environ or int(environ.get(_MAX_RESTARTS, "0") or 0) <= 0:
            return None
        return cls(environ[_RUN_ID], int(environ.get(_RESTART_COUNT, "0") or 0), int(environ[_MAX_RESTARTS]))

    def run_name(self, given: str | None) -> str:
        """``given``, else the rendezvous id; a TrainingError when there is neither."""
        if given:
            return given
        if self.run_id == _NO_ID:
            raise TrainingError("torchrun --max-restarts needs a run name that every restart finds again: pass "
                                "--run-name NAME, or give the job an id with torchrun --rdzv-id=ID (the run is then "
                                "named after it)")
        from codex_ml.rundir.paths import validate_run_name

        return validate_run_name(self.run_id)


@dataclass
class ElasticPlan:
    """What the workers of this group agreed to do with the run."""

    launch: ElasticLaunch
    run_name: str
    run_dir: Path
    action: Literal["new", "resume", "finished"]
    agents: list[str] = field(default_factory=list)  # one per rank (ranks of one node share theirs)
    restart_count: int = 0  # the highest TORCHELASTIC_RESTART_COUNT of the group's workers


def agent_id(pid: int | None = None) -> str:
    """``host:pid:start`` of the torchrun agent (this worker's parent), the same in every restart of a job.
    The start time (clock ticks since boot, Linux) keeps a reused pid from passing for the agent."""
    pid = os.getppid() if pid is None else pid
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = ""
    return f"{socket.gethostname()}:{pid}:{start}"


def plan_elastic(launch: ElasticLaunch, output_root: str, run_name: str | None, info: Any) -> ElasticPlan:
    """Agree on the run and on what to do with it (every rank calls this; rank 0 decides)."""
    import torch.distributed as dist

    name = launch.run_name(run_name)
    me = (agent_id(), launch.restart_count)
    everyone = [me]
    if info.enabled:
        everyone = [None] * info.world_size
        dist.all_gather_object(everyone, me)
    plan = ElasticPlan(launch, name, Path(output_root) / name, "new", [a for a, _ in everyone],
                       max(count for _, count in everyone))
    box: list[Any] = [None]
    if info.is_main:
        try:
            box = [_decide(plan)]
        except Exception as exc:  # noqa: BLE001 - every rank must hear of it, or the others wait
            box = [exc]
    if info.enabled:
        dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise box[0] if info.is_main else TrainingError(f"rank 0 could not check the run: {box[0]}")
    plan.action = box[0]
    return plan


def _decide(plan: ElasticPlan) -> str:
    """``resume`` when this job made the run, ``finished`` when it also closed it; else ``new``
    (and if the run exists, opening it is refused as for any existing run)."""
    from codex_ml.rundir.run_files import read_json, read_run_json

    state = read_run_json(plan.run_dir)
    if not state:
        return "new"
    made = read_json(plan.run_dir / TORCHRUN_FILE)
    if made.get("rdzv_id") != plan.launch.run_id or not set(made.get("agents", [])) & set(plan.agents):
        return "new"
    return "finished" if state.get("status") == "FINISHED" else "resume"


def record_session(plan: ElasticPlan, world_size: int) -> None:
    """Add this session's agents to ``torchrun.json`` (rank 0, with the run open: it holds the run lock)."""
    from codex_ml.rundir.run_files import read_json, write_json_atomic

    path = plan.run_dir / TORCHRUN_FILE
    made = read_json(path) if plan.action == "resume" else {}
    session = {"started": time.time(), "restart_count": plan.restart_count, "world_size": world_size,
               "agents": sorted(set(plan.agents))}
    write_json_atomic(path, {
        "rdzv_id": plan.launch.run_id, "max_restarts": plan.launch.max_restarts,
        "agents": sorted(set(made.get("agents", [])) | set(plan.agents)),
        "sessions": [*made.get("sessions", []), session],
    })


def shared_store_warning(environ: Any = os.environ) -> str | None:
    """A warning when the workers share torchrun's rendezvous store (torch's default since 2.4): its
    keys are not renewed per restart, so a restarted worker can read the dead group's addresses and
    fail to connect, which costs a restart. ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives every round
    a new store."""
    if environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    return ("[train] warning: torchrun shares its rendezvous store with the workers, and a restarted worker may "
            "then read the addresses of the group that died (connectFullMesh ... Connection refused), using up a "
            "restart; set TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun on every node (docs/training.md)")


def say(plan: ElasticPlan, step: int | None = None) -> None:
    """One line on stderr saying what the restarted group does (rank 0)."""
    where = f"torchrun restart (TORCHELASTIC_RESTART_COUNT up to {plan.restart_count}) of job {plan.launch.run_id!r}"
    if plan.action == "finished":
        print(f"[train] {where}: {plan.run_dir} already finished; nothing to train", file=sys.stderr, flush=True)
    elif plan.action == "resume":
        at = "step 0 (it had no checkpoint)" if not step else f"its checkpoint of step {step}"
        print(f"[train] {where}: continuing {plan.run_dir} from {at} in the same run and tracking runs",
              file=sys.stderr, flush=True)
