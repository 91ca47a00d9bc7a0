"""The bundled data generator: deterministic, checkable, and what ships in data/pipeline."""

from __future__ import annotations

from pathlib import Path

from codex_ml.pipeline.example_data import ExampleSpec, check_answer, generate, main
from codex_ml.pipeline.inputs import load_inputs

REPO = Path(__file__).resolve().parents[2]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path / "a")]) == 0
    assert main(["--out", str(tmp_path / "b")]) == 0
    for name in ("corpus", "demos", "prefs"):
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()


def test_bundled_files_are_the_generator_output(tmp_path: Path) -> None:
    main(["--out", str(tmp_path)])
    for name in ("corpus", "demos", "prefs"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (REPO / "data" / "pipeline" / f"{name}.jsonl").read_bytes()


def test_answers_are_checkable() -> None:
    data = generate(ExampleSpec(corpus_docs=5, demos=20, prefs=20))
    assert all(check_answer(d["prompt"], d["completion"]) for d in data["demos"])
    assert all(check_answer(p["prompt"], p["chosen"]) for p in data["prefs"])
    assert not any(check_answer(p["prompt"], p["rejected"]) for p in data["prefs"])
    assert check_answer("hello", "x") is None


def test_bundled_files_validate() -> None:
    folder = REPO / "data" / "pipeline"
    inputs = load_inputs(folder / "corpus.jsonl", folder / "demos.jsonl", folder / "prefs.jsonl")
    assert inputs.files["prefs"]["rows"] > 1000


def test_rejection_kinds_cover_every_generated_pair() -> None:
    from codex_ml.pipeline.example_data import REJECTION_KINDS, rejection_kind

    assert [rejection_kind("19", r) for r in ("18", "20", "9", "29", "42")] == [
        "off_by_one", "off_by_one", "tens_digit", "tens_digit", "random"]
    assert rejection_kind("yes", "no") is None  # pairs from other data have no kind
    kinds = {rejection_kind(p["chosen"], p["rejected"]) for p in generate(ExampleSpec(prefs=300))["prefs"]}
    assert kinds == set(REJECTION_KINDS)
