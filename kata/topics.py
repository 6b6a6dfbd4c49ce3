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
    names: tuple[str, ...]           # the functions and classes its stub defines
    uses: tuple[str, ...] = ()       # other topics its code and tests use (bias_redundancy: modules)


TOPICS = (
    Topic("no_grad", "starter code: evaluating the split loss without building a graph", 5, ("split_loss",)),
    Topic("initial_loss", "fixing the initial loss", 5, ("expected_initial_loss", "scale_output_layer")),
    Topic("saturation", "fixing the saturated tanh", 10, ("saturation_fraction", "dead_neurons", "tanh_backward")),
    Topic("kaiming", "calculating the init scale: Kaiming init", 10, ("gain", "kaiming_std", "kaiming_normal")),
    Topic("batchnorm", "batch normalization (training-mode forward)", 15, ("batchnorm_forward",)),
    Topic("running_stats", "running mean/var by EMA, calibration, inference with running stats", 10,
          ("ema_update", "batchnorm_eval", "calibrate")),
    Topic("modules", "PyTorch-ifying the code: Linear, BatchNorm1d, Tanh", 15, ("Linear", "BatchNorm1d", "Tanh")),
    Topic("bias_redundancy", "biases before BatchNorm are redundant", 5,
          ("redundant_biases", "drop_redundant_biases"), uses=("modules",)),
    Topic("diagnostics", "viz #1-#3: activation, gradient and weight statistics", 10,
          ("activation_stats", "grad_to_data_ratio")),
    Topic("update_ratio", "viz #4: update:data ratio, about 1e-3", 5, ("update_to_data_ratio", "update_ratios")),
    Topic("zero_init", "exercise E01: every weight and bias starts at zero; what still trains, and why", 5,
          ("unigram_loss", "zero_init_grads")),
    Topic("fold_batchnorm", "exercise E02: fold an eval-mode BatchNorm into the Linear before it", 5,
          ("fold_batchnorm",)),
)
NAMES = tuple(t.name for t in TOPICS)
_BY_NAME = {t.name: t for t in TOPICS}


@dataclass(frozen=True)
class Mistake:
    """A realistic wrong implementation: `patch` turns the reference into it (each `find` must occur
    exactly once in solutions/<topic>.py).

    A single mistake has its own title and explanation, or takes them from the entry named by `see`
    ("topic/id": one mistake of two topics, explained once). A combination (`combines`: the ids of
    two single mistakes of the same topic, which a learner plausibly makes together) has its own
    patch, since patches do not always compose, and its id, title and explanation come from its
    parts. `same_as`: the id of a mistake that behaves exactly like this one on every test."""
    topic: str
    id: str
    title: str
    explain: str
    patch: tuple[tuple[str, str], ...]
    where: str = ""                # where a learner makes it: the lecture's line, a viewer question, a slip
    see: str = ""                  # "topic/id" whose title and explanation this mistake shares
    combines: tuple[str, ...] = () # the single mistakes a combination is made of, in the catalog's order
    same_as: str = ""              # a mistake of this topic that no test can tell apart from this one


@dataclass(frozen=True)
class ShortcutRule:
    """What a topic that teaches a computation may not call (the stubs' docstrings say so too).
    `source`: names the learner's file may not mention, matched as dotted components
    (`nn.init` in `torch.nn.init.normal_`); `runtime`: callables that raise while the topic's code
    runs in the learner process (this catches aliases a source scan misses)."""
    source: tuple[str, ...]
    runtime: tuple[str, ...]
    why: str

    def message(self, topic: str) -> str:
        return f"the {topic} topic asks you to write this yourself, not to call torch's version; {self.why}"

    def __add__(self, other: "ShortcutRule") -> "ShortcutRule":
        return ShortcutRule(self.source + other.source, self.runtime + other.runtime, f"{self.why}; {other.why}")


