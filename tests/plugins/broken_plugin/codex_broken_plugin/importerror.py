"""A plugin module whose import fails (a dependency that is not installed)."""

import codex_no_such_dependency  # noqa: F401

CODEX_ML_PLUGIN_API = 1


class BrokenSink:
    """Never reached."""
