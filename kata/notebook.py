"""The kata in a notebook: check what you wrote in a cell, hints and notes.

    from grader import check, hint, explain
    check("batchnorm", batchnorm_forward)        # or check("batchnorm"): names from the notebook
    check("modules", Linear, BatchNorm1d, Tanh)
    check()                                      # the scorecard of every topic the notebook defines
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

from kata import hintstate, scorecard, topics
from kata.results import TopicResult


@dataclass
class Check:
    """What check() returns: the topic's verdict. Falsy when the topic fails, so
    `assert check("batchnorm", batchnorm_forward)` stops a notebook at an unfinished topic. A
    notebook shows nothing for it: check() has printed the verdict already."""
    topic: str
    passed: bool
    score: int
    max_score: int
    tests_passed: int
    tests_total: int
    status: str

    def __bool__(self) -> bool:
        return self.passed

    def _ipython_display_(self) -> None:
        """IPython calls this instead of echoing Check(topic=..., ...) under the check cell."""


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
    (folder / "cells.json").write_text(json.dumps(cell_lines(bundle)), encoding="utf-8")
    return folder


def _functions(obj) -> list:
    """The functions a notebook object is made of: itself, or a class's methods."""
    if inspect.isclass(obj):
        return [v for v in vars(obj).values() if inspect.isfunction(v)]
    return [obj] if inspect.isfunction(obj) else []


def cell_lines(bundle: dict) -> dict:
    """{qualified name: [first line, source lines]} of each function and method. cloudpickle ships
    code without its file (it names it "<dynamic-code>"), so without these lines an error in the
    learner process could not show the learner's line of the cell."""
    out = {}
    for objs in bundle.values():
        for obj in objs.values():
            for f in _functions(obj):
                try:
                    lines, first = inspect.getsourcelines(f)
                except (OSError, TypeError):
                    continue
                out[f.__qualname__] = [first, lines]
    return out


def show_cell_lines(bundle: dict, path: Path) -> None:
    """In the learner process, after unpickling: each function's code gets a file name that reads
    as a notebook cell (kata/plugin.py's where()) whose lines linecache knows, so a traceback
    shows "a notebook cell, line 2: return vocab_sizee" rather than "<dynamic-code>:2"."""
    import linecache
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for objs in bundle.values():
        for obj in objs.values():
            for f in _functions(obj):
                first, lines = cells.get(f.__qualname__, (0, None))
                if not lines or not isinstance(first, int) or first < 1:
                    continue
                name = f"<ipython-input-{f.__qualname__}>"
                linecache.cache[name] = (0, None, [""] * (first - 1) + lines, name)  # mtime None: kept
                f.__code__ = f.__code__.replace(co_filename=name)


def check(topic: str | None = None, *objects, impl=None, timeout: float | None = None, all: bool = False) -> Check:  # noqa: A002 - the learner types check("batchnorm", all=True)
    """Grade one topic, print its row and what to fix (or, once it passes, what to do next), and
    return a Check (falsy on failure). check() with no topic prints the scorecard of every topic
    the notebook defines a name of.

    With objects (functions, classes), or in a notebook without impl: the notebook's own code,
    matched by name to the topic's stub; a name not passed is taken from the notebook's namespace.
    With impl ('exercises', 'solutions' or a folder): the files there. all=True: every failing test,
    not only the first few that no cause explains. Never calls sys.exit."""
    if topic is None:
        if objects:
            raise ValueError("check() with objects needs the topic they are for: check(\"batchnorm\", batchnorm_forward)")
        return _scorecard(impl, timeout)
    if topic not in topics.NAMES:
        raise ValueError(f"unknown topic {topic!r}; topics are: {', '.join(topics.NAMES)}")
    defined = any(name in _namespace() for t in (topic, *topics.get(topic).uses) for name in topics.get(t).names)
    # a notebook's own code; in a script or a shell, exercises/ unless the program defines the names
    use_bundle = bool(objects) or (impl is None and (in_notebook() or defined))
    r = _grade([topic], objects, impl if not use_bundle else None, use_bundle, timeout)[topic]
    out = scorecard.Out()
    out.line(scorecard.row(out, r).strip())
    where = "notebook" if in_notebook() else "cli"
    for text in scorecard.details(r, hintstate.levels().get(topic), None if all else scorecard.SHOWN, ask=where):
        out.line(text)
    if r.passed:
        out.line(next_step(topic, where))
    return _verdict(topic, [r])


