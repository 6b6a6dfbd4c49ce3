"""batchnorm_forward against F.batch_norm (pytest-benchmark; not part of the normal test run).

    pytest benchmarks/ --benchmark-only                     # the reference (solutions/)
    pytest benchmarks/ --benchmark-only --impl exercises    # also the learner's implementation

The ratio (ours / F.batch_norm, median time) is printed at the end; the goal for the reference is
<= 1.5x. Forward only, training mode, float32, one thread (as the lecture runner uses).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kata.loader import Implementation

SHAPES = [(4096, 1024), (32, 200)]  # large first: thousands of small rounds leave a heap on which 16 MB allocations page-fault every call
RESULTS: dict = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _inputs(shape):
    g = torch.Generator().manual_seed(0)
    N, C = shape
    x = torch.randn(shape, generator=g) * 3 + 1  # (N, C)
    return x, torch.rand(C, generator=g) + 0.5, torch.randn(C, generator=g)


def _impls(config):
    chosen = config.getoption("impl") or []
    return ["solutions"] + [i for i in chosen if i != "solutions"]


def pytest_generate_tests(metafunc):
    if "which" in metafunc.fixturenames:
        metafunc.parametrize("which", ["F.batch_norm"] + _impls(metafunc.config))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_batchnorm_forward_speed(benchmark, shape, which):
    x, gamma, beta = _inputs(shape)
    if which == "F.batch_norm":
        fn = lambda: F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)  # noqa: E731
    else:
        forward = Implementation(which).load("batchnorm").batchnorm_forward
        fn = lambda: forward(x, gamma, beta)  # noqa: E731
        expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
        torch.testing.assert_close(fn(), expected, rtol=1e-4, atol=1e-4)  # float32, C up to 1024
    benchmark(fn)
    if benchmark.stats is not None:
        RESULTS[(shape, which)] = benchmark.stats.stats.median


def teardown_module():
    lines = []
    for shape in SHAPES:
        base = RESULTS.get((shape, "F.batch_norm"))
        for (s, which), mean in RESULTS.items():
            if s == shape and which != "F.batch_norm" and base:
                lines.append(f"batchnorm_forward {which} at {shape[0]}x{shape[1]}: {mean * 1e6:.1f} us, "
                             f"F.batch_norm {base * 1e6:.1f} us, ratio {mean / base:.2f}x (goal <= 1.5x)")
    if lines:
        print("\n" + "\n".join(lines))
