"""The --impl option lives here, at the root, so that `pytest --impl solutions` works with no path
given (pytest reads this file before it parses the command line; tests/conftest.py comes later)."""
import pytest

from kata.loader import ImplNotFound, chosen, resolve
from kata.testing import base_seed


def pytest_addoption(parser):
    parser.addoption("--impl", action="append", default=None, metavar="exercises|solutions|PATH",
                     help="implementation to test (default: $KATA_IMPL or exercises); repeat to test several")


def pytest_configure(config):
    for impl in chosen(config.getoption("impl")):
        try:
            resolve(impl)
        except ImplNotFound as e:
            raise pytest.UsageError(str(e)) from None


def pytest_report_header(config):
    shown = ", ".join(f"{i} ({resolve(i)})" for i in chosen(config.getoption("impl")))
    return f"kata: testing {shown}; KATA_SEED={base_seed()}"
