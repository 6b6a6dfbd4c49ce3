"""The grader's pytest plugin, loaded in each worker process (see kata/grading.py): it streams one
JSON line per event (collected, start, result, done) on a pipe, with each failure summarised as
the test's message plus the learner's own frames."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kata.topics import NAMES


class Reporter:
    """pytest plugin in the worker: one JSON line per event on the pipe `fd`."""

    def __init__(self, fd: int, impl_dir: str, timeout: float):
        self.out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")
        self.impl_dir = Path(impl_dir).resolve()
        self.timeout = timeout
        self.current: dict[str, list] = {}

    def send(self, **event) -> None:
        self.out.write(json.dumps(event) + "\n")
        self.out.flush()

    def pytest_collectreport(self, report):
        if report.failed:
            self.send(ev="collect_error", path=report.nodeid, text=str(report.longrepr)[-4000:])

    def pytest_collection_finish(self, session):
        self.send(ev="collected", tests=[[item.nodeid, _topic_of(item)] for item in session.items])

    def pytest_runtest_logstart(self, nodeid, location):
        self.current[nodeid] = []
        self.send(ev="start", id=nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if call.excinfo is not None and not report.passed:
            report.kata_text = self.describe(call.excinfo)
        return report

    def pytest_runtest_logreport(self, report):
        if report.passed:
            return
        text = getattr(report, "kata_text", None)
        if text is None:
            text = str(report.longrepr) if not isinstance(report.longrepr, tuple) else report.longrepr[2]
        if report.skipped:
            text = f"skipped ({text}): a skipped test is not a passed test"
        self.current.setdefault(report.nodeid, []).append(text)

    def pytest_runtest_logfinish(self, nodeid, location):
        problems = self.current.pop(nodeid, [])
        self.send(ev="result", id=nodeid, passed=not problems, text="\n".join(problems))

    def pytest_sessionfinish(self, session):
        self.send(ev="done")

    def describe(self, excinfo) -> str:
        """The exception's message (our tests' messages are the lesson) and the learner's own frames."""
        e = excinfo.value
        message = str(e)
        if message.startswith("Timeout (>"):
            head = (f"timed out after {self.timeout:g} s: the code under test is still running "
                    "(an infinite loop, or a loop much longer than this exercise needs)")
        elif isinstance(e, AssertionError) or type(e).__name__ == "LearnerImportError":
            head = message
        else:
            head = f"{type(e).__name__}: {message}"
        frames = []
        for entry in excinfo.traceback:
            path = Path(str(entry.path))
            if path.is_absolute() and self.impl_dir in path.resolve().parents:
                try:
                    line = str(entry.statement).strip()
                except Exception:  # noqa: BLE001 - source may be gone or unreadable
                    line = ""
                frames.append(f"  at {_show(path)}:{entry.lineno + 1} in {entry.name}: {line}")
        return "\n".join([head, *frames[-6:]])


def _topic_of(item) -> str:
    marks = [m.name for m in item.iter_markers() if m.name in NAMES]
    if marks:
        return marks[0]
    stem = Path(str(item.path)).stem
    return stem[5:] if stem.startswith("test_") else stem


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)
