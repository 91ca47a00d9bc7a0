"""Runs query benchmark: `codex-ml runs query` over 1,000 runs next to MLflow's search_runs.

Run it::

    .venv/bin/python benchmarks/bench_runs_query.py                 # 1,000 runs x 10,000 steps x 5 metrics
    .venv/bin/python benchmarks/bench_runs_query.py --quick         # 50 runs x 200 steps, seconds
    .venv/bin/python benchmarks/bench_runs_query.py --runs 200 --steps 2000 --data-dir /scratch/rq

1. Writes N runs x S steps x M metrics in the run-directory format (runs_query_data.py) under
   ``--data-dir`` (default /tmp/codex-bench-runs-query/<N>x<S>x<M>); kept and reused by later
   invocations with the same shape (``shape.json`` marks a complete set).
2. Imports the same runs into an MLflow sqlite store (``mlflow.db`` beside them; params and
   each metric's last value, see runs_query_mlflow.py), also reused.
3. Asks "lr < 1e-3 and val/loss went below 1.8 at any point, or SFT runs whose grad norm ever
   exceeded 10" (runs_query_data.codex_where) and times it:

   - codex_ml through the console script, a new process each time, as a user runs it:
     cold = ``ROOT/.codex-index`` deleted first (the index build is included), warm = index
     present (median of ``--repeat``); and in this process (``query_command``, best/median);
   - MLflow, weaker question: the nearest filter ``search_runs`` accepts (3 AND-only searches
     on last values, united) in this process (warm, best/median) and in a new Python process
     (cold: import, open, search);
   - MLflow, same question: what an MLflow user must do for OR + min/max over the history:
     ``search_runs`` on each OR branch's params/tags part, then ``get_metric_history`` of the
     aggregated metric per candidate run, min/max in Python, united; against a copy of the
     store (``mlflow_history.db``) holding the full curves of the two aggregated metrics,
     bulk-loaded into MLflow's ``metrics`` table (runs_query_mlflow.add_histories); warm =
     best/median of min(--repeat, 3), and in a new process.

Then checks the answers: codex_ml's and MLflow's same-question answer must equal the
generator's (min/max over every step); the same codex query on ``.last`` must equal MLflow's
search_runs answer and the generator's last-value answer.
Stdout is Markdown for docs/benchmarks.md, progress goes to stderr. A missed time target prints
MISS (exit status 0); answers that disagree print DISAGREE and exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import runs_query_data as data  # noqa: E402 - the sibling modules live beside this script
import runs_query_mlflow as mlf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WARM_TARGET_S, COLD_TARGET_S, RATIO_TARGET = 2.0, 30.0, 20.0
INDEX_DIR = ".codex-index"


def log(message: str) -> None:
    """Progress on stderr (stdout is the Markdown result)."""
    print(f"[bench_runs_query] {message}", file=sys.stderr, flush=True)


def timed(repeat: int, action: Callable[[], object]) -> tuple[list[float], object]:
    """Wall seconds of ``repeat`` calls, and the last call's result."""
    walls, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = action()
        walls.append(time.perf_counter() - began)
    return walls, result


def names_of(ids: set[str]) -> set[str]:
    """Run names of run ids (paths under the root); the generator's names are unique."""
    return {i.rsplit("/", 1)[-1] for i in ids}


# -- MLflow ---------------------------------------------------------------------------
def ensure_store(data_dir: Path, root: Path, shape: dict) -> tuple[str, float, bool]:
    """The sqlite store's URI, its import time and whether it was reused (``mlflow.json`` marks it)."""
    db, marker = data_dir / "mlflow.db", data_dir / "mlflow.json"
    uri = f"sqlite:///{db}"
    if marker.exists() and db.exists():
        saved = json.loads(marker.read_text())
        if saved.get("shape") == shape:
            return uri, saved["import_s"], True
    marker.unlink(missing_ok=True)
    db.unlink(missing_ok=True)
    log(f"importing the runs into {uri} (params + last value per metric) ...")
    seconds, count = mlf.import_runs(root, uri)
    marker.write_text(json.dumps({"shape": shape, "import_s": seconds, "runs": count}))
    return uri, seconds, False


def mlflow_side(uri: str, repeat: int, cold_repeat: int) -> dict:
    """search_runs warm (this process) and cold (a new process each): times and the union's names."""
    client, exp_id = mlf.open_store(uri)
    filters = data.mlflow_filters()
    mlf.search(client, exp_id, filters)  # first call: SQLAlchemy engine, caches
    warm, ids = timed(repeat, lambda: mlf.search(client, exp_id, filters))
    cold, inner = [], []
    for _ in range(cold_repeat):
        began = time.perf_counter()
        out = subprocess.run([sys.executable, str(Path(mlf.__file__)), "search", uri],
                             check=True, capture_output=True, text=True).stdout
        cold.append(time.perf_counter() - began)
        inner.append(json.loads(out.strip().splitlines()[-1]))
    if set(inner[-1]["ids"]) != ids:
        raise SystemExit("MLflow: the new process found other runs than this one")
    return {"warm": warm, "cold": cold, "cold_search": [r["search_s"] for r in inner],
            "cold_open": [r["open_s"] for r in inner], "names": names_of(ids), "calls": len(filters)}


