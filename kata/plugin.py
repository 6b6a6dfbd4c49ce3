"""The kata's pytest plugin: which implementation is tested, seeds, torch's state between tests,
and one structured record per test (its topic, outcome, kind of failure, mistake, message).

    KATA_IMPL=solutions pytest            # or: pytest --impl solutions
    pytest --impl a --impl b              # several folders at once
    pytest --impl-for batchnorm=a ...     # a folder for one topic's tests only (the mistake catalog)
    KATA_SEED=7 pytest                    # another draw of every random input
    pytest --kata-json results.json       # the records, for tools (the mistake catalog reads them)

The root conftest.py loads it for `pytest`; the grader passes it to pytest.main. Learner code
never runs in this process: the `impl` fixture is a kata.remote.Remote, whose calls run in the
learner process.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from kata import diagnose, remote, topics
from kata.failure import Kind, LearnerProcessFailure
from kata.loader import TESTS, ImplNotFound, chosen, resolve, show_path
from kata.results import Record
from kata.testing import base_seed, seed_for

# The tests use small tensors, where torch's thread pool only adds contention: on a busy 2-core
# machine one training-mode F.batch_norm call took 50-95 ms with threads, 0.02 ms without.
torch.set_num_threads(1)


def topic_of(item) -> str:
    """A test's topic: its module's marker (`pytestmark = pytest.mark.<topic>`)."""
    return next((m.name for m in item.iter_markers() if m.name in topics.NAMES), "")


# ---------------------------------------------------------------- options
def pytest_addoption(parser):
    group = parser.getgroup("kata")
    group.addoption("--impl", action="append", default=None, metavar="exercises|solutions|PATH",
                    help="implementation to test (default: $KATA_IMPL or exercises); repeat to test several")
    group.addoption("--impl-for", action="append", default=None, metavar="TOPIC=PATH",
                    help="test PATH with tests/test_TOPIC.py only; repeatable (the mistake catalog runs the "
                         "mutants of several topics in one process this way)")
    group.addoption("--kata-bundle", default=None, metavar="FILE",
                    help="grade the notebook objects pickled in FILE (grader.check)")
    group.addoption("--kata-call-timeout", type=float, default=remote.CALL_TIMEOUT, metavar="SECONDS",
                    help=f"seconds one call of learner code may take (default {remote.CALL_TIMEOUT:g})")
    group.addoption("--kata-json", default=None, metavar="PATH", help="write one record per test to PATH")


def pytest_configure(config):
    planted = sorted(str(p) for p in TESTS.rglob("conftest.py"))
    if planted:  # the kata has none there: one would run in this process, beside the verdict
        raise pytest.UsageError(f"{', '.join(planted)} is not part of the kata and could change what the tests "
                                "report: remove it (git status shows what changed)")
    for t in topics.TOPICS:  # `pytest -m batchnorm`: one marker per topic, from the one list of topics
        config.addinivalue_line("markers", f"{t.name}: topic {topics.NAMES.index(t.name) + 1}, {t.section}")
    if config.getoption("kata_bundle"):
        bundle = Path(config.getoption("kata_bundle"))
        remote.shared_process(config.getoption("kata_call_timeout")).bundle = str(bundle / "objects.pkl")
        return
    for impl in chosen(config.getoption("impl")):
        try:
            resolve(impl)
        except ImplNotFound as e:
            raise pytest.UsageError(str(e)) from None
    for pair in config.getoption("impl_for") or []:
        topic, _, path = pair.partition("=")
        if not topic or not path:
            raise pytest.UsageError(f"--impl-for {pair!r}: expected TOPIC=PATH")
        try:
            resolve(path)
        except ImplNotFound as e:
            raise pytest.UsageError(str(e)) from None
    remote.shared_process(config.getoption("kata_call_timeout"))


def pytest_report_header(config):
    if config.getoption("kata_bundle"):
        return "kata: testing the notebook's objects"
    shown = ", ".join(f"{i} ({show_path(resolve(i))})" for i in chosen(config.getoption("impl")))
    return f"kata: testing {shown}; KATA_SEED={base_seed()}; learner code runs in a process of its own"


def _impls(config) -> list[str]:
    if config.getoption("kata_bundle"):
        return [f"bundle:{config.getoption('kata_bundle')}"]
    return chosen(config.getoption("impl"))


def pytest_generate_tests(metafunc):
    if "impl" not in metafunc.fixturenames:
        return
    pairs = metafunc.config.getoption("impl_for")
    impls = None
    if pairs:
        topic = topic_of(metafunc.definition)
        impls = [path for t, _, path in (pair.partition("=") for pair in pairs) if t == topic]
    elif len(_impls(metafunc.config)) > 1:
        impls = _impls(metafunc.config)
    if impls is not None:  # the folder's name in every test id says whose verdict it is
        metafunc.parametrize("impl", impls, indirect=True, scope="session", ids=[Path(i).name for i in impls])


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def impl(request) -> remote.Remote:
    """The implementation under test; `impl.load('batchnorm')` is its batchnorm module, whose
    functions run in the learner process."""
    return remote.Remote(getattr(request, "param", None) or _impls(request.config)[0])


@pytest.fixture
def seed(request) -> int:
    """This test's seed, derived from KATA_SEED and the test's id without the implementation: a
    mistake replayed for diagnosis sees the inputs the learner's code saw (kata/diagnose.py)."""
    return seed_for(seed_key(request.node))


