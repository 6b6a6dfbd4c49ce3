"""The grader's engine: run the topic tests with pytest in worker processes that learner code
cannot take down with it, and collect one result per topic.

A worker is a `pytest` run over some topics' test files with a small plugin (`Reporter`) that
streams each test's outcome to the grader as a JSON line on a pipe. Workers are forked from a
process that has already imported torch and pytest (the CLI and --watch), or started as
`python -m kata.grading` where forking is unsafe (a notebook kernel has threads) or missing.
If a worker dies mid-run (os._exit, a crash) or stops answering (a loop that swallows the
timeout), the test in flight fails with that reason, the rest of its topic is marked not run,
and a new worker runs the topics not yet started: no topic is ever silently dropped.

Per-test timeouts are pytest-timeout's (`--timeout`); skipped counts as failed.
"""
from __future__ import annotations

import ast
import gc
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kata.loader import BUILTIN, ROOT
from kata.topics import NAMES, Topic, get

TIMEOUT = 5          # seconds per test (pytest-timeout); our tests take well under 0.5 s per topic
GRACE = 10           # extra seconds before a worker whose test ignores the timeout is killed
COLLECT_LIMIT = 120  # seconds a worker may take to start and collect (a cold torch import in Colab)
MISTAKE = re.compile(r"\[mistake: ([\w.-]+)\]")


# ---------------------------------------------------------------- results
@dataclass
class TestResult:
    id: str        # pytest node id
    passed: bool
    text: str = ""  # why it failed: the teaching message and the learner's own frames

    @property
    def name(self) -> str:
        return self.id.split("::", 1)[-1]


@dataclass
class TopicResult:
    topic: Topic
    tests: list = field(default_factory=list)   # TestResult, in run order
    problem: str = ""          # no tests, a broken test file: nothing the learner can fix
    syntax_error: str = ""     # "FILE:LINE: syntax error: ..." from the learner's file
    uses_solutions: str = ""   # "FILE:LINE imports solutions" when the learner's file does

    @property
    def n_passed(self) -> int:
        return sum(t.passed for t in self.tests)

    @property
    def passed(self) -> bool:
        return bool(self.tests) and self.n_passed == len(self.tests) and not self.problem \
            and not self.uses_solutions

    @property
    def not_started(self) -> bool:
        """Nothing passes and every failure is the stub's NotImplementedError."""
        return bool(self.tests) and not self.n_passed and all(
            "NotImplementedError" in t.text for t in self.tests)

    @property
    def status(self) -> str:
        if self.problem:
            return "no tests" if not self.tests else "error"
        if self.syntax_error:
            return "syntax error"
        if self.uses_solutions:
            return "uses solutions"
        if self.passed:
            return "passed"
        return "not started" if self.not_started else "failing"

    @property
    def score(self) -> int:
        return self.topic.points if self.passed else 0

    @property
    def max_score(self) -> int:
        return self.topic.points

    def mistakes(self) -> list[str]:
        """Catalogued mistake ids named by failing tests, first seen first."""
        seen = []
        for t in self.tests:
            for m in MISTAKE.findall(t.text):
                if m not in seen:
                    seen.append(m)
        return seen


