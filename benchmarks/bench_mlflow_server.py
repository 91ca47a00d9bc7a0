"""MLflow tracking server benchmark: points/s into one server from 1, 4 and 16 concurrent runs, delay from the
log call to the point being visible, and what a log call costs the training thread while the server is loaded.

    .venv/bin/python benchmarks/bench_mlflow_server.py                       # Postgres via scripts/mlflow_server.sh
    .venv/bin/python benchmarks/bench_mlflow_server.py --server sqlite       # a plain sqlite-backed mlflow server
    .venv/bin/python benchmarks/bench_mlflow_server.py --tracking-uri http://127.0.0.1:5000   # an existing one
    .venv/bin/python benchmarks/bench_mlflow_server.py --quick               # smoke run, under a minute
    .venv/bin/python benchmarks/bench_mlflow_server.py --runs "" --trainer-load 15 --trainer-budget 480  # trainer only

Every run is a separate process (a pool per number of runs). Each number of runs is measured with:

- ``burst`` cases (throughput): codex_ml (``start_run`` with only the MLflow sink on, plus the NDJSON log) queues
  ``--burst-points`` points over the runs and its sink thread sends them in ``log_batch`` calls of up to 1,000
  metrics; then MLflow's own ``MlflowClient.log_batch`` with batches of each ``--mlflow-batches`` size (1,000 is
  what codex_ml sends; 10 and 500 are the published reference's sizes), synchronous, time-boxed.
- ``paced`` cases (training-like): ``--rate`` steps/s of 10 scalars per run for ``--paced-seconds``; every log
  call timed (codex_ml's ``log_metrics`` vs one ``log_batch`` of 10 per step); a reader process polls
  ``get_metric_history`` of ``--probe-runs`` runs for the delay from log call to visible.

- ``--trainer-load N``: then benchmarks/bench_trainer.py (``--sinks mlflow``, 1 thread) with its MLflow sink on the
  server while N paced codex_ml runs log into it: the training throughput cost under a loaded server.

After each case every run's every key is read back: the count and the set of steps must be exact. The 1-minute
load average is printed with each figure (the machine may be shared). See docs/benchmarks.md#mlflow-tracking-server.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow_server_host as host  # noqa: E402 - the sibling modules live beside this script
import mlflow_server_load as load  # noqa: E402

#: Published reference (mlflow-go-backend benchmarks: MLflow on PostgreSQL, 20 clients, k6): points/s by batch.
REFERENCE = {10: 3_400, 500: 8_400}


class Pool:
    """``runs`` writer processes and one reader, alive for every case with that many runs."""

    def __init__(self, runs: int, uri: str, root: Path) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
        self.runs, self.uri = runs, uri
        self.outbox, self.stop = ctx.Queue(), ctx.Event()
        self.barrier = ctx.Barrier(runs + 2)  # writers, the reader, this process
        self.inboxes = [ctx.Queue() for _ in range(runs + 1)]
        self.procs = [ctx.Process(target=load.writer_main, args=(i, uri, str(root), self.inboxes[i], self.outbox,
                                                                 self.barrier), daemon=True) for i in range(runs)]
        self.procs.append(ctx.Process(target=load.reader_main, daemon=True,
                                      args=(uri, self.inboxes[-1], self.outbox, self.barrier, self.stop)))
        for proc in self.procs:
            proc.start()

    def run(self, case: load.Case, probe_runs: int) -> dict[str, Any]:
        """One case: open the runs, start them together, collect the writers' and the reader's results."""
        for inbox in self.inboxes[:-1]:
            inbox.put(case)
        run_ids = dict(self._collect("ready", self.runs))
        reading = case.mode == "paced" and case.kind != "ndjson"
        self.inboxes[-1].put([run_ids[i] for i in sorted(run_ids)][:probe_runs] if reading else [])
        self.stop.clear()
        self.barrier.wait(load.BARRIER_TIMEOUT)
        writers = [result for _, result in self._collect("done", self.runs)]
        self.stop.set()
        reader = self._collect("read", 1)[0][1]
        return {"writers": writers, "reader": reader if reading else None}

    def _collect(self, kind: str, count: int) -> list[tuple[int, Any]]:
        out = []
        while len(out) < count:
            got, index, value = self.outbox.get(timeout=load.BARRIER_TIMEOUT * 2)
            if got == "error":
                self.barrier.abort()
                raise RuntimeError(f"{'reader' if index < 0 else f'writer {index}'} failed:\n{value}")
            if got != kind:
                raise RuntimeError(f"expected {kind!r} from the load processes, got {got!r}")
            out.append((index, value))
        return out

    def close(self) -> None:
        """Stop every process of the pool."""
        for inbox in self.inboxes:
            inbox.put(None)
        for proc in self.procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def cases(args: argparse.Namespace, runs: int) -> list[load.Case]:
    """Every case measured with ``runs`` concurrent runs, in order."""
    steps = max(1, args.burst_points // (runs * len(load.KEYS)))
    out = [load.Case("codex", "burst", runs, steps)]
    out += [load.Case("mlflow", "burst", runs, steps, batch=b, seconds=args.burst_seconds) for b in args.mlflow_batches]
    if args.rate > 0:
        kinds = ("ndjson", "codex", "mlflow") if args.ndjson_reference else ("codex", "mlflow")
        out += [load.Case(kind, "paced", runs, seconds=args.paced_seconds, rate=args.rate) for kind in kinds]
    return out


def measure(case: load.Case, pool: Pool, server: host.Server, args: argparse.Namespace) -> dict[str, Any]:
    """Run one case; its figures, the load average and the server's CPU seconds, the read-back check."""
    load_before, cpu_before = os.getloadavg()[0], server.cpu_seconds()
    raw = pool.run(case, args.probe_runs)
    cpu, load_after = server.cpu_seconds() - cpu_before, os.getloadavg()[0]
    writers = raw["writers"]
    began = min(w["began"] for w in writers)
    delivered = max(w["delivered"] for w in writers)
    points = sum(w["steps"] for w in writers) * len(load.KEYS)
    row = {"client": case.client, "kind": case.kind, "mode": case.mode, "runs": case.runs, "batch": case.batch,
           "points": points, "seconds": delivered - began, "points_s": points / (delivered - began),
           "load": (load_before + load_after) / 2, "server_cpu_s": cpu,
           "missing": read_back(pool.uri, writers), "complete": all(w["complete"] for w in writers),
           "errors": sum(w["errors"] for w in writers) + (raw["reader"] or {}).get("errors", 0)}  # fmt: skip
    if case.mode == "paced":
        calls = sorted(ns for w in writers for ns in w["calls_ns"])
        row.update(call_median_us=percentile(calls, 50) / 1e3, call_p99_us=percentile(calls, 99) / 1e3,
                   rate=case.rate, achieved_min=min(w["achieved"] for w in writers),
                   cpu_pct=100 * statistics.median(w["cpu_s"] / (w["logged"] - w["began"]) for w in writers),
                   **delay_figures(raw["reader"]))
    return row


