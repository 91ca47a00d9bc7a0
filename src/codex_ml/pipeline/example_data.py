"""The bundled example data: two-number addition, where every answer can be checked.

``python -m codex_ml.pipeline.example_data --out data/pipeline`` writes
``corpus.jsonl`` (documents of equations, a few of them wrong, like real web text),
``demos.jsonl`` (``{"prompt": "12+7=", "completion": "19"}``) and ``prefs.jsonl``
(``{"prompt": "12+7=", "chosen": "19", "rejected": "18"}``). The output depends only
on ``--seed``: the same seed gives byte-identical files.

Because answers are checkable, :func:`check_answer` lets the pipeline report the real
accuracy of M0/M1/M2 next to the learned reward.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["REJECTION_KINDS", "ExampleSpec", "check_answer", "generate", "main", "rejection_kind", "write_example_data"]

#: How a rejected answer differs from the chosen one (the three kinds :func:`_wrong` makes).
REJECTION_KINDS = ("off_by_one", "tens_digit", "random")

_PROMPT = re.compile(r"^(\d+)\+(\d+)=$")


@dataclass(frozen=True)
class ExampleSpec:
    """Sizes of the generated files; the defaults give the bundled data set."""

    max_operand: int = 49
    corpus_docs: int = 1500
    equations_per_doc: int = 8
    corpus_error_rate: float = 0.15
    demos: int = 1200
    prefs: int = 8000
    seed: int = 1234


def check_answer(prompt: str, completion: str) -> bool | None:
    """True/False when ``prompt`` is an ``a+b=`` question; None for any other prompt."""
    match = _PROMPT.match(prompt)
    if match is None:
        return None
    return completion.strip() == str(int(match.group(1)) + int(match.group(2)))


def rejection_kind(chosen: str, rejected: str) -> str | None:
    """``off_by_one``, ``tens_digit`` (off by 10) or ``random`` for two whole-number answers; None
    when either is not a number (a pair from other data). A random rejection that lands 1 or 10
    away counts as that kind: it is as hard to tell apart."""
    if not (chosen.strip().isdigit() and rejected.strip().isdigit()):
        return None
    gap = abs(int(chosen) - int(rejected))
    return "off_by_one" if gap == 1 else "tens_digit" if gap == 10 else "random"


def _wrong(rng: random.Random, answer: int, high: int) -> int:
    """A plausible wrong answer: off by one, a tens-digit slip, or a random number (a third each)."""
    while True:
        kind = rng.randrange(3)
        if kind == 0:
            value = answer + rng.choice((-1, 1))
        elif kind == 1:
            value = answer + rng.choice((-10, 10))
        else:
            value = rng.randrange(0, high + 1)
        if value >= 0 and value != answer:
            return value


def _problem(rng: random.Random, spec: ExampleSpec) -> tuple[int, int]:
    return rng.randrange(spec.max_operand + 1), rng.randrange(spec.max_operand + 1)


def generate(spec: ExampleSpec = ExampleSpec()) -> dict[str, list[dict[str, str]]]:
    """The three data sets as lists of JSON-ready rows (deterministic in ``spec``)."""
    rng = random.Random(spec.seed)
    high = 2 * spec.max_operand
    corpus = []
    for _ in range(spec.corpus_docs):
        equations = []
        for _ in range(spec.equations_per_doc):
            a, b = _problem(rng, spec)
            # Some wrong facts, as in real text: SFT and preference tuning have something to fix.
            c = _wrong(rng, a + b, high) if rng.random() < spec.corpus_error_rate else a + b
            equations.append(f"{a}+{b}={c}")
        corpus.append({"text": " ".join(equations)})
    demos = []
    for _ in range(spec.demos):
        a, b = _problem(rng, spec)
        demos.append({"prompt": f"{a}+{b}=", "completion": str(a + b)})
    prefs = []
    for _ in range(spec.prefs):
        a, b = _problem(rng, spec)
        rejected = _wrong(rng, a + b, high)
        prefs.append({"prompt": f"{a}+{b}=", "chosen": str(a + b), "rejected": str(rejected)})
    return {"corpus": corpus, "demos": demos, "prefs": prefs}


def write_example_data(out: str | Path, spec: ExampleSpec = ExampleSpec()) -> dict[str, Path]:
    """Write ``corpus.jsonl``, ``demos.jsonl`` and ``prefs.jsonl`` under ``out``; returns their paths."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, rows in generate(spec).items():
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        written[name] = path
    return written


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m codex_ml.pipeline.example_data --out DIR``."""
    parser = argparse.ArgumentParser(
        prog="python -m codex_ml.pipeline.example_data",
        description="Write the bundled addition data set (corpus, demos, prefs) as JSONL.",
    )
    parser.add_argument("--out", default="data/pipeline", help="output folder (default: data/pipeline)")
    parser.add_argument("--seed", type=int, default=ExampleSpec.seed, help="generator seed")
    parser.add_argument("--max-operand", type=int, default=ExampleSpec.max_operand, help="largest operand")
    args = parser.parse_args(argv)
    spec = ExampleSpec(seed=args.seed, max_operand=args.max_operand)
    for name, path in write_example_data(args.out, spec).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
