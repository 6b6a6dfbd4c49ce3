"""How results are shown: the scorecard rows, a topic's failures in full, the summary, and
Gradescope's results.json. Only rendering: the results come from kata/grading.py."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from kata import hintstate, topics
from kata.results import Status, TopicResult


class Out:
    """Plain text, or colours and a live progress line when writing to a terminal."""

    COLORS = {Status.PASSED: "32", Status.FAILING: "31", Status.SYNTAX_ERROR: "31", Status.ERROR: "31",
              Status.TIMED_OUT: "31", Status.MISSING: "31", Status.NOT_STARTED: "33",
              Status.USES_SOLUTIONS: "35", Status.NO_TESTS: "33"}

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.tty = tty and os.environ.get("TERM") != "dumb"
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self.live = False

    def paint(self, text: str, status: Status) -> str:
        code = self.COLORS.get(status)
        return f"\033[{code}m{text}\033[0m" if self.color and code else text

    def bold(self, text: str) -> str:
        return f"\033[1m{text}\033[0m" if self.color else text

    def line(self, text: str = "") -> None:
        self.clear()
        print(text, file=self.stream, flush=True)

    def progress(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.live = True

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.live = False


HEADER = "  #  topic            status          tests  points"


def row(out: Out, r: TopicResult) -> str:
    t = r.topic
    number = topics.NAMES.index(t.name) + 1
    tests = f"{r.n_passed}/{len(r.tests)}" if r.tests else "-"
    status = out.paint(f"{r.status.value:<14}", r.status)
    return f"{number:>3}  {t.name:<16} {status} {tests:>6}  {r.score:>3}/{t.points:<3}"


SHOWN = 3  # unexplained failure blocks shown before "N more failing tests" (STYLE: the first that teaches)

def details(r: TopicResult, hint_level: int | None = None, most: int | None = SHOWN,
            ask: str | None = "cli") -> list[str]:
    """A topic's verdict in full: problems first, then each cause (a catalogued mistake the code
    behaves like: its explanation once, and how many failing tests it explains), then the
    failures no cause explains, in the tests' lesson order (one block per distinct message, at
    most `most` blocks; None: all), then how to ask for a hint: on the command line ("cli"), in a
    notebook ("notebook"), or not at all (None: Gradescope, where neither can be run)."""
    from kata import diagnose
    from kata.report import unexplained
    name = r.topic.name
    flagged = [f"{name}: needs review, line {f['line']}: {f['why']}" for f in r.review] if ask else []  # not on
    # Gradescope, where kata/gradescope.py adds them as entries hidden from students
    if r.passed:
        return [f"{name}: all {len(r.tests)} tests pass.", *flagged]
    lines = [f"{name}: {text}" for text in (r.problem, r.missing, r.syntax_error) if text] + flagged
    if r.uses_solutions:
        lines.append(f"{name}: {r.uses_solutions}; it scores 0 until the code in your own file passes.")
    failing = [t for t in r.tests if not t.passed]
    if not failing:
        return lines
    lines.append(f"{name}: {len(failing)} of {len(r.tests)} tests failing")
    for cause in r.causes:  # what to change comes first, once per mistake
        entries = [(m, diagnose.mistake(name, m)) for m in cause.mistakes]
        titles = "; ".join(f"{e.title if e else m} [{m}]" for m, e in entries)
        lines.append(f"  CAUSE{', one of' if len(entries) > 1 else ''}: {titles}")
        for _, e in entries:
            lines += ["    " + part for part in (e.explain if e else "").splitlines()]
        lines.append(f"    (explains {len(cause.tests)} of the {len(failing)} failing tests)")
    groups = failure_groups(unexplained(r))
    for k, group in enumerate(groups):
        if most is not None and k == most:
            rest = sum(len(g) for g in groups[k:])
            more = hintstate.ask(ask, "all", name) if ask else ""
            lines.append(f"  ... {rest} more failing test{'s' * (rest != 1)}" + (f": {more} shows them all" if more else ""))
            break
        names = [t.name for t in group]
        if len(names) == 1:
            lines.append(f"  FAIL {names[0]}")
        else:
            shown = "every test" if len(names) == len(r.tests) else ", ".join(names[:2]) + \
                (f" and {len(names) - 2} more" if len(names) > 2 else "")
            first = "; the first says" if len({t.text for t in group}) > 1 else ""
            lines.append(f"  FAIL {len(names)} tests ({shown}){first}:")
        lines += ["    " + part for part in group[0].text.splitlines()]
    total = len(topics.hints(name))
    if total and ask:
        level = min((hint_level or 0) + 1, total)
        lines.append(f"  Stuck? {hintstate.ask(ask, 'hint', name)}   (hint {level} of {total})")
    return lines


def failure_groups(failing) -> list[list]:
    """Failures that say the same thing, together: one message shared by many tests (a stub's
    NotImplementedError), or the cases of one parametrized test."""
    groups: list[list] = []
    index: dict[tuple, list] = {}
    for t in failing:
        base = ("case of", t.name.split("[")[0])
        key = next((k for k in (("text", t.text), base) if k in index), ("text", t.text))
        if key not in index:
            index[key] = []
            groups.append(index[key])
        index.setdefault(base, index[key])
        index[key].append(t)
    return groups


def block_count(r: TopicResult, shown: int = SHOWN) -> int:
    """How many failure blocks the text report shows for a topic without --all: one per cause,
    then at most `shown` groups of unexplained failures."""
    from kata.report import unexplained
    if r.passed:
        return 0
    return len(r.causes) + min(shown, len(failure_groups(unexplained(r))))


def next_topic(results) -> str | None:
    return next((name for name in topics.NAMES if name in results and not results[name].passed), None)


def summary(results: dict, out: Out, show_details: bool, selected, hint_levels: dict, most: int | None = SHOWN) -> None:
    score = sum(r.score for r in results.values())
    maximum = sum(r.max_score for r in results.values())
    passed = sum(r.passed for r in results.values())
    out.line(f"total: {score}/{maximum} points, {passed}/{len(results)} topics passed")
    if show_details:
        for name in selected:
            out.line()
            for text in details(results[name], hint_levels.get(name), most):
                out.line(text)
        return
    for r in results.values():  # problems the learner must see even in the short form
        for text in (r.missing, r.syntax_error, r.uses_solutions):
            if text:
                out.line(f"  {r.topic.name}: {text}")
        if r.status == Status.TIMED_OUT:
            out.line(f"  {r.topic.name}: a call timed out (an infinite loop?); python grader.py {r.topic.name} "
                     "says which")
    name = next_topic(results)
    if name:
        topic = topics.get(name)
        out.line(f"next: {name} ({topic.section})")
        out.line(f"  pytest -m {name}")
        out.line(f"  python grader.py {name}")
    else:
        out.line("every topic passes: well done. Now see the lecture happen with your code: python -m kata lecture")


def results_json(results: dict, graded: str) -> dict:
    """Gradescope's results.json: one entry per topic (the README's Gradescope section). Each
    entry's extra_data is the topic's report entry (kata/report.py) and the top level's is the
    report's header, so a class report can be built from a Gradescope export (kata/classroom.py)."""
    from kata import remote, report
    from kata.testing import base_seed
    built = report.build(results, remote.learner_mode(), base_seed())
    entries = [{
        "name": f"{r.topic.name}: {r.topic.section}",
        "score": r.score,
        "max_score": r.max_score,
        "status": "passed" if r.passed else "failed",
        "output": "\n".join(details(r, ask=None)),
        "extra_data": {"topic": r.topic.name, **built["topics"][r.topic.name]},
    } for r in results.values()]
    return {"score": sum(e["score"] for e in entries), "max_score": sum(e["max_score"] for e in entries),
            "output": f"graded {graded}", "extra_data": {k: v for k, v in built.items() if k != "topics"},
            "tests": entries}


def write_json(path, results: dict, graded: str) -> None:
    Path(path).write_text(json.dumps(results_json(results, graded), indent=2) + "\n", encoding="utf-8")
