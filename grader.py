"""The kata's grader: a scorecard of every topic, the failing tests of one, hints, watch, reset.

    python grader.py                      # scorecard of every topic, and what to do next
    python grader.py batchnorm            # one topic, with its failing tests' messages in full
    python grader.py --watch              # re-grade each topic as you save its file
    python grader.py --hint batchnorm     # the next hint: concept, then formula, then near-solution
    python grader.py --explain batchnorm  # answers to viewer questions on the topic
    python grader.py --reset batchnorm    # back up your file under .kata/backups/, put the stub back
    python grader.py --list               # topics in order, with points and status
    python grader.py --impl solutions --json results.json   # Gradescope's results.json

Exit status: 0 when every selected topic passes, 1 when any fails, 2 for a usage error.
In a notebook: `from grader import check; check("batchnorm")`.

The tests run under pytest in worker processes (kata/grading.py), so no learner code (os._exit,
an infinite loop, pytest.skip) can pass a test or drop a topic from the scorecard.
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kata import topics
from kata.loader import BUILTIN, ROOT, ImplNotFound, resolve

POLL = 0.1  # seconds between checks of the watched files' modification times


def state_dir() -> Path:
    """Where hint levels and backups live: .kata/ at the repository root (KATA_STATE moves it)."""
    return Path(os.environ.get("KATA_STATE") or ROOT / ".kata")


class UsageError(Exception):
    """Exit status 2, with a one-line message."""


# ---------------------------------------------------------------- output
class Out:
    """Plain text, or colours and a live progress line when writing to a terminal."""

    COLORS = {"passed": "32", "failing": "31", "syntax error": "31", "error": "31", "not started": "33",
              "uses solutions": "35", "no tests": "33"}

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.tty = tty and os.environ.get("TERM") != "dumb"
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self.live = False

    def paint(self, text: str, status: str) -> str:
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


def row(out: Out, r) -> str:
    t = r.topic
    number = topics.NAMES.index(t.name) + 1
    tests = f"{r.n_passed}/{len(r.tests)}" if r.tests else "-"
    status = out.paint(f"{r.status:<14}", r.status)
    return f"{number:>3}  {t.name:<16} {status} {tests:>6}  {r.score:>3}/{t.points:<3}"


HEADER = "  #  topic            status          tests  points"


def details(r, hint_level: int | None = None, most: int | None = None) -> list[str]:
    """A topic's failing tests in full (the first `most` distinct messages), known mistakes
    explained, then the generic hint."""
    name = r.topic.name
    lines = []
    if r.problem:
        lines += [f"{name}: {r.problem}"]
    if r.syntax_error:
        lines += [f"{name}: {r.syntax_error}"]
    if r.uses_solutions:
        lines += [f"{name}: {r.uses_solutions}; it scores 0 until the code in your own file passes."]
    failing = [t for t in r.tests if not t.passed]
    if r.passed:
        return [f"{name}: all {len(r.tests)} tests pass."]
    if not failing:
        return lines
    lines.append(f"{name}: {len(failing)} of {len(r.tests)} tests failing")
    groups: dict[str, list[str]] = {}
    for t in failing:  # one message shared by many tests (a stub's NotImplementedError) is shown once
        groups.setdefault(t.text, []).append(t.name)
    for k, (text, names) in enumerate(groups.items()):
        if most is not None and k == most:
            rest = sum(len(n) for n in list(groups.values())[k:])
            lines.append(f"  ... and {rest} more failing (python grader.py {name} shows them all)")
            break
        shown = (f"all {len(names)} tests" if len(names) == len(r.tests) > 1 else
                 ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else ""))
        lines.append(f"  FAIL {shown}")
        lines += ["    " + part for part in text.splitlines()]
    catalog = {m.id: m for m in topics.mistakes(name)}
    for mistake_id in r.mistakes():
        mistake = catalog.get(mistake_id)
        if mistake:
            lines.append(f"  Known mistake, {mistake.title} [{mistake_id}]:")
            lines += ["    " + part for part in mistake.explain.splitlines()]
    total = len(topics.hints(name))
    if total:
        level = min((hint_level or 0) + 1, total)
        lines.append(f"  Stuck? python grader.py --hint {name}   (hint {level} of {total})")
    return lines


def next_topic(results) -> str | None:
    return next((name for name in topics.NAMES if name in results and not results[name].passed), None)


# ---------------------------------------------------------------- grading
def grade(selected, impl: Path, out: Out, timeout: float, rows: bool = True, workers=None):
    """Grade `selected` topics, printing rows (if `rows`) as topics finish; return the results."""
    from kata import grading
    grading.warm()
    out.line(f"grading {_show(impl)} ({len(selected)} topic{'s' * (len(selected) != 1)})")
    if rows:
        out.line(out.bold(HEADER))
    shown = []
    ready = {}

    def on_topic(r):  # rows appear in curriculum order as soon as every earlier topic is done
        ready[r.topic.name] = r
        while len(shown) < len(selected) and selected[len(shown)] in ready:
            if rows:
                out.line(row(out, ready[selected[len(shown)]]))
            shown.append(selected[len(shown)])

    def on_progress(topic, done, total):
        out.progress(f"     running {topic} {done}/{total} ...")

    results = grading.grade(selected, impl, timeout=timeout, workers=workers,
                            on_topic=on_topic, on_progress=on_progress)
    for name in selected:
        if name not in shown:
            on_topic(results[name])
    return results


def summary(results, out: Out, show_details: bool, selected) -> None:
    score = sum(r.score for r in results.values())
    maximum = sum(r.max_score for r in results.values())
    passed = sum(r.passed for r in results.values())
    out.line(f"total: {score}/{maximum} points, {passed}/{len(results)} topics passed")
    hints = _hint_state()
    if show_details:
        for name in selected:
            out.line()
            for text in details(results[name], hints.get(name)):
                out.line(text)
        return
    for r in results.values():  # problems the learner must see even in the short form
        for text in (r.syntax_error, r.uses_solutions):
            if text:
                out.line(f"  {r.topic.name}: {text}")
    name = next_topic(results)
    if name:
        topic = topics.get(name)
        out.line(f"next: {name} ({topic.section})")
        out.line(f"  pytest -m {name}")
        out.line(f"  python grader.py {name}")
    else:
        out.line("every topic passes: well done.")


def write_json(path: str, results, impl: Path) -> None:
    """Gradescope's results.json: one entry per topic."""
    entries = []
    for r in results.values():
        entries.append({
            "name": f"{r.topic.name}: {r.topic.section}",
            "score": r.score,
            "max_score": r.max_score,
            "status": "passed" if r.passed else "failed",
            "output": "\n".join(details(r)),
        })
    data = {"score": sum(e["score"] for e in entries), "max_score": sum(e["max_score"] for e in entries),
            "output": f"graded {impl}", "tests": entries}
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- hints, notes, reset
def _hint_state() -> dict:
    try:
        return json.loads((state_dir() / "hints.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def show_hint(name: str, out: Out) -> None:
    levels = topics.hints(name)
    if not levels:
        out.line(f"{name}: no hints written yet; python grader.py {name} shows what the tests expect.")
        return
    state = _hint_state()
    level = min(state.get(name, 0) + 1, len(levels))
    state[name] = level
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "hints.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    kind = {1: "the concept", 2: "the formula"}.get(level, "near the solution")
    out.line(out.bold(f"{name}, hint {level} of {len(levels)} ({kind}):"))
    out.line(levels[level - 1].strip())
    if level < len(levels):
        out.line(f"\n(python grader.py --hint {name} again for the next level)")
    else:
        out.line(f"\n(that was the last hint; python grader.py --explain {name} answers the viewer questions)")


def show_notes(name: str, out: Out) -> None:
    text = topics.notes(name).strip()
    out.line(text or f"{name}: no notes written yet.")


def reset(name: str, impl: Path, out: Out) -> Path | None:
    """Back up the learner's file, then write the generated stub. Returns the backup's path."""
    from kata.generate import expected
    if impl == BUILTIN["solutions"].resolve():
        raise UsageError("--reset works on your exercises, not on solutions/")
    target = impl / f"{name}.py"
    backup = None
    if target.is_file():
        folder = state_dir() / "backups"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = folder / f"{name}-{stamp}.py"
        n = 1
        while backup.exists():  # two resets in one second keep both backups
            backup = folder / f"{name}-{stamp}-{n}.py"
            n += 1
        shutil.copy2(target, backup)
        out.line(f"backed up {_show(target)} to {_show(backup)}")
    target.write_text(expected(name), encoding="utf-8")
    out.line(f"wrote the {name} stub to {_show(target)}")
    return backup


# ---------------------------------------------------------------- watch
def watch(selected, impl: Path, out: Out, timeout: float) -> int:
    """Grade once, then re-grade each topic whose file changes, from this warm process."""
    from kata import grading
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops, even if started in the background
    results = grade(selected, impl, out, timeout)
    summary(results, out, False, selected)

    def stamp(name):
        try:
            st = (impl / f"{name}.py").stat()
            return st.st_mtime_ns, st.st_size
        except OSError:
            return None

    seen = {name: stamp(name) for name in selected}
    out.line(f"\nwatching {_show(impl)} for saves (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(POLL)
            for name in selected:
                now = stamp(name)
                if now == seen[name]:
                    continue
                seen[name] = now
                out.progress(f"     running {name} ...")
                r = grading.grade([name], impl, timeout=timeout, workers=1)[name]
                results[name] = r
                out.line(f"\n[{time.strftime('%H:%M:%S')}] {row(out, r).strip()}")
                if not r.passed:
                    for text in details(r, _hint_state().get(name), most=3):
                        out.line(text)
                else:
                    following = next_topic(results)
                    out.line(f"{name} passes. " + (f"next: {following}" if following else "every topic passes."))
                seen[name] = stamp(name)
    except KeyboardInterrupt:
        out.line("\nstopped watching.")
    return 0


# ---------------------------------------------------------------- notebook
@dataclass
class Check:
    """What check() returns: the topic's verdict."""
    topic: str
    passed: bool
    score: int
    max_score: int
    tests_passed: int
    tests_total: int
    status: str


def check(topic: str, impl=None, *, timeout: float = 5) -> Check:
    """Grade one topic from a notebook, print its summary, return a Check. Never calls sys.exit."""
    from kata import grading
    if topic not in topics.NAMES:
        raise ValueError(_unknown(topic))
    folder = resolve(impl)
    if grading.can_fork():
        grading.warm()
    r = grading.grade([topic], folder, timeout=timeout, workers=1)[topic]
    out = Out()
    out.line(row(out, r).strip())
    for text in details(r, _hint_state().get(topic)):
        out.line(text)
    return Check(topic, r.passed, r.score, r.max_score, r.n_passed, len(r.tests), r.status)


# ---------------------------------------------------------------- command line
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name, topics.NAMES, n=1)
    return (f"unknown topic {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
            + f"; topics are: {', '.join(topics.NAMES)}")


def _topic(name: str) -> str:
    if name not in topics.NAMES:
        raise UsageError(_unknown(name))
    return name


def _show(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return rel if not rel.startswith("..") else str(path)


def parse(argv):
    p = _Parser(prog="grader.py", description=__doc__.split("\n\n")[0],
                epilog="Exit status: 0 every selected topic passes, 1 any fails, 2 usage error.")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="only these topics, with failing tests in full")
    p.add_argument("--impl", metavar="exercises|solutions|PATH", help="what to grade (default: $KATA_IMPL or exercises)")
    p.add_argument("--json", metavar="PATH", help="also write Gradescope's results.json here")
    p.add_argument("--timeout", type=float, default=5, metavar="SECONDS", help="per test (default 5)")
    p.add_argument("--workers", type=int, default=None, metavar="N", help="parallel test processes")
    one = p.add_mutually_exclusive_group()
    one.add_argument("--hint", metavar="TOPIC", help="show the next hint level for TOPIC")
    one.add_argument("--explain", metavar="TOPIC", help="answers to viewer questions for TOPIC")
    one.add_argument("--reset", metavar="TOPIC", help="back up your TOPIC file and put the stub back")
    one.add_argument("--watch", action="store_true", help="re-grade each topic when its file is saved")
    one.add_argument("--list", action="store_true", help="topics in order with points and status")
    return p.parse_args(argv)


def main(argv=None) -> int:
    out = Out()
    try:
        args = parse(argv)
        chosen = {_topic(t) for t in args.topics}
        selected = [t for t in topics.NAMES if t in chosen] or list(topics.NAMES)
        for flag in ("hint", "explain", "reset"):
            if getattr(args, flag):
                _topic(getattr(args, flag))
        try:
            impl = resolve(args.impl)
        except ImplNotFound as e:
            raise UsageError(str(e)) from None
        if args.hint:
            show_hint(args.hint, out)
            return 0
        if args.explain:
            show_notes(args.explain, out)
            return 0
        if args.reset:
            reset(args.reset, impl, out)
            return 0
        if args.watch:
            return watch(selected, impl, out, args.timeout)
        results = grade(selected, impl, out, args.timeout, not args.list, args.workers)
        if args.list:
            for name in selected:
                r = results[name]
                out.line(f"{topics.NAMES.index(name) + 1:>3}. {name:<16} {r.max_score:>3} points  {r.status}"
                         f"  ({r.topic.section})")
        else:
            summary(results, out, bool(args.topics), selected)
        if args.json:
            write_json(args.json, results, impl)
            out.line(f"wrote {args.json}")
        return 0 if all(r.passed for r in results.values()) else 1
    except UsageError as e:
        print(f"grader.py: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out.line("\ninterrupted.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
