"""benchmarks/bench_reference.py without the nanoGPT snapshot: its data preparation and its argument errors."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_reference.py"
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_reference as ref  # noqa: E402


def test_prepared_bins_decode_back_to_the_corpus(tmp_path: Path) -> None:
    """train.bin + val.bin (uint16) decode through meta.pkl's itos to the corpus, split at 90 %; the
    vocabulary is the corpus's sorted characters, as nanoGPT's prepare.py lays it out."""
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak. \u00e9\u4e2d\n" * 7
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    ref.prepare_char_data(corpus, tmp_path / "data")
    meta = pickle.loads((tmp_path / "data" / "meta.pkl").read_bytes())
    train = np.fromfile(tmp_path / "data" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint16)
    assert meta["vocab_size"] == len(set(text)) and "".join(meta["itos"][i] for i in range(meta["vocab_size"])) == \
        "".join(sorted(set(text)))
    assert all(meta["stoi"][ch] == i for i, ch in meta["itos"].items())
    assert len(train) == int(len(text) * 0.9) and len(train) + len(val) == len(text)
    assert "".join(meta["itos"][int(i)] for i in np.concatenate([train, val])) == text


def test_reference_flags_follow_the_train_model_config(tmp_path: Path) -> None:
    """nanoGPT gets the resolved config's values (an override reaches both trainers), as the types
    its configurator.py asserts (floats stay floats)."""
    from codex_ml.training.config import load_config

    config = load_config(overrides=["model.n_layer=2", "training.max_steps=300", "training.eval_batches=7"])
    flags = ref.reference_flags(config, tmp_path / "data", tmp_path / "out")
    assert {"--n_layer=2", "--max_iters=300", "--lr_decay_iters=300", "--eval_iters=7", "--learning_rate=0.001",
            "--dropout=0.0", "--device=cpu", "--compile=False", f"--dataset={tmp_path / 'data'}"} <= set(flags)


def test_missing_reference_is_one_error_line(tmp_path: Path) -> None:
    """No --reference, or a directory that is not a nanoGPT checkout: exit 2 with one ``error:`` line."""
    for extra in ([], ["--reference", str(tmp_path)]):
        done = subprocess.run([sys.executable, str(SCRIPT), *extra], capture_output=True, text=True, timeout=60,
                              check=False)
        assert done.returncode == 2 and done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: --reference") and "nanoGPT" in lines[0]


def test_parse_reference_reads_start_up_rate_and_val_loss() -> None:
    """The marks come from nanoGPT's own lines: "step N: ... val loss X" and "iter N: ... time Yms"."""
    lines = [(0.5, "tokens per iteration will be: 768\n"), (2.0, "step 0: train loss 4.2000, val loss 4.1000\n")]
    lines += [(2.1 + n * 0.1, f"iter {n}: loss 3.0, time 100.00ms, mfu -100.00%\n") for n in range(101)]
    lines += [(20.0, "step 100: train loss 2.0000, val loss 2.5000\n")]
    marks = ref.parse_reference(lines)
    assert marks["opened"] == 0.5 and marks["val0"] == 2.0 and abs(marks["first_step"] - 2.1) < 1e-9
    assert abs(marks["steps_per_s"] - 10.0) < 1e-6 and marks["median_step_ms"] == 100.0 and marks["final_val"] == 2.5