def _grade(names: list[str], objects, impl, use_bundle: bool, timeout) -> dict:
    """{topic: TopicResult}: the notebook's objects graded in a process of their own (a topic with
    a name defined nowhere is reported as missing, not graded), or the files of `impl`."""
    from kata import grading
    timeout = grading.TIMEOUT if timeout is None else timeout
    if not use_bundle:
        from kata.loader import resolve
        return grading.grade_in_subprocess(names, impl=str(resolve(impl)), timeout=timeout)
    bundle, results = {}, {}
    for topic in names:
        found, missing = collect(topic, objects, _namespace())
        if missing:
            results[topic] = TopicResult(topics.get(topic))
            results[topic].missing = (
                f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not defined: define "
                f"{' and '.join(missing)} in a cell, or pass {'it' if len(missing) == 1 else 'them'} to "
                f"check({topic!r}, ...)")
        else:
            bundle.update(found)
    graded = [t for t in names if t not in results]
    if graded:
        with tempfile.TemporaryDirectory(prefix="kata-check-") as folder:
            write_bundle(bundle, Path(folder))
            results.update(grading.grade_in_subprocess(graded, bundle=folder, timeout=timeout))
    return {t: results[t] for t in names}


def next_step(topic: str, where: str) -> str:
    """What to do once `topic` passes: in the workbook, its experiment cell, then the next topic."""
    following = topics.NAMES[topics.NAMES.index(topic) + 1:]
    then = f"topic {topics.NAMES.index(following[0]) + 1}, {following[0]} ({topics.get(following[0]).section})" \
        if following else "check() for your scorecard, then python -m kata lecture"
    if where == "notebook":
        from kata.workbook import experiment_after
        title = experiment_after(topic)
        return f"Next: run the experiment cell below{f' ({title})' if title else ''}, which now runs with your " \
               f"code; then {then}."
    return f"Next: {then}."


def _scorecard(impl, timeout) -> Check:
    """check(): the scorecard of the topics the notebook defines a name of (in a script or a
    shell that defines none, of the files of `impl` or exercises/)."""
    namespace = _namespace()
    defined = [t for t in topics.NAMES if any(name in namespace for name in topics.get(t).names)]
    use_bundle = impl is None and bool(defined)
    out = scorecard.Out()
    if impl is None and not defined and in_notebook():
        first = topics.TOPICS[0]
        out.line(f"the notebook defines none of the topics' functions yet: start with topic 1, {first.name} "
                 f"({', '.join(first.names)})")
        return _verdict("", [])
    names = defined if use_bundle else list(topics.NAMES)
    results = _grade(names, (), impl, use_bundle, timeout)
    out.line(scorecard.HEADER)
    for r in results.values():
        out.line(scorecard.row(out, r))
    following = scorecard.next_topic(results)
    score, most = sum(r.score for r in results.values()), sum(r.max_score for r in results.values())
    out.line(f"total: {score}/{most} points, {sum(r.passed for r in results.values())}/{len(results)} topics passed"
             + (f"; next: {following}: check({following!r}) says what is left" if following else ""))
    return _verdict("", list(results.values()))


def _verdict(topic: str, results: list) -> Check:
    """The Check of one topic's result, or of several together (topic '': check()'s scorecard)."""
    status = results[0].status.value if len(results) == 1 else \
        "passed" if results and all(r.passed for r in results) else "failing"
    return Check(topic, bool(results) and all(r.passed for r in results), sum(r.score for r in results),
                 sum(r.max_score for r in results), sum(r.n_passed for r in results),
                 sum(len(r.tests) for r in results), status)


def hint(topic: str, level: int | None = None) -> None:
    """Print the next hint for the topic (or hint `level`), as `python grader.py --hint` does."""
    for text in hintstate.hint_text(topic, level, "notebook" if in_notebook() else "cli"):
        print(text)


def explain(topic: str) -> None:
    """Print the topic's answers to viewer questions, as `python grader.py --explain` does."""
    print(hintstate.notes_text(topic))