def ensure_history_store(data_dir: Path, root: Path, uri: str, shape: dict) -> tuple[str, float, int, bool]:
    """A copy of the store plus the full curves of the aggregated metrics (``mlflow_history.db``):
    its URI, load seconds, rows and whether it was reused (``mlflow_history.json`` marks it)."""
    db, marker = data_dir / "mlflow_history.db", data_dir / "mlflow_history.json"
    if marker.exists() and db.exists():
        saved = json.loads(marker.read_text())
        if saved.get("shape") == shape:
            return f"sqlite:///{db}", saved["load_s"], saved["rows"], True
    marker.unlink(missing_ok=True)
    shutil.copyfile(uri.removeprefix("sqlite:///"), db)
    log(f"bulk-loading the curves of {', '.join(mlf.HISTORY_KEYS)} into {db} ...")
    seconds, rows = mlf.add_histories(root, db)
    marker.write_text(json.dumps({"shape": shape, "load_s": seconds, "rows": rows}))
    return f"sqlite:///{db}", seconds, rows, False


def mlflow_history_side(uri: str, root: Path, repeat: int, cold_repeat: int) -> dict:
    """The same question in MLflow (search_runs on params/tags + get_metric_history, min/max in
    Python): warm in this process (best/median of ``repeat``) and in a new process each."""
    client, exp_id = mlf.open_store(uri)
    first = client.search_runs([exp_id], "", max_results=1)[0].info.run_id
    mlf.check_history(client, root, first)  # MLflow reads the bulk-loaded curve back as it is on disk
    branches = data.mlflow_branches()
    warm, (ids, calls) = timed(repeat, lambda: mlf.same_question(client, exp_id, branches))
    cold, inner = [], []
    for _ in range(cold_repeat):
        began = time.perf_counter()
        out = subprocess.run([sys.executable, str(Path(mlf.__file__)), "history", uri],
                             check=True, capture_output=True, text=True).stdout
        cold.append(time.perf_counter() - began)
        inner.append(json.loads(out.strip().splitlines()[-1]))
    if set(inner[-1]["ids"]) != ids:
        raise SystemExit("MLflow history: the new process found other runs than this one")
    return {"warm": warm, "cold": cold, "cold_search": [r["search_s"] for r in inner],
            "cold_open": [r["open_s"] for r in inner], "names": names_of(ids), "calls": calls}


