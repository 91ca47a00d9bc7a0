"""Keeping secrets out of everything a run stores or prints.

``redaction`` masks secret-looking values in params, tags, text and error lines;
``credentials`` takes backend credentials (MLflow, Prometheus push) from the environment or a
URI without ever writing them down. Both tracking and the backends use them; they import
nothing of codex_ml but each other.
"""
