"""Datasets by name: the documents a training job reads, from the plugin registry.

A dataset plugin (group ``datasets``) is a callable ``dataset(path) -> list[str] | str``:
``path`` is the config's ``data.path`` (None when unset), the result the documents (one
string is one document). The built-ins are ``corpus`` (:func:`corpus_dataset`, a .txt/.jsonl
file) and ``sample`` (:func:`sample_dataset`, the bundled text). ``data.dataset`` left unset
means ``corpus`` when ``data.path`` is set, else ``sample``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codex_ml.data.corpus import CorpusError, read_corpus

__all__ = ["corpus_dataset", "read_dataset", "resolve_dataset_name", "sample_dataset"]


def corpus_dataset(path: str | None) -> list[str]:
    """The documents of the corpus file ``path`` (see :func:`codex_ml.data.corpus.read_corpus`)."""
    if not path:
        raise CorpusError("dataset 'corpus' needs a file: set data.path (a .txt or .jsonl corpus)")
    return read_corpus(Path(path).expanduser())


def sample_dataset(path: str | None = None) -> list[str]:
    """The sample text bundled with the package, as one document (``path`` is not used)."""
    from codex_ml.data.sample import sample_text_path

    return read_corpus(sample_text_path())


def resolve_dataset_name(name: str | None, path: str | None) -> str:
    """The dataset a config means: ``name``, else ``corpus`` with a path, else ``sample``."""
    return name or ("corpus" if path else "sample")


def read_dataset(name: str | None, path: str | None) -> tuple[list[str], Path]:
    """(documents, source) of the dataset ``name`` (see the module docstring).

    ``source`` is what params.json records as ``data.resolved_path``: the file read, or
    ``<dataset NAME>`` for a plugin that was given no path.
    """
    from codex_ml.plugins.select import load

    chosen = resolve_dataset_name(name, path)
    if chosen == "sample":
        from codex_ml.data.sample import sample_text_path

        source = sample_text_path()
    else:
        source = Path(path).expanduser() if path else Path(f"<dataset {chosen}>")
    return _documents(chosen, load("datasets", chosen)(path)), source


def _documents(name: str, result: Any) -> list[str]:
    """The plugin's result checked: a string or a list of strings with some text."""
    documents = [result] if isinstance(result, str) else result
    if not isinstance(documents, list) or not all(isinstance(doc, str) for doc in documents):
        raise CorpusError(f"dataset {name!r} returned {type(result).__name__}, not a list of strings (documents)")
    if not any(doc.strip() for doc in documents):
        raise CorpusError(f"dataset {name!r} returned no text")
    return documents
