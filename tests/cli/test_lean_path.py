"""The console script's lean path (``codex_ml.cli.lean``) answers exactly as the Typer app does.

Each command line runs twice in this process: through ``main`` (the console script: lean path
when it can) and through ``codex_ml.cli.app.run`` (always Typer); exit status, stdout, stderr
and the written file must be the same. A subprocess proves the lean path never imports Typer,
click or pydantic.
"""

from __future__ import annotations

import gc
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from codex_ml.cli import lean
from codex_ml.cli.__main__ import main
from codex_ml.cli.app import run as typer_run
from codex_ml.rundir.encoding import encode_metrics
from codex_ml.tracking import start_run


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    metrics = tmp_path / "metrics.ndjson"
    metrics.write_bytes(b"".join(encode_metrics(s, 10.0 + s, {"loss": math.nan if s == 3 else 1.0 / (s + 1),
                                                              **({"acc": 0.5} if s % 2 else {})})
                                 for s in range(12)))  # fmt: skip
    with start_run("lean", output_root=tmp_path / "runs", flush_interval=0.05) as run:
        for step in range(5):
            run.log_metrics({"train/loss": 2.0 / (step + 1)}, step=step)
    return {"FILE": str(metrics), "RUN": str(run.paths.root), "OUT": str(tmp_path / "out"), "NOPE": str(tmp_path / "nope")}


# Command lines the lean path takes (OUT gets the suffix after it).
LEAN = [
    "monitoring inspect --json FILE",
    "monitoring inspect FILE --json RUN",
    "monitoring inspect RUN",
    "monitoring inspect NOPE --json",
    "monitoring export FILE OUT.csv",
    "monitoring export --wide FILE OUT.parquet --json",
    "monitoring export FILE --fmt=jsonl OUT.txt",
    "monitoring export -f csv RUN OUT.dat --wide",
    "monitoring export FILE",
    "monitoring export FILE OUT.xyz",
    "monitoring export RUN OUT.csv --system",
    "monitoring export FILE OUT.csv --fmt nope",
]
# Command lines left to Typer (help, usage errors, anything not plain).
TYPER = [
    "monitoring inspect",
    "monitoring inspect --help",
    "monitoring inspect --jsn FILE",
    "monitoring inspect --json=1 FILE",
    "monitoring inspect --json --json FILE",
    "monitoring inspect -- FILE",
    "monitoring export FILE OUT.csv extra",
    "monitoring export FILE OUT.csv --fmt",
    "monitoring export FILE OUT.csv --fmt --json",
    "monitoring export FILE OUT.csv -fcsv",
    "monitoring export --help",
    "monitoring tail FILE",
    "version",
]


def _argv(line: str, files: dict[str, str]) -> list[str]:
    words = line.split()
    return [next((files[k] + w[len(k):] for k in files if w.startswith(k)), w) for w in words]


def _outcome(entry: Callable[[list[str]], None], argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple:
    try:
        entry(argv)
        code = None
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    written = [Path(w) for w in argv if "out." in Path(w).name and Path(w).exists()]
    contents = [path.read_bytes() for path in written]
    for path in written:
        path.unlink()
    return code, captured.out, captured.err, contents


@pytest.mark.parametrize("line", LEAN + TYPER)
def test_same_answer_as_typer(line: str, files: dict[str, str], capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("COLUMNS", "150")  # rich's tables: the same width both times
    argv = _argv(line, files)
    assert (lean.parse(argv) is not None) == (line in LEAN)
    expected = _outcome(typer_run, argv, capsys)
    got = _outcome(main, argv, capsys)
    assert got == expected
    assert gc.isenabled()  # the lean path turns the collector off only while its command runs
    assert expected[0] in (0, 2, None)  # both ran to the end or stopped on a user error, never a crash


def test_lean_command_imports_no_typer(files: dict[str, str]) -> None:
    """A cold ``codex-ml monitoring inspect --json FILE`` loads neither Typer, click nor pydantic."""
    code = ("import sys\nfrom codex_ml.cli.__main__ import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print(','.join(m for m in ('typer', 'click', 'pydantic', 'rich') if m in sys.modules), file=sys.stderr)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, "monitoring", "inspect", "--json", files["RUN"]],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    assert '"records": 5' in done.stdout
    assert done.stderr.strip() == ""


def test_console_script_ends_after_flushing_everything(files: dict[str, str], tmp_path: Path) -> None:
    """``python -m codex_ml.cli`` (main() from sys.argv: the lean path ends the process itself)
    still prints everything and leaves complete files, with status 0 or 2 as before."""
    command = [sys.executable, "-m", "codex_ml.cli", "monitoring"]
    out = tmp_path / "cold.csv"
    done = subprocess.run([*command, "export", files["FILE"], str(out), "--json"], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0 and '"rows": 18' in done.stdout, done.stderr
    assert out.read_text().count("\n") == 19  # the header and every point
    done = subprocess.run([*command, "inspect", "--json", files["FILE"], files["RUN"]], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.endswith("}\n") and done.stdout.count('"records"') == 2
    done = subprocess.run([*command, "inspect", files["NOPE"]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stdout == ""


def test_only_reads_end_the_process_early() -> None:
    """A replay into a backend (``--to``) keeps the collector on and the normal interpreter exit."""
    assert lean.parse(["monitoring", "inspect", "runs/x"]).reads_only
    assert lean.parse(["monitoring", "export", "runs/x", "m.csv", "--tracking-uri", "file:x"]).reads_only
    assert not lean.parse(["monitoring", "export", "runs/x", "--to", "mlflow"]).reads_only
    assert not lean.parse(["monitoring", "export", "runs/x", "--to=tensorboard"]).reads_only