def seed_key(item) -> str:
    """The test file's name, the test's name and its parameters other than `impl`."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    shown = ",".join(f"{k}={params[k]!r}" for k in sorted(params) if k != "impl")
    return f"{Path(str(item.path)).name}::{item.originalname}[{shown}]"


@pytest.fixture
def gen(seed) -> torch.Generator:
    """A torch.Generator seeded for this test: pass it to every random draw."""
    return torch.Generator().manual_seed(seed)


@pytest.fixture(autouse=True)
def _torch_state_restored(request):
    """Learner calls carry torch's global state both ways (kata/remote.py), so a call that leaves
    autograd off or the default dtype changed changes it here too, as it would in one process. The
    test that checks for that sees it; the next test starts clean. The global generator starts
    each test from the test's seed (torch seeds it at random in each new process): a draw from it
    is the same in every run, and in a replay for diagnosis."""
    grad, dtype, rng = torch.is_grad_enabled(), torch.get_default_dtype(), torch.get_rng_state()
    # the CPU generator alone: torch.manual_seed also queues a seed for every lazy device backend,
    # recording a stack each time (0.5 s over the suite)
    torch.default_generator.manual_seed(seed_for("global:" + seed_key(request.node)))
    yield
    torch.set_grad_enabled(grad)
    torch.set_default_dtype(dtype)
    torch.set_rng_state(rng)


# ---------------------------------------------------------------- records
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call" or report.failed or report.skipped:
        report.kata = _record(item, call, report)
    frames = getattr(call.excinfo.value, "frames", None) if call.excinfo is not None else None
    if frames:  # plain pytest shows where in the learner's code it went wrong, below the lesson
        report.sections.append(("learner's code", "\n".join(
            f"{where(f, line)} in {fn}\n    {src}" for f, line, fn, src in frames)))
    return report


def _record(item, call, report) -> Record:
    rec = Record(item.nodeid, topic_of(item), report.passed)
    if report.passed:
        if call.when == "call" and rec.topic and _config is not None:  # evidence against a mistake
            _config.kata_passing.setdefault(_whose(item), []).append(remote.shared_process().tape or [])
        return rec
    e = call.excinfo.value if call.excinfo is not None else None
    if report.skipped:  # our tests never skip themselves: a skip is a failure here
        rec.passed, rec.kind = False, Kind.ESCAPE.value
        rec.text = f"skipped ({_skip_reason(report)}): a skipped test is not a passed test"
        return rec
    rec.kind = _kind(e).value
    rec.mistake = getattr(e, "mistake", None)
    rec.text = describe(e)
    if rec.kind in DIAGNOSED and rec.topic:
        rec.matches = diagnose.matches(rec.topic, remote.shared_process().tape or [])
        if rec.mistake and diagnose.mistake(rec.topic, rec.mistake) and rec.mistake not in rec.matches:
            rec.matches.append(rec.mistake)  # a check of the source that named a catalogued mistake
        if _config is not None:
            _config.kata_failing.setdefault(_whose(item), []).append(rec)
        if rec.matches:  # plain pytest: the cause on its own line, in the catalog's words
            report.sections.append(("cause", cause_line(rec.topic, rec.matches)))
    return rec


# failures whose values can be compared with a mistake's: a check that did not hold, an exception
# of learner code; not a stub's NotImplementedError, a timeout, a crash or an escape
DIAGNOSED = (Kind.ASSERTION.value, Kind.ERROR.value)


def cause_line(topic: str, ids: list[str]) -> str:
    titles = [f"{diagnose.title(topic, m)} [{m}]" for m in ids]
    return ("cause: " if len(titles) == 1 else "cause, one of: ") + "; ".join(titles)


def _whose(item) -> tuple:
    """(implementation, topic) of a test: the evidence one implementation's passing tests give."""
    impl = getattr(item, "funcargs", {}).get("impl")
    return (getattr(impl, "key", ""), topic_of(item))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    remote.shared_process().tape = []  # this test's exchanges, from its fixtures on