NORMALISE = ShortcutRule(
    # a name that is one word is also refused inside a longer one (torch.native_batch_norm)
    source=("batch_norm", "nn.BatchNorm1d", "functional.normalize", "layer_norm", "instance_norm", "group_norm"),
    runtime=("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.BatchNorm1d.forward",
             "torch.native_batch_norm", "torch._native_batch_norm_legit", "torch.batch_norm_elemt",
             "torch._batch_norm_impl_index", "torch.nn.functional.layer_norm", "torch.layer_norm",
             "torch.native_layer_norm", "torch.nn.functional.instance_norm", "torch.instance_norm",
             "torch.nn.functional.group_norm", "torch.group_norm", "torch.native_group_norm",
             "torch.nn.functional.normalize"),
    why="compute the mean and variance with tensor ops (x.mean(0), x.var(0, unbiased=False)) and normalise "
        "with gamma * (x - mean) / torch.sqrt(var + eps) + beta")
INIT = ShortcutRule(
    # what the topics teach: the gain and the Kaiming/Xavier scale; nn.init.zeros_, ones_ and normal_
    # (which draws exactly what Tensor.normal_ draws) are fine
    source=("calculate_gain", "kaiming_normal_", "kaiming_uniform_", "xavier_normal_", "xavier_uniform_"),
    runtime=tuple(f"torch.nn.init.{name}" for name in ("calculate_gain", "kaiming_normal_", "kaiming_uniform_",
                                                      "xavier_normal_", "xavier_uniform_")),
    why="compute the gain from the nonlinearity's name and draw the weight with torch.randn")
SHORTCUTS = {"batchnorm": NORMALISE, "running_stats": NORMALISE, "fold_batchnorm": NORMALISE,
             "kaiming": INIT, "modules": NORMALISE + INIT}


def shortcut_rule(name: str) -> ShortcutRule | None:
    return SHORTCUTS.get(name)


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
    """The topic's single mistakes, in the catalog's order (combinations: `combinations`)."""
    return [m for m in catalogue(name) if not m.combines]


def combinations(name: str) -> list[Mistake]:
    """The topic's listed pairs of mistakes, each with its own patch."""
    return [m for m in catalogue(name) if m.combines]


def catalogue(name: str) -> list[Mistake]:
    """Every catalogued mistake of a topic: the single ones, then the combinations."""
    entries = _content(name).get("mistakes", [])
    singles = {e["id"]: _single(name, e) for e in entries if "combines" not in e}
    if len(singles) != sum("combines" not in e for e in entries):
        raise ValueError(f"kata/hints/{name}.toml: mistake ids repeat")
    pairs = [_combination(name, e, singles) for e in entries if "combines" in e]
    found = [*singles.values(), *pairs]
    ids = {m.id for m in found}
    for m in found:
        if m.same_as and m.same_as not in ids:
            raise ValueError(f"{name}/{m.id}: same_as names {m.same_as!r}, which the catalog does not hold")
    return found


def _patch(entry: dict) -> tuple[tuple[str, str], ...]:
    return tuple((p["find"], p["replace"]) for p in entry["patch"])


def _single(name: str, entry: dict) -> Mistake:
    words = entry
    if "see" in entry:  # the words live in the other topic's catalog, written once
        if "title" in entry or "explain" in entry:
            raise ValueError(f"{name}/{entry['id']}: an entry with `see` takes its title and explanation from there")
        other_topic, _, other_id = entry["see"].partition("/")
        words = next((e for e in _content(other_topic).get("mistakes", []) if e.get("id") == other_id), None)
        if words is None or "see" in words:
            raise ValueError(f"{name}/{entry['id']}: see = {entry['see']!r} names no entry with its own words")
    return Mistake(topic=name, id=entry["id"], title=words["title"], explain=words["explain"].strip(),
                   patch=_patch(entry), where=entry.get("where", ""), see=entry.get("see", ""),
                   same_as=entry.get("same_as", ""))


def _combination(name: str, entry: dict, singles: dict) -> Mistake:
    parts = [singles.get(part) for part in entry["combines"]]
    if len(parts) < 2 or None in parts:
        raise ValueError(f"{name}: combination {entry['combines']} must name two or more single mistakes of the topic")
    return Mistake(topic=name, id="+".join(m.id for m in parts), title=" and ".join(m.title for m in parts),
                   explain="\n\n".join(m.explain for m in parts), patch=_patch(entry),
                   combines=tuple(m.id for m in parts), same_as=entry.get("same_as", ""))


def notes(name: str) -> str:
    """The topic's answers to viewer questions (kata/notes/<topic>.md), or '' if it has none."""
    path = HERE / "notes" / f"{get(name).name}.md"
    return path.read_text(encoding="utf-8") if path.is_file() else ""
