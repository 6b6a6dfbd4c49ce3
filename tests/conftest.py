"""Test set-up: which implementation is under test, seeds, and the rule that learner code cannot
pass a test by leaving it (sys.exit, KeyboardInterrupt, pytest.skip).

    KATA_IMPL=solutions pytest            # or: pytest --impl solutions
    pytest --impl a --impl b              # several folders at once
    pytest --impl-for batchnorm=a ...     # a folder for one topic's tests only (the mistake catalog)
    KATA_SEED=7 pytest                    # another draw of every random input
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kata.loader import Implementation, chosen
from kata.testing import seed_for

# The tests use small tensors, where torch's thread pool only adds contention: on a busy 2-core
# machine one training-mode F.batch_norm call took 50-95 ms with threads, 0.02 ms without.
torch.set_num_threads(1)


def _impls(config) -> list[str]:
    return chosen(config.getoption("impl"))


def _impls_for(metafunc) -> list[str] | None:
    """The folders given with --impl-for for this module's topic, or None without --impl-for."""
    pairs = metafunc.config.getoption("impl_for")
    if not pairs:
        return None
    topic = metafunc.module.__name__.rpartition("test_")[2]  # tests.test_batchnorm -> batchnorm
    return [path for t, _, path in (pair.partition("=") for pair in pairs) if t == topic]


def pytest_generate_tests(metafunc):
    if "impl" not in metafunc.fixturenames:
        return
    impls = _impls_for(metafunc)
    if impls is None and len(_impls(metafunc.config)) > 1:
        impls = _impls(metafunc.config)
    if impls is not None:  # the folder's name in every test id says whose verdict it is
        metafunc.parametrize("impl", impls, indirect=True, scope="session", ids=[Path(i).name for i in impls])


@pytest.fixture(scope="session")
def impl(request) -> Implementation:
    """The implementation under test; `impl.load('batchnorm')` imports its batchnorm.py afresh."""
    return Implementation(getattr(request, "param", None) or _impls(request.config)[0])


@pytest.fixture
def seed(request) -> int:
    """This test's seed, derived from KATA_SEED and the test's id."""
    return seed_for(request.node.nodeid)


@pytest.fixture
def gen(seed) -> torch.Generator:
    """A torch.Generator seeded for this test: pass it to every random draw."""
    return torch.Generator().manual_seed(seed)


_ESCAPES = (SystemExit, KeyboardInterrupt, pytest.skip.Exception, pytest.exit.Exception)


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test body that exits, is interrupted or skips has not passed: report it as a failure.
    (Our tests never skip from inside a body, so any skip there came from learner code.)"""
    try:
        return (yield)
    except _ESCAPES as e:
        what = {"Skipped": "called pytest.skip()", "Exit": "called pytest.exit()"}.get(
            type(e).__name__, f"raised {type(e).__name__}({safe_args(e)})")
        raise AssertionError(
            f"the code under test {what} during {pyfuncitem.name}: leaving a test early is not "
            "passing it, so this counts as a failure"
        ) from None


def safe_args(e: BaseException) -> str:
    return ", ".join(repr(a)[:40] for a in e.args)