# -- codex_ml ------------------------------------------------------------------------
def codex_cli(root: Path, where: str) -> tuple[float, set[str]]:
    """One ``codex-ml runs query ROOT --where ... --json`` in a new process: wall seconds, run names."""
    script = REPO / ".venv" / "bin" / "codex-ml"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "codex_ml.cli"]
    began = time.perf_counter()
    done = subprocess.run([*command, "runs", "query", str(root), "--where", where, "--json"],
                          capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"codex-ml runs query failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return wall, {row["name"] for row in json.loads(done.stdout)}


def codex_in_process(root: Path, where: str) -> set[str]:
    """``query_command`` in this process (what the console script runs), output captured."""
    from codex_ml.runs.query_command import query_command

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        query_command(root, where=where, sort=None, limit=None, json_output=True, csv_output=False, columns=None)
    return {row["name"] for row in json.loads(buffer.getvalue())}


def drop_index(root: Path) -> None:
    """Delete the root's index, so the next query builds it (a cold query)."""
    shutil.rmtree(root / INDEX_DIR, ignore_errors=True)


def codex_side(root: Path, repeat: int, cold_repeat: int, profile: bool) -> dict:
    """codex_ml cold and warm, through the console script and in this process."""
    where, where_last = data.codex_where(), data.codex_where(aggregate=False)
    cold = []
    for _ in range(cold_repeat):
        drop_index(root)
        wall, names = codex_cli(root, where)
        cold.append(wall)
    warm_cli = [codex_cli(root, where)[0] for _ in range(repeat)]
    _, names_last = codex_cli(root, where_last)
    drop_index(root)
    in_cold, _ = timed(1, lambda: codex_in_process(root, where))
    codex_in_process(root, where)  # first warm call: imports settled
    in_warm, in_names = timed(repeat, lambda: codex_in_process(root, where))
    if in_names != names:
        raise SystemExit("codex_ml: in-process and console-script answers differ")
    if profile:
        profile_codex(root, where)
    return {"cold": cold, "warm": warm_cli, "in_cold": in_cold, "in_warm": in_warm,
            "names": names, "names_last": names_last}


def profile_codex(root: Path, where: str) -> None:
    """cProfile of one cold and one warm in-process query, top functions on stderr."""
    import cProfile
    import pstats

    for label in ("cold", "warm"):
        if label == "cold":
            drop_index(root)
        profiler = cProfile.Profile()
        profiler.runcall(codex_in_process, root, where)
        log(f"profile, {label} query (cumulative):")
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(25)


# -- report --------------------------------------------------------------------------
def machine() -> dict:
    """Cores, CPU model, load and versions: the context the figures were taken in."""
    import duckdb
    import mlflow

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), "?") if Path("/proc/cpuinfo").exists() else "?"
    return {"cpus": os.cpu_count(), "cpu": model, "load": os.getloadavg(), "python": sys.version.split()[0],
            "duckdb": duckdb.__version__, "mlflow": mlflow.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def _s(walls: list[float]) -> str:
    return f"{min(walls):.3f} s / {statistics.median(walls):.3f} s"


def print_report(args: argparse.Namespace, ctx: dict, codex: dict, mlflow: dict, history: dict,
                 answers: dict) -> None:
    """The Markdown block for docs/benchmarks.md."""
    m = ctx["machine"]
    print(f"- {m['date']}; {m['cpus']} CPUs ({m['cpu']}); load average {m['load'][0]:.2f} at the start, "
          f"{os.getloadavg()[0]:.2f} at the end; Python {m['python']}, DuckDB {m['duckdb']}, MLflow {m['mlflow']}")
    gen = "reused" if ctx["generate_s"] is None else f"written in {ctx['generate_s']:.1f} s"
    imp = f"{ctx['import_s']:.1f} s" + (" (reused store; time of its import)" if ctx["import_reused"] else "")
    print(f"- data: {args.runs:,} runs x {args.steps:,} steps x {args.metrics} metrics = "
          f"{args.runs * args.steps * args.metrics:,} points, {ctx['bytes'] / 1e6:,.1f} MB on disk ({gen}); "
          f"MLflow sqlite import of params + last values: {imp}")
    print(f"- codex_ml: `codex-ml runs query ROOT --json --where \"{data.codex_where()}\"`")
    print(f"- MLflow, weaker question (last values only): {mlflow['calls']} x `search_runs` (AND-only), united: "
          + "; ".join(f"`` {f} ``" for f in data.mlflow_filters()))
    hist = f"{ctx['history_load_s']:.1f} s" + (" (reused store; time of its load)" if ctx["history_reused"] else "")
    print("- MLflow, same question: `search_runs` on the params/tags part of each OR branch ("
          + "; ".join(f"`` {f} ``" for filters, *_ in data.mlflow_branches() for f in filters)
          + f"), then `get_metric_history` of the aggregated metric per candidate run ({history['calls']:,} calls), "
          f"min/max in Python, united; its store holds the full curves of {', '.join(mlf.HISTORY_KEYS)} "
          f"({ctx['history_rows']:,} rows bulk-loaded with sqlite3 into MLflow's metrics table in {hist})")
    print(f"- times: best / median of {args.repeat} (warm), of {args.cold_repeat} (cold); "
          f"page cache not dropped (cold = no index / a new MLflow process)\n")
    print("| measure | MLflow answers | codex_ml | MLflow | MLflow / codex_ml | codex_ml time | ratio |")
    print("|---|---|---|---|---|---|---|")
    rows = [("warm, in process", codex["in_warm"], WARM_TARGET_S, "warm"),
            ("warm, new process (index present / new Python)", codex["warm"], WARM_TARGET_S, "cold"),
            ("cold, new process (index deleted: build included)", codex["cold"], COLD_TARGET_S, "cold")]
    for side, what in ((history, "same question (search_runs + get_metric_history)"),
                       (mlflow, "weaker: last values (search_runs only)")):
        for label, ours, target, which in rows:
            theirs = side[which]
            ratio = statistics.median(theirs) / statistics.median(ours)
            fast = "PASS" if statistics.median(ours) <= target else "MISS"
            print(f"| {label} | {what} | {_s(ours)} | {_s(theirs)} | {ratio:.2f}x | {fast} (<= {target:.0f} s) "
                  f"| {'PASS' if ratio >= RATIO_TARGET else 'MISS'} (>= {RATIO_TARGET:.0f}x) |")
    print(f"| cold, in process (index build + query) | | {_s(codex['in_cold'])} | | | | |")
    for side, what in ((history, "same question"), (mlflow, "weaker question")):
        print(f"\nMLflow's new process, {what}: open (import + store) {statistics.median(side['cold_open']):.3f} s, "
              f"searches {statistics.median(side['cold_search']):.3f} s (median).")
    print()
    print("| answer | runs |")
    print("|---|---:|")
    for label, value in answers["rows"]:
        print(f"| {label} | {value:,} |")
    print(f"\nanswers: {'AGREE' if answers['agree'] else 'DISAGREE'} (codex_ml min/max = MLflow search_runs + "
          "get_metric_history = expected; codex_ml .last = MLflow search_runs = expected last-value answer)")


def check_answers(facts: list[dict], codex: dict, mlflow: dict, history: dict) -> dict:
    """Compare every answer with the generator's; the printed rows and the verdict."""
    by_id = {f["run_id"]: f["name"] for f in facts}
    want = {by_id[i] for i in data.expected_ids(facts)}
    want_last = {by_id[i] for i in data.expected_ids(facts, aggregate=False)}
    rows = [("codex_ml, min/max over every step (the question)", len(codex["names"])),
            ("expected from the generated curves", len(want)),
            ("codex_ml, the same query on .last", len(codex["names_last"])),
            ("MLflow search_runs union (last values)", len(mlflow["names"])),
            ("expected last-value answer", len(want_last)),
            ("MLflow search_runs + get_metric_history, min/max client-side (the question)", len(history["names"])),
            ("runs only the min/max question finds", len(want - want_last))]
    agree = (codex["names"] == history["names"] == want
             and codex["names_last"] == mlflow["names"] == want_last)
    return {"rows": rows, "agree": agree}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --quick shrinks the data and the repeats."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="runs (default 1,000; --quick: 50)")
    parser.add_argument("--steps", type=int, default=None, help="steps per run (default 10,000; --quick: 200)")
    parser.add_argument("--metrics", type=int, default=5, help="metrics per step (default 5)")
    parser.add_argument("--repeat", type=int, default=None, help="warm repeats (default 5; --quick: 2)")
    parser.add_argument("--cold-repeat", type=int, default=1, help="cold repeats (default 1)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="scratch dir for the runs and mlflow.db (default /tmp/codex-bench-runs-query/NxSxM)")
    parser.add_argument("--workers", type=int, default=None, help="generator processes (default: CPU count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="tiny data, for a smoke test")
    parser.add_argument("--profile", action="store_true", help="cProfile a cold and a warm query (stderr)")
    parser.add_argument("--out", type=Path, default=None, help="raw results as JSON")
    args = parser.parse_args(argv)
    args.runs = args.runs or (50 if args.quick else 1000)
    args.steps = args.steps or (200 if args.quick else 10_000)
    args.repeat = args.repeat or (2 if args.quick else 5)
    shape = f"{args.runs}x{args.steps}x{args.metrics}"
    args.data_dir = args.data_dir or Path("/tmp/codex-bench-runs-query") / shape
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse), import (or reuse), time both sides, print the tables."""
    args = parse_args(argv)
    ctx = {"machine": machine()}
    log(f"runs in {args.data_dir} ...")
    root, facts, ctx["generate_s"] = data.ensure_runs(args.data_dir, args.runs, args.steps, args.metrics,
                                                      args.seed, args.workers)
    ctx["bytes"] = data.disk_bytes(root)
    mlf.quiet()
    shape = {"runs": args.runs, "steps": args.steps, "metrics": args.metrics, "seed": args.seed,
             "format": data.FORMAT_VERSION}
    uri, ctx["import_s"], ctx["import_reused"] = ensure_store(args.data_dir, root, shape)
    log("MLflow search_runs ...")
    mlflow = mlflow_side(uri, args.repeat, args.cold_repeat)
    uri_h, ctx["history_load_s"], ctx["history_rows"], ctx["history_reused"] = ensure_history_store(
        args.data_dir, root, uri, shape)
    log("MLflow same question (search_runs + get_metric_history) ...")
    history = mlflow_history_side(uri_h, root, min(args.repeat, 3), args.cold_repeat)
    log("codex-ml runs query ...")
    codex = codex_side(root, args.repeat, args.cold_repeat, args.profile)
    answers = check_answers(facts, codex, mlflow, history)
    print_report(args, ctx, codex, mlflow, history, answers)
    if args.out:
        raw = {"args": {k: str(v) for k, v in vars(args).items()}, **ctx,
               "codex": {k: sorted(v) if isinstance(v, set) else v for k, v in codex.items()},
               "mlflow": {k: sorted(v) if isinstance(v, set) else v for k, v in mlflow.items()},
               "mlflow_history": {k: sorted(v) if isinstance(v, set) else v for k, v in history.items()},
               "answers": answers}
        args.out.write_text(json.dumps(raw, indent=1))
    return 0 if answers["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
