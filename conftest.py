"""The --impl option lives here, at the root, so that `pytest --impl solutions` works with no path
given (pytest reads this file before it parses the command line; tests/conftest.py comes later)."""
import pytest

from kata.loader import ImplNotFound, chosen, resolve
from kata.testing import base_seed


def pytest_addoption(parser):
    parser.addoption("--impl", action="append", default=None, metavar="exercises|solutions|PATH",
                     help="implementation to test (default: $KATA_IMPL or exercises); repeat to test several")
    parser.addoption("--impl-for", action="append", default=None, metavar="TOPIC=PATH",
                     help="test PATH with tests/test_TOPIC.py only; repeatable (the mistake catalog runs "
                          "the mutants of several topics in one process this way)")


def pytest_configure(config):
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


def pytest_report_header(config):
    shown = ", ".join(f"{i} ({resolve(i)})" for i in chosen(config.getoption("impl")))
    return f"kata: testing {shown}; KATA_SEED={base_seed()}"
