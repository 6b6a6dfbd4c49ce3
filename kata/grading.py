"""The grader's engine: run the topic tests with pytest in this process and collect one result
per topic. Learner code never runs here: the tests call it in the learner process
(kata/remote.py), so nothing it does (os._exit, an infinite loop, pytest.skip, patching pytest)
can reach the verdict or the report.

    python -m kata.grading TOPIC ... [--impl PATH | --bundle FILE] [--timeout S]
        prints the results as JSON: how a notebook's check() grades from a process of its own
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import gc
import io
import json
import re
import sys
from pathlib import Path

import pytest

from kata import diagnose, remote, review, topics
from kata.loader import BUILTIN, TESTS, show_path
from kata.results import Record, Status, TopicResult  # noqa: F401 - Status: the results, for importers

TIMEOUT = remote.CALL_TIMEOUT


# ---------------------------------------------------------------- static checks of learner files
def scan(path: Path) -> tuple[str, str]:
    """(syntax error, solutions import) for a learner file, each '' when there is none. The file is
    decoded as Python decodes it (its coding line, a BOM): what the import runs is what is scanned."""
    try:
        tree = ast.parse(review.read_source(path), filename=str(path))
    except SyntaxError as e:
        return f"{show_path(e.filename or path)}:{e.lineno}: syntax error: {e.msg}", ""
    except (UnicodeDecodeError, ValueError, LookupError, OSError) as e:
        return f"{show_path(path)}: cannot be read as Python source: {e}", ""
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            modules = [node.module]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            modules = [node.value] if re.search(r"(^solutions(\.|$))|solutions[/\\]", node.value) else []
        if any(m == "solutions" or m.startswith("solutions") and m[9:10] in "./\\" or "solutions/" in m
               or "solutions\\" in m for m in modules):
            return "", f"{show_path(path)}:{node.lineno} uses solutions/ (the reference), not your own code"
    return "", ""


def _review(path: Path) -> list[dict]:
    """What the learner's file does that the grading side cannot verify (kata/review.py)."""
    try:
        return review.flags(review.read_source(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, LookupError, OSError):
        return []


class GradingError(RuntimeError):
    """The tests could not run at all; the message says why."""


class GraderFailure(GradingError):
    """The kata itself failed while grading (its learner process could not run): exit status 3,
    never charged to the learner."""


def test_file(topic: str) -> Path:
    return TESTS / f"test_{topic}.py"


def topic_of_file(path) -> str:
    """The inverse of test_file, for what fails before any test exists (a file that cannot be
    collected); once collected, a test's topic is its marker (kata.plugin.topic_of)."""
    return Path(path).stem.removeprefix("test_")


# ---------------------------------------------------------------- running pytest
class Collector:
    """Collects kata.plugin's records as each test finishes, and collection errors."""

    def __init__(self, on_record=None):
        self.records: list[Record] = []
        self.collect_errors: dict[str, str] = {}
        self.on_record = on_record

    def pytest_collectreport(self, report):
        if report.failed:
            self.collect_errors[topic_of_file(report.nodeid.split("::")[0])] = str(report.longrepr)[-3000:]

    def pytest_configure(self, config):
        self.config = config

    @pytest.hookimpl(trylast=True)  # after kata.plugin has made the record
    def pytest_runtest_logfinish(self, nodeid, location):
        records = getattr(self.config, "kata_records", [])
        if records and records[-1].id == nodeid and (not self.records or self.records[-1] is not records[-1]):
            self.records.append(records[-1])
            if self.on_record:
                self.on_record(records[-1])


UNUSED_PLUGINS = ("cacheprovider", "benchmark", "hypothesispytest", "timeout", "logging", "warnings", "faulthandler",
                  "junitxml", "doctest", "pastebin", "stepwise")


def pytest_args(files, impl: str | None, timeout: float, bundle: str | None = None) -> list[str]:
    # no tracebacks (formatting them costs more than the tests; the records carry the lesson), no
    # output capture (learner code prints in its own process), and none of the plugins grading does
    # not use: together they cost a third of the run (1.6 s -> 1.1 s on 2 cores)
    # --noconftest: no conftest.py is read (the kata's plugin comes with -p), so one planted among the
    # tests by learner code cannot hook into the verdict
    args = [*map(str, files), "-p", "kata.plugin", "--noconftest", "-q", "--tb=no", "-s",
            "-W", "ignore::pytest.PytestAssertRewriteWarning",
            *(f"-pno:{name}" for name in UNUSED_PLUGINS), "--kata-call-timeout", f"{timeout:g}", "--rootdir",
            str(TESTS.parent)]
    config = TESTS.parent / "pyproject.toml"
    args += ["-c", str(config)] if config.is_file() else ["-c", "/dev/null" if Path("/dev/null").exists() else "NUL"]
    return args + (["--kata-bundle", bundle] if bundle else ["--impl", str(impl)])


def grade(names=topics.NAMES, impl: Path | str = BUILTIN["exercises"], *, timeout: float = TIMEOUT,
          bundle: str | None = None, on_record=None) -> dict[str, TopicResult]:
    """Run the tests of the topics `names` against the implementation in `impl` (a folder), or the
    notebook objects in `bundle`; one TopicResult each, in curriculum order.
    on_record(record) is called as each test finishes."""
    import pytest
    results = {t: TopicResult(topics.get(t)) for t in names}
    if bundle is None:
        impl = Path(impl).resolve()
        for t, r in results.items():
            if not (impl / f"{t}.py").is_file():
                r.missing = (f"{show_path(impl / f'{t}.py')} does not exist: the {t} topic needs this file "
                             f"(python grader.py --reset {t} writes its stub there)")
                continue
            r.syntax_error, uses = scan(impl / f"{t}.py")
            r.uses_solutions = uses if impl != BUILTIN["solutions"].resolve() else ""
            r.review = _review(impl / f"{t}.py")
    else:
        sources = remote._read_sources(Path(bundle) / "sources.json")
        for t, r in results.items():
            r.review = review.flags(sources.get(t, ""))
    runnable = []
    for t in names:
        if not test_file(t).is_file():
            results[t].problem = f"no tests yet: {show_path(test_file(t))} does not exist"
        elif not results[t].missing:
            runnable.append(t)
    if not runnable:
        return results
    collector = Collector(on_record)
    # pytest runs gc.collect() five times at the end of a session; objects frozen here (torch's
    # thousands of modules and functions) are not scanned again: half a second saved on 2 cores
    gc.freeze()
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = pytest.main(pytest_args([test_file(t) for t in runnable], None if bundle else impl, timeout, bundle),
                           plugins=[collector])
    if remote.grader_failure:
        raise GraderFailure(f"the grader failed: {remote.grader_failure}")
    if code == pytest.ExitCode.INTERRUPTED:
        raise KeyboardInterrupt
    if code in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERNAL_ERROR) and not collector.records:
        raise GradingError(printed.getvalue().strip().splitlines()[-1] if printed.getvalue().strip()
                           else f"pytest could not run the tests (exit status {int(code)})")
    for rec in collector.records:
        if rec.topic in results:
            results[rec.topic].tests.append(rec)
    for topic, r in results.items():
        r.causes = diagnose.causes(r.tests, topic)
    for topic, text in collector.collect_errors.items():
        if topic in results:
            results[topic].problem = f"the test file could not be collected:\n{text}"
    return results


