"""The run directory, below both the write side (tracking) and the tools (monitoring, backends).

What every layer that touches a run directory shares, and nothing else: the names of its
files (``paths.RunPaths``), the NDJSON record format (``records``, ``encoding``) and its
reader (``reader``), the one reader/writer of run.json, summary.json, params.json and
tags.json (``run_files``), and the ``Sink`` protocol through which a backend receives a
run's records (``sink``). It imports nothing above ``codex_ml.errors``.
"""
