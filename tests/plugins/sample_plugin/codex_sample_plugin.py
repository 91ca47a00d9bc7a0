"""codex-sample-plugin: one codex_ml plugin of each group, selected by name in a job.

- sink ``csvsink`` writes every scalar to ``<run dir>/metrics.csv`` (``--sink csvsink``). Columns:
  ``kind`` (metric or system), ``step``, ``wall_time``, ``name``, ``value``.
- collector ``ticks`` (``system_metrics.collectors=[ticks,cpu]``), tokenizer ``reserved_chars``
  (``data.tokenizer=reserved_chars``), model ``sample_gpt`` (``model.name=sample_gpt``), dataset
  ``abc`` (``data.dataset=abc``) and pipeline stage ``token_count`` (``stages=[..., token_count]``).
"""

from __future__ import annotations

import csv
from typing import Any

from codex_ml.tracking.sink import MetricPoint, RunInfo, Sink

#: The codex_ml plugin API this plugin is written for.
CODEX_ML_PLUGIN_API = 1

COLUMNS = ("kind", "step", "wall_time", "name", "value")


class CsvSink(Sink):
    """Appends one CSV row per scalar to metrics.csv in the run directory."""

    name = "csvsink"

    def __init__(self, filename: str = "metrics.csv") -> None:
        self._filename = filename
        self._file: Any = None
        self._writer: Any = None

    def start(self, run: RunInfo) -> None:
        """Open the CSV file (appending on resume) and write the header once."""
        path = run.paths.root / self._filename
        fresh = not path.exists()
        self._file = open(path, "a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(COLUMNS)

    def write_metrics(self, points: list[MetricPoint]) -> None:
        """One row per (step, name)."""
        self._rows("metric", points)

    def write_system(self, points: list[MetricPoint]) -> None:
        """System telemetry rows, marked as such."""
        self._rows("system", points)

    def _rows(self, kind: str, points: list[MetricPoint]) -> None:
        for step, wall_time, values in points:
            self._writer.writerows((kind, step, wall_time, name, value) for name, value in values.items())

    def flush(self) -> None:
        """Push rows to disk."""
        if self._file is not None:
            self._file.flush()

    def close(self, status: str) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


# -- one plugin of every other group: each leaves a mark a test finds in the run's files ------------

from codex_ml.data.char_tokenizer import CharTokenizer  # noqa: E402
from codex_ml.monitoring.collectors import Collector  # noqa: E402


class TickCollector(Collector):
    """System-metrics collector ``ticks``: writes ``{"count": n}`` (samples taken so far)."""

    name = "ticks"

    def __init__(self) -> None:
        super().__init__()
        self._count = 0

    def collect(self) -> None:
        """Count this sample."""
        self._count += 1
        self._data = {"count": self._count}


class ReservedCharTokenizer(CharTokenizer):
    """Tokenizer ``reserved_chars``: the char tokenizer with id 0 reserved (``\\x00``).

    Saved with ``"type": "reserved_chars"`` so that ``--resume`` finds it again.
    """

    kind = "reserved_chars"

    @classmethod
    def train(cls, texts: list[str], vocab_size: int) -> ReservedCharTokenizer:
        """One id per character of ``texts`` (and the blank-line separator), after the reserved one."""
        return cls(["\x00", *sorted((set("".join(texts)) | {"\n"}) - {"\x00"})])

    def save(self, path: Any) -> None:
        """The vocabulary as JSON, marked with this tokenizer's kind."""
        import json
        from pathlib import Path

        Path(path).write_text(json.dumps({"type": self.kind, "chars": list(self.chars)}), encoding="utf-8")

    @classmethod
    def load(cls, path: Any) -> ReservedCharTokenizer:
        """Read what :meth:`save` wrote."""
        import json
        from pathlib import Path

        return cls(json.loads(Path(path).read_text(encoding="utf-8"))["chars"])


def abc_dataset(path: str | None) -> list[str]:
    """Dataset ``abc``: forty documents made only of the letters a, b, c and spaces (``path`` is ignored)."""
    return [" ".join(["abc", "cab", "bca"][i % 3] * (i % 5 + 1) for _ in range(20)) for i in range(40)]


def SampleGPT(config: Any) -> Any:  # noqa: N802 - a factory named like the class it returns
    """Model ``sample_gpt``: codex_ml's GPT under another class name (torch is imported only here)."""
    from codex_ml.models.transformer import GPT

    class SampleGPT(GPT):
        """The built-in GPT, renamed: the run's params.json shows which model was built."""

    return SampleGPT(config)


def token_count_stage(state: Any, ctx: Any) -> dict[str, float]:
    """Pipeline stage ``token_count``: logs ``<prefix>/corpus_tokens`` once and returns it."""
    tokens = float(sum(len(state.tokenizer.encode(text)) for text in state.inputs.corpus))
    ctx.run.log_metrics({f"{ctx.prefix}/corpus_tokens": tokens}, step=0)
    return {"corpus_tokens": tokens}


def _health_rule_base() -> tuple[Any, Any]:
    from codex_ml.health.rules import Param, Rule

    return Param, Rule


_Param, _Rule = _health_rule_base()


class LossAbove(_Rule):
    """Health rule ``loss_above``: fires once, the first time ``train/loss`` exceeds ``threshold``."""

    name = "loss_above"
    PARAMS = {"threshold": _Param(10.0, float, "the loss above which the rule fires")}

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.fired = False

    def on_metrics(self, step: int, wall_time: float, metrics: Any) -> list[Any]:
        loss = metrics.get("train/loss")
        if self.fired or loss is None or not loss > self.settings["threshold"]:
            return []
        self.fired = True
        return [self.event(wall_time, step, "train/loss", loss, self.settings["threshold"],
                           f"train/loss {loss:.3f} above {self.settings['threshold']}")]
