"""Plugins that import fine but are wrong: a sink without sink methods, an old API version."""

CODEX_ML_PLUGIN_API = 1


class NotASink:
    """Has none of the Sink methods."""

    def write(self, value: float) -> None:
        """Not what a sink needs."""


class OldApiTokenizer:
    """Written for a plugin API this codex_ml does not speak."""

    CODEX_ML_PLUGIN_API = 0
