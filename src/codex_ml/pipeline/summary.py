"""What a pipeline run reports: its summary.json sections (written by ``Run.close`` via ``add_summary``),
acceptance checks and the final table."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

__all__ = ["acceptance", "package_versions", "print_table"]

_PACKAGES = ("codex-ml", "torch", "numpy", "tokenizers", "mlflow", "wandb", "tensorboard")

# The headline metric of each stage: (split metric key, label, lower is better).
HEADLINE = {
    "M0": ("loss", "val loss"),
    "M1": ("completion_loss", "held-out completion loss"),
    "RM": ("accuracy", "held-out pair accuracy (ties count 0.5)"),
    "M2": ("reward", "held-out mean RM reward"),
}


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the results (installed ones only)."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


#: Held-out answer-accuracy gain over M1 that the bundled task asks of each method (issue 18).
ACCURACY_GAIN = {"rloo": 0.10, "dpo": 0.05}


def acceptance(stages: dict[str, dict[str, Any]], method: str = "rloo") -> dict[str, Any]:
    """The acceptance checks, computed from the stage results (``method``: M2's)."""
    checks: dict[str, Any] = {}
    m1 = stages.get("M1", {})
    if m1.get("status") in ("trained", "reused"):
        before, after = m1["metrics"]["initial"]["completion_loss"], m1["metrics"]["final"]["completion_loss"]
        checks["sft_lowers_completion_loss"] = {"M0": before, "M1": after, "ok": after < before}
    rm = stages.get("RM", {})
    if "metrics" in rm:
        final = rm["metrics"]["final"]
        checks["rm_heldout_accuracy"] = {"value": final["accuracy"], "ok": final["accuracy"] >= 0.75}
        if "accuracy_off_by_one" in final:  # the mistake a policy learns to exploit when the RM misses it
            checks["rm_sees_off_by_one"] = {"value": final["accuracy_off_by_one"], "ok": final["accuracy_off_by_one"] >= 0.9}
    m2 = stages.get("M2", {})
    if "metrics" in m2:
        initial, final = m2["metrics"]["initial"], m2["metrics"]["final"]
        checks["m2_raises_reward"] = {"M1": initial["reward"], "M2": final["reward"], "kl_to_M1": final["kl"],
                                      "ok": final["reward"] > initial["reward"]}  # fmt: skip
        if "answer_accuracy" in final:
            checks.update(_accuracy_checks(initial, final, method))
    return checks


def _accuracy_checks(initial: dict[str, float], final: dict[str, float], method: str) -> dict[str, Any]:
    """On checkable prompts: M2 must gain answer accuracy, and a reward that rises while accuracy
    falls is flagged as reward hacking (the policy pleases the RM with wrong answers)."""
    gain = final["answer_accuracy"] - initial["answer_accuracy"]
    target = ACCURACY_GAIN.get(method, 0.0)
    reward_up = final["reward"] > initial["reward"]
    return {
        "m2_raises_answer_accuracy": {"M1": initial["answer_accuracy"], "M2": final["answer_accuracy"], "gain": gain,
                                      "target_gain": target, "kl_to_M1": final["kl"], "ok": gain >= target},
        "no_reward_hacking": {"reward_up": reward_up, "accuracy_down": gain < 0, "ok": not (reward_up and gain < 0)},
    }


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_table(stages: dict[str, dict[str, Any]]) -> None:
    """A rich table: per stage its status, headline metric before -> after, and training time
    (a reused stage shows the time it took when it was trained)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="codex_ml pipeline")
    for column in ("stage", "status", "metric", "before", "after", "extra", "seconds"):
        table.add_column(column)
    for name in [n for n in HEADLINE if n in stages]:  # pipeline order (summary.json sorts its keys)
        record = stages[name]
        key, label = HEADLINE[name]
        metrics = record.get("metrics", {})
        before = metrics.get("initial", {}).get(key, "-")
        after = metrics.get("final", {}).get(key, "-")
        extra = {k: v for k, v in sorted(metrics.get("final", {}).items()) if k != key}
        extra_text = ", ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
        table.add_row(name, record["status"], label, _fmt(before), _fmt(after), extra_text, _fmt(record.get("seconds", 0.0)))
    console = Console(stderr=True)
    if not console.is_terminal:  # logs and CI: wide enough that the metrics are not cut
        console = Console(stderr=True, width=140)
    console.print(table)
