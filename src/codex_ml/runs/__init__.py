"""Many runs at once: find every run under an output root, summarise, query and compare them.

``codex-ml runs list|query|compare`` (docs/runs.md). Runs are read from their files only
(docs/run-directory.md); per-run summaries are cached in an index rebuilt when a run's NDJSON
grows, and queries run in DuckDB over that index.
"""
