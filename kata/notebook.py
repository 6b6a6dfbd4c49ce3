"""The kata in a notebook: check what you wrote in a cell, hints and notes.

    from grader import check, hint, explain
    check("batchnorm", batchnorm_forward)        # or check("batchnorm"): names from the notebook
    check("modules", Linear, BatchNorm1d, Tanh)
    hint("batchnorm"); explain("batchnorm")

check() never grades in the notebook's own process, where your code runs: the objects are
pickled (cloudpickle: functions and classes defined in cells travel by value), and a grading
process of its own runs the same tests as the command line, which call your code in a learner
process of theirs. Only the verdict, as plain JSON, comes back to the notebook.
"""
from __future__ import annotations

import inspect
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kata import hintstate, topics
from kata.results import TopicResult


@dataclass
class Check:
    """What check() returns: the topic's verdict. Falsy when the topic fails, so
    `assert check("batchnorm", batchnorm_forward)` stops a notebook at an unfinished topic."""
    topic: str
    passed: bool
    score: int
    max_score: int
    tests_passed: int
    tests_total: int
    status: str

    def __bool__(self) -> bool:
        return self.passed


def _namespace() -> dict:
    """The notebook's (or script's) global names: where check() looks for what was not passed."""
    return vars(sys.modules["__main__"])


def in_notebook() -> bool:
    return "ipykernel" in sys.modules or not hasattr(sys.modules["__main__"], "__file__")


def collect(topic: str, objects, namespace: dict) -> tuple[dict, list[str]]:
    """{topic: {name: object}} for the topic and those it uses, matched by name to the contract;
    a name not passed comes from the namespace. Also the names found nowhere."""
    passed = {getattr(obj, "__name__", None): obj for obj in objects}
    unknown = [name for name in passed if not any(name in topics.get(t).names for t in (topic, *topics.get(topic).uses))]
    if unknown:
        wanted = ", ".join(topics.get(topic).names)
        raise ValueError(f"check({topic!r}, ...) got {', '.join(map(str, unknown))}, which the {topic} topic does not "
                         f"use: it needs {wanted}")
    bundle, missing = {}, []
    for t in (topic, *topics.get(topic).uses):
        bundle[t] = {}
        for name in topics.get(t).names:
            obj = passed.get(name, namespace.get(name))
            if obj is None:
                missing.append(name)
            else:
                bundle[t][name] = obj
    return bundle, missing


def write_bundle(bundle: dict, folder: Path) -> Path:
    """The objects, pickled by value, and their source text (for the check that no torch shortcut
    is named, which reads source and never runs it)."""
    import cloudpickle
    (folder / "objects.pkl").write_bytes(cloudpickle.dumps(bundle))
    sources = {}
    for t, objs in bundle.items():
        parts = []
        for obj in objs.values():
            try:
                parts.append(inspect.getsource(obj))
            except (OSError, TypeError):
                pass
        sources[t] = "\n\n".join(parts)
    (folder / "sources.json").write_text(json.dumps(sources), encoding="utf-8")
    return folder


def check(topic: str | None = None, *objects, impl=None, timeout: float | None = None) -> Check:
    """Grade one topic, print its row and what to fix, and return a Check (falsy on failure).

    With objects (functions, classes), or in a notebook without impl: the notebook's own code,
    matched by name to the contract; a name not passed is taken from the notebook's namespace.
    With impl ('exercises', 'solutions' or a folder): the files there. Never calls sys.exit."""
    from kata import grading, scorecard
    if topic not in topics.NAMES:
        raise ValueError(f"unknown topic {topic!r}; topics are: {', '.join(topics.NAMES)}")
    out = scorecard.Out()
    defined = any(name in _namespace() for t in (topic, *topics.get(topic).uses) for name in topics.get(t).names)
    # a notebook's own code; in a script or a shell, exercises/ unless the program defines the names
    use_bundle = bool(objects) or (impl is None and (in_notebook() or defined))
    if use_bundle:
        bundle, missing = collect(topic, objects, _namespace())
        if missing:
            r = TopicResult(topics.get(topic))
            r.missing = (f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not defined: define "
                         f"{' and '.join(missing)} in a cell, or pass {'it' if len(missing) == 1 else 'them'} "
                         f"to check({topic!r}, ...)")
            return _report(r, out)
        with tempfile.TemporaryDirectory(prefix="kata-check-") as folder:
            write_bundle(bundle, Path(folder))
            r = grading.grade_in_subprocess([topic], bundle=folder, timeout=timeout)[topic]
    else:
        from kata.loader import resolve
        r = grading.grade_in_subprocess([topic], impl=str(resolve(impl)), timeout=timeout)[topic]
    return _report(r, out)


def _report(r, out) -> Check:
    from kata import scorecard
    out.line(scorecard.row(out, r).strip())
    for text in scorecard.details(r, hintstate.levels().get(r.topic.name), ask="notebook" if in_notebook() else "cli"):
        out.line(text)
    return Check(r.topic.name, r.passed, r.score, r.max_score, r.n_passed, len(r.tests), r.status.value)


def hint(topic: str, level: int | None = None) -> None:
    """Print the next hint for the topic (or hint `level`), as `python grader.py --hint` does."""
    for text in hintstate.hint_text(topic, level):
        print(text)


def explain(topic: str) -> None:
    """Print the topic's answers to viewer questions, as `python grader.py --explain` does."""
    print(hintstate.notes_text(topic))
