"""Tests for codex_ml.data.bpe_tokenizer (real Hugging Face tokenizers, trained on small text)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codex_ml.data.bpe_tokenizer import EOT_TOKEN, MIN_VOCAB_SIZE, BPETokenizer
from codex_ml.data.sample import load_sample_text

CORPUS = load_sample_text()[:20_000]
UNSEEN = "Ünïcødé ✓ 🙂 日本語 \x00\t\r\n  trailing spaces   <|endoftext|> end"


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    """A 400-id tokenizer trained once for this module."""
    return BPETokenizer.fit([CORPUS], vocab_size=400)


def test_training_learns_merges_up_to_the_vocab_size(tok: BPETokenizer) -> None:
    assert tok.kind == "bpe"
    assert tok.vocab_size == 400
    assert tok.eot_id == 0
    ids = tok.encode(CORPUS[:2000])
    assert len(ids) < 2000 * 0.7  # merges compress the text it was trained on
    assert all(0 <= i < tok.vocab_size for i in ids)


def test_any_text_round_trips_even_bytes_never_seen(tok: BPETokenizer) -> None:
    for text in (CORPUS[:3000], UNSEEN, "", " ", "a"):
        assert tok.decode(tok.encode(text)) == text


def test_literal_endoftext_in_text_is_not_the_special_id(tok: BPETokenizer) -> None:
    ids = tok.encode(f"a{EOT_TOKEN}b")
    assert tok.eot_id not in ids
    assert tok.decode([tok.eot_id]) == EOT_TOKEN


def test_encode_batch_matches_encode(tok: BPETokenizer) -> None:
    texts = ["first text", UNSEEN, CORPUS[:500]]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_decode_rejects_out_of_range_ids(tok: BPETokenizer) -> None:
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([1, tok.vocab_size])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([-1])


def test_save_and_load_round_trip(tok: BPETokenizer, tmp_path: Path) -> None:
    path = tmp_path / "bpe.json"
    tok.save(path)
    payload = json.loads(path.read_text(encoding="utf-8"))
    assert payload["type"] == "bpe" and payload["version"] == 1
    assert payload["tokenizer"]["model"]["type"] == "BPE"  # plain Hugging Face JSON inside
    loaded = BPETokenizer.load(path)
    assert loaded == tok
    assert loaded.encode(UNSEEN) == tok.encode(UNSEEN)
    assert loaded.eot_id == tok.eot_id and loaded.vocab_size == tok.vocab_size


def test_training_is_deterministic() -> None:
    texts = [CORPUS[:5000]]
    assert BPETokenizer.fit(texts, vocab_size=300) == BPETokenizer.fit(texts, vocab_size=300)


def test_tiny_corpus_gives_a_smaller_vocab_that_still_encodes_everything() -> None:
    small = BPETokenizer.fit(["ab ab"], vocab_size=1000)
    assert MIN_VOCAB_SIZE <= small.vocab_size < 1000
    assert small.decode(small.encode(UNSEEN)) == UNSEEN


def test_vocab_size_below_bytes_plus_eot_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer.fit(["text"], vocab_size=256)


def test_bad_files_are_rejected(tmp_path: Path) -> None:
    wrong_type = tmp_path / "char.json"
    wrong_type.write_text(json.dumps({"type": "char", "version": 1, "chars": ["a"]}))
    with pytest.raises(ValueError, match="not a BPE tokenizer"):
        BPETokenizer.load(wrong_type)
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"type": "bpe", "version": 99, "tokenizer": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported BPE tokenizer version 99"):
        BPETokenizer.load(future)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "bpe", "version": 1, "tokenizer": {"model": 1}}))
    with pytest.raises(ValueError, match="invalid Hugging Face tokenizer JSON"):
        BPETokenizer.load(broken)
