"""Reading a run back in a new process stays light: no pandas, and no pyarrow for ``inspect``.

pyarrow's ``to_numpy``, ``cast`` and ``pa.array`` import pandas (0.2-0.3 s of a cold command), so
the readers go through Arrow buffers instead; these tests prove it in a fresh interpreter and
check the buffer conversions against pyarrow's own.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codex_ml.rundir.encoding import encode_metrics

_PROBE = """
import sys
from pathlib import Path
from codex_ml.monitoring.export import export
from codex_ml.monitoring.inspect import inspect_paths
from codex_ml.monitoring.loading import load
path = Path(sys.argv[1])
result = inspect_paths([path])[0]
assert result["records"] == 50 and result["metrics"]["loss"]["nan"] == 1, result
print("inspect", "pandas" in sys.modules, "pyarrow" in sys.modules)
export(load(path), path.with_suffix(".parquet"), "parquet")
export(load(path), path.with_suffix(".wide.parquet"), "parquet", wide=True)
print("export", "pandas" in sys.modules)
"""


def _write(path: Path, records: int = 50, torn: bool = False) -> None:
    lines = [encode_metrics(s, 1.0 + s, {"loss": float("nan") if s == 7 else s * 0.5, **({"acc": 0.1} if s % 3 == 0 else {})})
             for s in range(records)]  # fmt: skip
    data = b"".join(lines)
    path.write_bytes(data + b'{"v":1,"st' if torn else data)


@pytest.mark.parametrize("torn", [False, True], ids=["duckdb path", "pyarrow path (torn last line)"])
def test_a_new_process_reads_and_exports_without_pandas(tmp_path: Path, torn: bool) -> None:
    path = tmp_path / "metrics.ndjson"
    _write(path, torn=torn)
    done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, check=True)
    inspect_line, export_line = done.stdout.splitlines()
    assert inspect_line.startswith("inspect False"), done.stdout  # no pandas while inspecting
    if not torn:
        assert inspect_line == "inspect False False", "the DuckDB path must not import pyarrow"
    assert export_line == "export False", "Parquet export must not import pandas"


def test_buffer_reads_match_pyarrow_on_sliced_arrays_with_nulls() -> None:
    import pyarrow as pa

    from codex_ml.monitoring.metrics_data import numeric_values

    for values, arrow_type in (([1.5, None, 3.0, None, 5.0, 6.0, None, 8.0, 9.0, 10.0], pa.float64()),
                               ([1, None, 3, 4, None, 6, 7, 8, None, 10], pa.int64())):  # fmt: skip
        whole = pa.array(values, arrow_type)
        for part in (whole, whole.slice(3), whole.slice(1, 7), whole.slice(9, 1), whole.slice(5, 0)):
            got, valid = numeric_values(part)
            expected = part.to_pylist()
            mask = valid if valid is not None else np.ones(len(part), bool)
            assert list(mask) == [v is not None for v in expected]
            assert [x for x, ok in zip(got.tolist(), mask) if ok] == [v for v in expected if v is not None]
    assert numeric_values(pa.array(["a"])) is None


def test_wide_parquet_keeps_missing_cells_null(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from codex_ml.monitoring.export import export
    from codex_ml.monitoring.loading import load

    path = tmp_path / "metrics.ndjson"
    _write(path, records=20)
    export(load(path), tmp_path / "wide.parquet", "parquet", wide=True)
    table = pq.read_table(tmp_path / "wide.parquet")
    assert table.column("acc").to_pylist() == [0.1 if s % 3 == 0 else None for s in range(20)]
    loss = table.column("loss").to_pylist()
    assert np.isnan(loss[7]) and loss[8] == 4.0
    export(load(path), tmp_path / "long.parquet", "parquet")
    long = pq.read_table(tmp_path / "long.parquet")
    assert long.column("key").to_pylist()[:4] == ["loss", "acc", "loss", "loss"]  # file order, keys in line order
    assert long.column("step").to_pylist()[:4] == [0, 0, 1, 2]
