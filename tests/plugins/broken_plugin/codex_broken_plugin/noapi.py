"""A plugin module that does not declare CODEX_ML_PLUGIN_API."""


class Tokenizer:
    """Fine otherwise."""
