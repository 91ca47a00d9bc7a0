"""``codex-ml runs compare A B C [--metric KEY ...] [-o cmp.png] [--json]`` (docs/runs.md).

The params that differ between the runs, each compared metric's last / min / max per run, and with
``-o`` one image of the runs' curves overlaid, a panel per metric. The pieces: ``compare_data``
(reading the runs, what differs, the statistics), ``compare_plot`` (the image, spikes kept) and
``compare_render`` (the tables). matplotlib and rich are imported only when used.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codex_ml.rundir.encoding import json_safe
from codex_ml.runs.compare_data import CompareError, ComparedRun, comparison, open_runs, pick_metrics

__all__ = ["CompareError", "compare_command"]


def compare_command(runs: list[Path], *, metrics: list[str], out: Path | None, json_output: bool) -> None:
    """Print the differing params and a last/min/max table per metric (or, with ``json_output``, the
    same as JSON); with ``out``, also write the overlaid curves there. User errors raise CompareError."""
    opened = open_runs(runs)
    _warn_unreadable(opened)
    chosen, left_out = pick_metrics(opened, metrics)
    result = comparison(opened, chosen, left_out)
    panels = None
    if out is not None:
        from codex_ml.runs.compare_plot import write_image

        panels = write_image(opened, chosen, out)
        result["image"] = str(out)
    if json_output:
        # NaN/Inf spelled as in the run directory ("NaN", "Infinity"), so the output is strict JSON.
        print(json.dumps(json_safe(result), indent=2, default=str))
        return
    from codex_ml.runs.compare_render import render

    render(opened, result, panels)


def _warn_unreadable(runs: list[ComparedRun]) -> None:
    """One stderr line per run whose metrics file had lines the loader skipped (stdout stays clean for --json).
    A torn last line is not reported: a running run's file usually ends mid-write."""
    for run in runs:
        bad = run.data.report.bad_lines if run.data is not None else []
        if bad:
            line, why = bad[0]
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            print(f"warning: {run.data.path}:{line}: {why}; skipped{more}", file=sys.stderr)