def _kind(e) -> Kind:
    if isinstance(getattr(e, "kind", None), Kind):  # KataFailure, LearnerProcessFailure
        return e.kind
    if isinstance(e, NotImplementedError) and isinstance(e, remote.LearnerError):
        return Kind.NOT_IMPLEMENTED
    if isinstance(e, remote.LearnerError):
        return Kind.ERROR
    if type(e).__name__ == "Timeout" or str(e).startswith("Timeout (>"):
        return Kind.TIMEOUT
    return Kind.ASSERTION if isinstance(e, AssertionError) else Kind.ERROR


def describe(e) -> str:
    """The failure's message (our tests' messages are the lesson) and the learner's own frames."""
    if e is None:
        return ""
    if isinstance(e, AssertionError) and not isinstance(e, remote.LearnerError) or isinstance(e, LearnerProcessFailure):
        head = str(e)
    elif isinstance(e, remote.LearnerError):
        head = f"{e.learner_type}: {e}"
    elif str(e).startswith("Timeout (>"):
        head = str(e).splitlines()[0] + ": a test of the kata ran too long (its own code, not a call of yours)"
    else:
        head = f"{type(e).__name__}: {e}"
    frames = [f"  at {where(f, line)} in {fn}" + (f": {src}" if src else "") for f, line, fn, src in getattr(e, "frames", ())]
    return "\n".join([head, *frames[-6:]])


def where(filename: str, line: int) -> str:
    """A learner frame's place: a file and line, or a notebook cell's line (ipykernel names cells
    /tmp/ipykernel_<pid>/<hash>.py, which only the notebook's kernel can read)."""
    if "ipykernel_" in filename or filename.startswith(("<ipython-input", "<dynamic-code>")):
        return f"a notebook cell, line {line}"
    return f"{show_path(Path(filename))}:{line}"


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def pytest_runtest_logreport(report):
    """Keep the test's first failure (setup, call or teardown), else its passing call."""
    rec = getattr(report, "kata", None)
    if rec is None or _config is None:
        return
    current = _config.kata_current
    if not rec.passed and (report.nodeid not in current or current[report.nodeid].passed):
        current[report.nodeid] = rec
    elif rec.passed and report.when == "call":
        current.setdefault(report.nodeid, rec)


def pytest_runtest_logfinish(nodeid, location):
    if _config is not None and nodeid in _config.kata_current:
        _config.kata_records.append(_config.kata_current.pop(nodeid))


_config = None


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    global _config
    _config = session.config
    _config.kata_records, _config.kata_current = [], {}
    _config.kata_passing, _config.kata_failing = {}, {}  # (implementation, topic) -> tapes, records


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    for whose, records in getattr(config, "kata_failing", {}).items():  # "one of" told apart by the passes
        diagnose.refine(whose[1], records, config.kata_passing.get(whose, []))
    diagnose.stop()
    remote.reset_shared()
    path = session.config.getoption("kata_json", None)
    if path:
        records = [asdict(r) for r in getattr(session.config, "kata_records", [])]
        Path(path).write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
