"""The twelve topics, in the lecture's order, with their points, hints and known mistakes.

The order here is the curriculum order; the grader, the generator and the tests all read it.
Hints and the mistake catalog live beside each topic in `kata/hints/<topic>.toml`, the answers to
viewer questions in `kata/notes/<topic>.md`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (Colab) reads TOML with the backport
    import tomli as tomllib

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Topic:
    name: str      # module name in exercises/, solutions/ and tests/test_<name>.py
    section: str   # the lecture section it comes from
    points: int


TOPICS = (
    Topic("no_grad", "starter code: evaluating the split loss without building a graph", 5),
    Topic("initial_loss", "fixing the initial loss", 5),
    Topic("saturation", "fixing the saturated tanh", 10),
    Topic("kaiming", "calculating the init scale: Kaiming init", 10),
    Topic("batchnorm", "batch normalization (training-mode forward)", 15),
    Topic("running_stats", "running mean/var by EMA, calibration, inference with running stats", 10),
    Topic("modules", "PyTorch-ifying the code: Linear, BatchNorm1d, Tanh", 15),
    Topic("bias_redundancy", "biases before BatchNorm are redundant", 5),
    Topic("diagnostics", "viz #1-#3: activation, gradient and weight statistics", 10),
    Topic("update_ratio", "viz #4: update:data ratio, about 1e-3", 5),
    Topic("zero_init", "exercise E01: every weight and bias starts at zero; what still trains, and why", 5),
    Topic("fold_batchnorm", "exercise E02: fold an eval-mode BatchNorm into the Linear before it", 5),
)
NAMES = tuple(t.name for t in TOPICS)
_BY_NAME = {t.name: t for t in TOPICS}


@dataclass(frozen=True)
class Mistake:
    """A realistic wrong implementation: `patch` turns the reference into it (each `find` must occur
    exactly once in solutions/<topic>.py); a test that recognises it prints `[mistake: <id>]`."""
    topic: str
    id: str
    title: str
    explain: str
    patch: tuple[tuple[str, str], ...]
    named: bool  # True: the failure output must carry `[mistake: <id>]`


def get(name: str) -> Topic:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; topics are: {', '.join(NAMES)}") from None


def _content(name: str) -> dict:
    get(name)
    path = HERE / "hints" / f"{name}.toml"
    return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def hints(name: str) -> list[str]:
    """Hint levels for a topic, from the concept to a near-solution."""
    return list(_content(name).get("hints", []))


def mistakes(name: str) -> list[Mistake]:
    return [
        Mistake(
            topic=name,
            id=m["id"],
            title=m["title"],
            explain=m["explain"].strip(),
            patch=tuple((p["find"], p["replace"]) for p in m["patch"]),
            named=m.get("named", True),
        )
        for m in _content(name).get("mistakes", [])
    ]


def notes(name: str) -> str:
    """The topic's answers to viewer questions (kata/notes/<topic>.md), or '' if it has none."""
    path = HERE / "notes" / f"{get(name).name}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