# ---------------------------------------------------------------- a process of its own
def grade_in_subprocess(names, impl: str | None = None, bundle: str | None = None,
                        timeout: float = TIMEOUT) -> dict[str, TopicResult]:
    """grade() in a new process: what a notebook kernel (where learner code runs) uses, so that
    the verdict is made where no learner code has ever run."""
    import os
    import subprocess
    command = [sys.executable, "-m", "kata.grading", *names, "--timeout", str(timeout)]
    command += ["--bundle", bundle] if bundle else ["--impl", str(impl)]
    here = str(Path(__file__).resolve().parent.parent)  # this kata, installed or in a clone, comes first
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)  # in the caller's folder
    try:
        data = json.loads(done.stdout)
    except ValueError:
        raise RuntimeError(f"the grading process failed (exit {done.returncode}):\n{done.stderr[-2000:]}") from None
    return {d["topic"]: TopicResult.from_dict(d) for d in data}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kata.grading")
    parser.add_argument("topics", nargs="+", choices=topics.NAMES)
    parser.add_argument("--impl", default=None)
    parser.add_argument("--bundle", default=None)
    parser.add_argument("--timeout", type=float, default=TIMEOUT)
    args = parser.parse_args(argv)
    impl = None if args.bundle else args.impl
    if not args.bundle:
        from kata.loader import resolve
        impl = resolve(impl)  # no --impl: $KATA_IMPL, else exercises
    results = grade(args.topics, impl, timeout=args.timeout, bundle=args.bundle)
    json.dump([r.as_dict() for r in results.values()], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
