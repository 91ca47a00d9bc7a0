"""Tests for codex_ml.data.corpus: readers, encoding into one stream, the train/val split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codex_ml.data.corpus import (
    DOCUMENT_SEPARATOR,
    CorpusError,
    encode_corpus,
    read_corpus,
    split_train_val,
)
from codex_ml.data.tokenizers import train_tokenizer
from codex_ml.errors import CodexMLError


def _write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` (UTF-8 for text) to ``path`` and return it."""
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_txt_is_one_document_with_crlf_normalised(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.txt", "first line\r\nsecond — é ✓\n\nthird\n")
    assert read_corpus(path) == ["first line\nsecond — é ✓\n\nthird\n"]


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    assert read_corpus(_write(tmp_path / "c.txt", b"\xef\xbb\xbfhello")) == ["hello"]
    assert read_corpus(_write(tmp_path / "c.jsonl", b'\xef\xbb\xbf"hi"\n')) == ["hi"]


def test_jsonl_accepts_strings_and_text_objects_and_skips_blank_lines(tmp_path: Path) -> None:
    lines = [json.dumps("plain string"), "", "   ", json.dumps({"text": "obj ✓", "id": 3}),
             json.dumps(""), json.dumps({"text": "line\nbreak"}) + "\r"]
    path = _write(tmp_path / "c.JSONL", "\n".join(lines) + "\n")
    assert read_corpus(path) == ["plain string", "obj ✓", "line\nbreak"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "invalid JSON"),
        ("42", "got a number"),
        ("[1, 2]", "got an array"),
        ("null", "got null"),
        ('{"content": "x"}', 'no "text" field'),
        ('{"text": 5}', '"text" is a number'),
    ],
)
def test_bad_jsonl_line_names_file_line_and_expectation(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = _write(tmp_path / "bad.jsonl", '"ok"\n\n' + line + '\n"also ok"\n')
    with pytest.raises(CorpusError, match=expected) as info:
        read_corpus(path)
    message = str(info.value)
    assert f"{path}:3:" in message
    assert 'a JSON string or a JSON object with a string "text" field' in message


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    txt = _write(tmp_path / "bad.txt", b"ok\nstill ok\nbad \xff byte\n")
    with pytest.raises(CorpusError, match=r"bad\.txt:3: not valid UTF-8 \(byte 0xff\)"):
        read_corpus(txt)
    jsonl = _write(tmp_path / "bad.jsonl", b'"a"\n"b \xc3"\n')
    with pytest.raises(CorpusError, match=r"bad\.jsonl:2: not valid UTF-8"):
        read_corpus(jsonl)


def test_missing_directory_empty_and_unknown_suffix_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match=r"nope\.txt: corpus file not found"):
        read_corpus(tmp_path / "nope.txt")
    folder = tmp_path / "dir.txt"
    folder.mkdir()
    with pytest.raises(CorpusError, match="is a directory"):
        read_corpus(folder)
    with pytest.raises(CorpusError, match=r"empty\.txt: the corpus is empty"):
        read_corpus(_write(tmp_path / "empty.txt", " \n\t\n"))
    with pytest.raises(CorpusError, match=r"blank\.jsonl: the corpus is empty"):
        read_corpus(_write(tmp_path / "blank.jsonl", '""\n\n"  "\n'))
    with pytest.raises(CorpusError, match=r"'\.csv'.*supported: \.txt, \.jsonl"):
        read_corpus(_write(tmp_path / "data.csv", "a,b"))
    with pytest.raises(CorpusError, match="no suffix"):
        read_corpus(_write(tmp_path / "README", "text"))


def test_corpus_error_is_a_codex_ml_error() -> None:
    assert issubclass(CorpusError, CodexMLError)


def test_encode_char_joins_documents_with_the_separator() -> None:
    docs = ["abc", "ba"]
    tok = train_tokenizer("char", docs)
    stream = encode_corpus(docs, tok)
    assert stream.dtype == np.int32 and stream.ndim == 1
    assert tok.decode(stream.tolist()) == "abc" + DOCUMENT_SEPARATOR + "ba"


def test_encode_bpe_puts_one_eot_between_documents() -> None:
    docs = ["hello world", "second doc ✓", "third"]
    tok = train_tokenizer("bpe", docs, vocab_size=300)
    stream = encode_corpus(docs, tok)
    assert stream.dtype == np.int32
    assert int((stream == tok.eot_id).sum()) == 2
    assert tok.decode(stream.tolist()) == "<|endoftext|>".join(docs)
    single = encode_corpus(["only one"], tok)
    assert tok.eot_id not in single.tolist()
    assert encode_corpus(docs, tok, dtype=np.uint16).dtype == np.uint16


def test_encode_with_a_tokenizer_that_lacks_characters_says_what_to_do() -> None:
    from codex_ml.data.char_tokenizer import CharTokenizer

    with pytest.raises(CorpusError, match=r"document 1: character 'z'.*retrain"):
        encode_corpus(["ab", "az"], CharTokenizer("ab\n"))
    with pytest.raises(CorpusError, match="separator"):
        encode_corpus(["ab", "ba"], CharTokenizer("ab"))


def test_split_is_deterministic_head_train_tail_val() -> None:
    ids = np.arange(100, dtype=np.int32)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    again_train, again_val = split_train_val(list(range(100)), 0.1)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_fractions_outside_zero_one(fraction: float) -> None:
    with pytest.raises(CorpusError, match="val_fraction must be between 0 and 1"):
        split_train_val(np.arange(10), fraction)


def test_split_needs_both_parts_non_empty() -> None:
    with pytest.raises(CorpusError, match="1 tokens: too few"):
        split_train_val(np.arange(1), 0.5)
    with pytest.raises(CorpusError, match="too few"):
        split_train_val(np.arange(5), 1e-20)  # validation would be empty
    train, val = split_train_val(np.arange(2), 0.5)
    assert len(train) == 1 and len(val) == 1