# ---------------------------------------------------------------- static checks of learner files
def scan(path: Path) -> tuple[str, str]:
    """(syntax error, solutions import) for a learner file, each '' when there is none."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except FileNotFoundError:
        return f"{path} does not exist", ""
    except SyntaxError as e:
        return f"{e.filename}:{e.lineno}: syntax error: {e.msg}", ""
    except (UnicodeDecodeError, ValueError) as e:
        return f"{path}: cannot be read as Python source: {e}", ""
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
            return "", f"{path}:{node.lineno} uses solutions/ (the reference), not your own code"
    return "", ""


def test_file(topic: str) -> Path:
    return ROOT / "tests" / f"test_{topic}.py"


def pytest_args(files, impl_dir: Path, timeout: float) -> list[str]:
    # hypothesis's plugin imports all of hypothesis at the end of every run (seconds, for nothing here)
    return [*map(str, files), "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
            "-W", "ignore::pytest.PytestAssertRewriteWarning", "--continue-on-collection-errors",
            f"--timeout={timeout:g}", "--impl", str(impl_dir), "--rootdir", str(ROOT),
            "-c", str(ROOT / "pyproject.toml")]


def worker_main(fd: int, impl_dir: str, timeout: float, files, threads: int | None) -> int:
    """Body of a worker process: run pytest with the Reporter plugin."""
    import pytest

    from kata.gradeplugin import Reporter
    warm()  # already done in a forked worker; a spawned one imports here
    if threads:
        import torch
        torch.set_num_threads(threads)  # several workers share the cores
    os.chdir(ROOT)
    return int(pytest.main(pytest_args(files, Path(impl_dir), timeout), plugins=[Reporter(fd, impl_dir, timeout)]))


# ---------------------------------------------------------------- the grader side
def warm() -> None:
    """Import what every worker needs once, so that forked workers start at once."""
    import pytest  # noqa: F401
    import pytest_timeout  # noqa: F401
    import torch  # noqa: F401
    import torch.nn.functional  # noqa: F401
    import kata.testing  # noqa: F401
    # pytest runs gc.collect() five times per session; frozen objects (torch's) are not scanned,
    # which turns a second of collection into milliseconds, and forks share the frozen pages
    gc.freeze()


def can_fork() -> bool:
    """Fork is fast and safe from a single-threaded process; a notebook kernel has threads."""
    return hasattr(os, "fork") and threading.active_count() == 1


class Worker:
    """One running pytest process over some topics, and what it has reported so far."""

    def __init__(self, topics, impl_dir: Path, timeout: float, fork: bool, threads: int | None):
        self.topics = list(topics)
        self.log = tempfile.TemporaryFile()
        read, write = os.pipe()
        files = [test_file(t) for t in self.topics]
        sys.stdout.flush()
        sys.stderr.flush()
        if fork:
            self.proc = None
            self.pid = os.fork()
            if self.pid == 0:  # the worker: never returns into the grader's code
                code = 70
                try:
                    os.close(read)
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                    null = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(null, 0)
                    os.dup2(self.log.fileno(), 1)
                    os.dup2(self.log.fileno(), 2)
                    code = worker_main(write, str(impl_dir), timeout, files, threads)
                finally:
                    os._exit(code)
        else:
            command = [sys.executable, "-m", "kata.grading", str(write), str(impl_dir), str(timeout),
                       str(threads or 0), *map(str, files)]
            self.proc = subprocess.Popen(command, pass_fds=[write], cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=self.log, stderr=subprocess.STDOUT)
            self.pid = self.proc.pid
        os.close(write)
        self.fd = read
        self.buffer = b""
        self.inflight: str | None = None
        self.since = time.monotonic()
        self.collected: dict[str, str] = {}   # node id -> topic
        self.results: dict[str, TestResult] = {}
        self.collect_errors: dict[str, str] = {}
        self.done = False
        self.eof = False

    def read(self) -> list[dict]:
        chunk = os.read(self.fd, 65536)
        if not chunk:
            self.eof = True
            return []
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        events = [json.loads(line) for line in lines if line.strip()]
        for event in events:
            self.since = time.monotonic()
            kind = event["ev"]
            if kind == "collected":
                self.collected = {nodeid: topic for nodeid, topic in event["tests"]}
            elif kind == "collect_error":
                topic = Path(event["path"].split("::")[0]).stem.removeprefix("test_")
                self.collect_errors[topic] = event["text"]
            elif kind == "start":
                self.inflight = event["id"]
            elif kind == "result":
                self.results[event["id"]] = TestResult(event["id"], event["passed"], event["text"])
                self.inflight = None
            elif kind == "done":
                self.done = True
        return events

    def overdue(self, timeout: float) -> bool:
        limit = timeout + GRACE if self.inflight else COLLECT_LIMIT
        return time.monotonic() - self.since > limit

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self) -> int:
        """Exit status, as a shell shows it (128 + signal for a signal)."""
        if self.proc is not None:
            code = self.proc.wait()
            return 128 - code if code < 0 else code
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

    def log_tail(self) -> str:
        self.log.seek(0)
        return self.log.read()[-1500:].decode("utf-8", "replace").strip()

    def close(self) -> None:
        os.close(self.fd)
        self.log.close()


def grade(topics=NAMES, impl_dir: Path = BUILTIN["exercises"], *, timeout: float = TIMEOUT,
          workers: int | None = None, fork: bool | None = None, on_topic=None, on_progress=None
          ) -> dict[str, TopicResult]:
    """Run the tests of `topics` against the implementation in `impl_dir`; one TopicResult each.

    on_topic(result) is called as each topic finishes; on_progress(topic, done, total) as each test does.
    """
    impl_dir = Path(impl_dir).resolve()
    fork = can_fork() if fork is None else fork
    results = {t: TopicResult(get(t)) for t in topics}
    flag = impl_dir != BUILTIN["solutions"].resolve()
    for t, r in results.items():
        r.syntax_error, uses = scan(impl_dir / f"{t}.py")
        r.uses_solutions = uses if flag else ""
    runnable = [t for t in topics if test_file(t).is_file()]
    for t in topics:
        if t not in runnable:
            results[t].problem = f"no tests yet: {_show(test_file(t))} does not exist"
    n = max(1, min(workers or min(os.cpu_count() or 1, 4), len(runnable)))
    queues = [runnable[k::n] for k in range(n)]  # interleaved: each worker gets early and late topics
    threads = 1 if n > 1 else None
    active = [Worker(q, impl_dir, timeout, fork, threads) for q in queues if q]
    finished: set[str] = set()

    def finish(topic: str) -> None:
        if topic not in finished:
            finished.add(topic)
            if on_topic:
                on_topic(results[topic])

    try:
        while active:
            ready, _, _ = select.select([w.fd for w in active], [], [], 0.5)
            for w in list(active):
                if w.fd in ready:
                    for event in w.read():
                        if event["ev"] == "result":
                            topic = w.collected.get(event["id"]) or _topic_from_id(event["id"])
                            results[topic].tests.append(w.results[event["id"]])
                            total = sum(1 for v in w.collected.values() if v == topic)
                            if on_progress:
                                on_progress(topic, len(results[topic].tests), total)
                            if len(results[topic].tests) == total:
                                finish(topic)
                elif w.overdue(timeout):
                    w.kill()
                    w.eof = True
                    w.killed = True
                if not w.eof:
                    continue
                active.remove(w)
                rest = _settle(w, results, timeout)
                for t in w.topics:
                    if t not in rest:
                        finish(t)
                w.close()
                if rest:
                    active.append(Worker(rest, impl_dir, timeout, fork, threads))
    except BaseException:
        for w in active:
            w.kill()
            w.wait()
            w.close()
        raise
    return results


def _show(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _topic_from_id(nodeid: str) -> str:
    return Path(nodeid.split("::")[0]).stem.removeprefix("test_")


def _settle(w: Worker, results: dict, timeout: float) -> list[str]:
    """After a worker ended: fail what it left unreported; return the topics to run again."""
    code = w.wait()
    for topic, text in w.collect_errors.items():
        if topic in results:
            results[topic].problem = f"the test file could not be collected:\n{text}"
    unreported = [nodeid for nodeid in w.collected if nodeid not in w.results]
    if w.done and not unreported:
        return []
    if getattr(w, "killed", False):
        why = (f"stopped after {timeout + GRACE:g} s without finishing: the code under test ignored the "
               f"{timeout:g} s timeout (a loop that catches every exception?)")
    elif w.done:
        why = f"the test run was interrupted (exit status {code})"
    else:
        why = (f"the test process ended abruptly (exit status {code}): the code under test called "
               "os._exit() or crashed the interpreter. No test can catch that, so it counts as a failure")
    if not w.collected:  # it died before it could list the tests: report, do not try again
        for t in w.topics:
            results[t].problem = results[t].problem or f"{why}\n{w.log_tail()}"
        return []
    started = {w.collected[n] for n in w.results} | ({w.collected.get(w.inflight)} if w.inflight else set())
    for nodeid in unreported:
        topic = w.collected[nodeid]
        if topic in started:
            text = why if nodeid == w.inflight else f"not run: {why}, in an earlier test of this topic"
            results[topic].tests.append(TestResult(nodeid, False, text))
    rest = [t for t in w.topics if t not in started and t in set(w.collected.values())]
    if rest and not started:  # no progress at all: report, do not loop
        for t in rest:
            results[t].problem = f"{why}\n{w.log_tail()}"
        return []
    return rest


if __name__ == "__main__":  # a spawned worker: python -m kata.grading FD IMPL TIMEOUT THREADS FILE...
    fd, impl, seconds, n_threads, *paths = sys.argv[1:]
    sys.exit(worker_main(int(fd), impl, float(seconds), paths, int(n_threads) or None))
