"""Tests for codex_ml.data.sample (the bundled corpus)."""

from __future__ import annotations

from codex_ml.data.sample import load_sample_text, sample_text_path


def test_bundled_text_exists_inside_the_package() -> None:
    path = sample_text_path()
    assert path.is_file()
    assert path.parent.parent.name == "data"  # shipped in codex_ml/data/sample/, not read from elsewhere


def test_bundled_text_is_large_and_ends_at_a_line() -> None:
    text = load_sample_text()
    assert len(text) > 100_000
    assert text.startswith("First Citizen:\n")
    assert text.endswith("\n")
