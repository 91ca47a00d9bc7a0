"""Input validation: every problem is a PipelineInputError naming the file (and line)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.errors import CodexMLError
from codex_ml.pipeline.inputs import Preference, PipelineInputError, load_inputs, read_demos, read_prefs


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_prefs_accept_both_formats(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.jsonl", [
        {"prompt": "1+1=", "chosen": "2", "rejected": "3"},
        ["1+2=", "3", "4", 1],  # label 1: a is preferred
        ["1+3=", "5", "4", 0],  # label 0: b is preferred
        "",
    ])
    assert read_prefs(path) == [Preference("1+1=", "2", "3"), Preference("1+2=", "3", "4"), Preference("1+3=", "4", "5")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "a", "chosen": "b"}', 'expected {"prompt", "chosen", "rejected"}'),
        ('["a", "b", "c", 2]', "label must be 0 or 1"),
        ('["a", "b", "c", true]', "label must be 0 or 1"),
        ('{"prompt": "a", "chosen": 1, "rejected": "c"}', "'chosen' must be a string"),
        ("{not json", "not valid JSON"),
    ],
)
def test_malformed_pref_line_names_file_and_line(tmp_path: Path, line: str, expected: str) -> None:
    path = _write(tmp_path / "prefs.jsonl", [{"prompt": "1+1=", "chosen": "2", "rejected": "3"}, line])
    with pytest.raises(PipelineInputError) as info:
        read_prefs(path)
    assert f"{path}:2:" in str(info.value) and expected in str(info.value)


def test_malformed_demo_line_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "demos.jsonl", [{"prompt": "1+1=", "completion": "2"}, "", {"prompt": "x"}])
    with pytest.raises(PipelineInputError, match=rf"{path}:3: expected an object"):
        read_demos(path)


def test_missing_file_is_named_before_anything_is_read(tmp_path: Path, small_data: dict[str, Path]) -> None:
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(CodexMLError, match=r"prefs file .*nope\.jsonl.* does not exist"):
        load_inputs(small_data["corpus"], small_data["demos"], missing)


def test_empty_corpus_and_empty_prefs_are_errors(tmp_path: Path, small_data: dict[str, Path]) -> None:
    empty = _write(tmp_path / "empty.jsonl", [])
    with pytest.raises(PipelineInputError, match="empty"):
        load_inputs(empty, small_data["demos"], small_data["prefs"])
    with pytest.raises(PipelineInputError, match="no preference pairs"):
        load_inputs(small_data["corpus"], small_data["demos"], empty)


def test_malformed_corpus_line_names_file_and_line(tmp_path: Path, small_data: dict[str, Path]) -> None:
    corpus = _write(tmp_path / "c.jsonl", [{"text": "1+1=2"}, {"txt": "oops"}])
    with pytest.raises(PipelineInputError, match=rf"{corpus}:2:"):
        load_inputs(corpus, small_data["demos"], small_data["prefs"])


def test_inputs_record_hashes_and_row_counts(small_data: dict[str, Path]) -> None:
    inputs = load_inputs(small_data["corpus"], small_data["demos"], small_data["prefs"])
    assert {k: v["rows"] for k, v in inputs.files.items()} == {"corpus": 40, "demos": 60, "prefs": 80}
    assert all(len(v["sha256"]) == 64 for v in inputs.files.values())