def delay_figures(reader: dict[str, Any] | None) -> dict[str, Any]:
    """p50/p99 of the reader's delays (ms) and its poll gap (nan without a reader)."""
    if reader is None:
        reader = {"delays": [], "upper": [], "seen": 0, "poll_gap": float("nan"), "errors": 0}
    delays, upper = sorted(reader["delays"]), sorted(reader["upper"])
    return {"delay_p50_ms": percentile(delays, 50) * 1e3, "delay_p99_ms": percentile(delays, 99) * 1e3,
            "upper_p99_ms": percentile(upper, 99) * 1e3, "probes": reader["seen"],
            "poll_gap_ms": reader["poll_gap"] * 1e3}  # fmt: skip


def read_back(uri: str, writers: list[dict[str, Any]]) -> int:
    """Points missing or duplicated over every run and key (0: every point arrived exactly once)."""
    from mlflow.tracking import MlflowClient

    client, wrong = MlflowClient(tracking_uri=uri), 0
    for writer in writers:
        if writer["run_id"] is None:  # NDJSON only: no MLflow run
            continue
        for key in load.KEYS:
            steps = [m.step for m in client.get_metric_history(writer["run_id"], key)]
            wrong += abs(len(steps) - writer["steps"]) + (writer["steps"] - len(set(steps) & set(range(writer["steps"]))))
    return wrong


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def print_tables(rows: list[dict[str, Any]], args: argparse.Namespace, server: host.Server) -> None:
    """Markdown tables: throughput side by side with ratios, the paced cases, the published reference."""
    print(f"\n- server: {server.describe()}; {os.cpu_count()} CPUs; load average at the end "
          f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"- burst: {args.burst_points:,} points per case over the runs, 10 scalars per step; MLflow client time box "
          f"{args.burst_seconds:.0f} s; paced: {args.rate:g} steps/s per run for {args.paced_seconds:g} s")
    burst = [r for r in rows if r["mode"] == "burst"]
    print("\n| runs | client | points | seconds | points/s | codex_ml / this | server CPU ms per 1k points | "
          "missing | refused calls | load |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in burst:
        codex = next(c for c in burst if c["runs"] == r["runs"] and c["kind"] == "codex")
        print(f"| {r['runs']} | {r['client']} | {r['points']:,} | {r['seconds']:.1f} | {r['points_s']:,.0f} | "
              f"{codex['points_s'] / r['points_s']:.2f} | {1e6 * r['server_cpu_s'] / r['points']:.1f} | "
              f"{r['missing']} | {r['errors']} | {r['load']:.1f} |")
    print_paced([r for r in rows if r["mode"] == "paced"])
    print_reference(burst)


def print_paced(paced: list[dict[str, Any]]) -> None:
    """The paced cases: the log call's cost, the writer process's CPU, the delay until visible."""
    if paced:
        print("\n| runs | client | steps/s per run (slowest) | log call median us | p99 us | process CPU % | "
              "visible p50 ms | p99 ms | (bound p99) | probes | poll gap ms | missing | refused calls | load |\n"
              "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in paced:
            print(f"| {r['runs']} | {r['client']} | {r['achieved_min']:.2f} of {r['rate']:g} | "
                  f"{r['call_median_us']:,.1f} | {r['call_p99_us']:,.1f} | {r['cpu_pct']:.1f} | {r['delay_p50_ms']:,.0f} | "
                  f"{r['delay_p99_ms']:,.0f} | {r['upper_p99_ms']:,.0f} | {r['probes']} | {r['poll_gap_ms']:.0f} | "
                  f"{r['missing']} | {r['errors']} | {r['load']:.1f} |")


def print_reference(burst: list[dict[str, Any]]) -> None:
    """The published reference beside this run's same batch sizes at the most runs measured."""
    most = max((r["runs"] for r in burst), default=0)
    for batch, published in REFERENCE.items():
        ours = [r for r in burst if r["runs"] == most and r["kind"] == "mlflow" and r["batch"] == batch]
        if ours:
            print(f"- published reference, batch {batch}: ~{published:,} points/s (20 clients, k6); here "
                  f"MlflowClient b={batch} with {most} runs: {ours[0]['points_s']:,.0f} points/s "
                  f"({ours[0]['points_s'] / published:.2f}x)")


def trainer_under_load(args: argparse.Namespace, server: host.Server, root: Path) -> list[dict[str, Any]]:
    """bench_trainer.py's in-process alternation (tracked blocks with the MLflow sink on this server vs bare
    blocks) while ``--trainer-load`` paced codex_ml runs log into the same server; its table is printed as is."""
    import threading

    case = load.Case("codex", "paced", args.trainer_load, seconds=args.trainer_budget + 90, rate=args.rate)
    pool, rows = Pool(case.runs, server.uri, root / "runs"), []
    worker = threading.Thread(target=lambda: rows.append(measure(case, pool, server, args)), daemon=True)
    try:
        worker.start()
        time.sleep(10)  # the load is on before the trainer starts (it also takes seconds to import torch)
        command = [sys.executable, str(Path(__file__).with_name("bench_trainer.py")), "--sinks", "mlflow",
                   "--threads", "1", "--pairs", "200", "--budget-s", str(args.trainer_budget),
                   *(["--json", str(args.json)] if args.json else [])]  # fmt: skip
        env = os.environ | {"CODEX_BENCH_MLFLOW_URI": server.uri}
        print(f"trainer: {' '.join(command[1:])} with {case.runs} paced runs logging ...", file=sys.stderr, flush=True)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        worker.join()
    finally:
        pool.close()
    for row in rows:  # printed after the tables (main)
        row["trainer_output"] = (f"bench_trainer.py --sinks mlflow against the server while {case.runs} codex_ml runs "
                                 f"log into it at {args.rate:g} steps/s (the last paced row):\n\n"
                                 f"{_without_links(done.stdout) or done.stderr[-3000:]}")
    return rows


def _without_links(text: str) -> str:
    """The trainer's output without MLflow's "View run/experiment at" lines."""
    return "\n".join(line for line in text.strip().splitlines() if " at: http" not in line).strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=("script", "sqlite"), default="script",
                        help="start Postgres + mlflow server with scripts/mlflow_server.sh, or a sqlite-backed one")
    parser.add_argument("--tracking-uri", help="use this running server instead of starting one")
    parser.add_argument("--workers", type=int, default=1,
                        help="mlflow server --workers (under heavy load uvicorn's supervisor may kill extra workers)")
    parser.add_argument("--pool-size", type=int, default=0,
                        help="server database pool: MLFLOW_SQLALCHEMYSTORE_POOL_SIZE and _MAX_OVERFLOW for the server "
                             "started here (0: MLflow's default, 5 + 10 overflow per worker)")
    parser.add_argument("--runs", default="1,4,16", help="numbers of concurrent runs (processes), comma list")
    parser.add_argument("--burst-points", type=int, default=200_000, help="points per burst case, over all runs")
    parser.add_argument("--burst-seconds", type=float, default=40.0, help="MLflow client burst time box")
    parser.add_argument("--mlflow-batches", default="1000,500,10", help="MlflowClient.log_batch sizes (x10)")
    parser.add_argument("--rate", type=float, default=10.0, help="paced: steps/s per run (0: no paced cases)")
    parser.add_argument("--paced-seconds", type=float, default=20.0, help="paced: seconds per case")
    parser.add_argument("--no-ndjson-reference", dest="ndjson_reference", action="store_false",
                        help="paced: skip the codex_ml NDJSON-only rows (the hot path without any sink)")
    parser.add_argument("--probe-runs", type=int, default=2, help="paced: runs whose probe key the reader polls")
    parser.add_argument("--trainer-load", type=int, default=0,
                        help="also run bench_trainer.py (--sinks mlflow, 1 thread) against the server while this many "
                             "paced codex_ml runs log into it (e.g. 15)")
    parser.add_argument("--trainer-budget", type=float, default=300.0, help="seconds of trainer blocks")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 and 2 runs, small cases (< 1 minute)")
    parser.add_argument("--json", type=Path, help="also append the rows as JSON lines to this file")
    parser.add_argument("--keep", type=Path, help="keep the server's files and the runs under this directory")
    args = parser.parse_args(argv)
    if args.quick:  # smaller cases, except where an option was given
        quick = {"runs": "1,2", "burst_points": 4_000, "burst_seconds": 3.0, "mlflow_batches": "1000",
                 "paced_seconds": 2.0}
        for name, value in quick.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
    try:
        args.runs = [int(x) for x in args.runs.split(",") if x]  # --runs "" with --trainer-load: the trainer only
        args.mlflow_batches = [int(x) for x in args.mlflow_batches.split(",") if x]
    except ValueError:
        parser.error("--runs and --mlflow-batches take comma lists of whole numbers")
    if any(n < 1 for n in args.runs) or any(b < 10 or b % len(load.KEYS) for b in args.mlflow_batches):
        parser.error("--runs must be >= 1; --mlflow-batches sizes must be multiples of 10")
    return args


def main(argv: list[str] | None = None) -> int:
    """Start (or take) the server, measure every case, print the tables."""
    args = parse_args(argv)
    for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
        os.environ.pop(name)  # this benchmark's server only, with MLflow's default retries
    if args.pool_size:  # read by the server process the script (or SqliteServer) starts from this environment
        os.environ["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = os.environ["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] = str(args.pool_size)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        try:
            server = host.open_server(args.server, args.tracking_uri, root / "server", args.workers)
        except host.ServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        rows: list[dict[str, Any]] = []
        try:
            for runs in args.runs:
                pool = Pool(runs, server.uri, root / "runs")
                try:
                    for case in cases(args, runs):
                        print(f"{case.runs} runs, {case.client}, {case.mode} ...", file=sys.stderr, flush=True)
                        rows.append(measure(case, pool, server, args))
                        save(rows[-1], args.json)
                finally:
                    pool.close()
            if args.trainer_load:
                rows += trainer_under_load(args, server, root)
                save(rows[-1], args.json)
        finally:
            if rows:  # also when a case failed: what was measured is printed
                print_tables(rows, args, server)
                print("\n".join(f"\n{r['trainer_output']}" for r in rows if "trainer_output" in r))
                storage = server.storage()
                print(f"- storage: {storage}" if storage else "")
                save({"storage": storage}, args.json)
            server.stop()
    return 0 if all(r["missing"] == 0 for r in rows) else 1


def save(row: dict[str, Any], path: Path | None) -> None:
    """Append one row to the ``--json`` file as soon as it is measured (a later failure keeps it)."""
    if path:
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    sys.exit(main())
