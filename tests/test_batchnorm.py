"""Topic 5, batchnorm: batchnorm_forward against torch's F.batch_norm (training mode) in float64,
plus the properties that define it. Run: pytest -m batchnorm

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept, expect_like,
                          expect_new_tensor, expect_no_shortcut_source, expect_tensor, inputs_unchanged, vjp)

pytestmark = pytest.mark.batchnorm


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("batchnorm")


@pytest.fixture
def forward(topic):
    """The learner's batchnorm_forward (torch's own batch norm refuses to run while it does)."""
    return topic.batchnorm_forward


def draw(gen, n, c, spread=3.0):
    """x with per-feature offsets and scales (nothing symmetric that could hide a bug), gamma, beta."""
    x = torch.randn(n, c, generator=gen, dtype=torch.float64) * spread * torch.rand(c, generator=gen, dtype=torch.float64) \
        + 5 * torch.randn(c, generator=gen, dtype=torch.float64)
    gamma = 0.5 + torch.rand(c, generator=gen, dtype=torch.float64)
    beta = torch.randn(c, generator=gen, dtype=torch.float64)
    return x, gamma, beta


# ---------------------------------------------------------------- tests, in lesson order
def test_batchnorm_forward_uses_biased_variance_at_the_lecture_batch_size(forward, gen):
    x, _, _ = draw(gen, 32, 6)
    gamma, beta = torch.ones(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)  # output = xhat itself
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta), eps=0.0)
    out = expect_tensor(forward(x, gamma, beta, eps=0.0), shown, shape=x.shape).detach()
    expect_close(out.std(0, unbiased=False), torch.ones(6, dtype=torch.float64), call=shown,
                 what="output std per feature (dividing by N) is", **TOL)


@pytest.mark.parametrize("n", [2, 3, 32])
def test_batchnorm_forward_output_has_mean_beta_and_std_gamma_per_feature(forward, gen, n):
    x, gamma, beta = draw(gen, n, 5)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta), eps=0.0)
    out = expect_tensor(forward(x, gamma, beta, eps=0.0), shown, shape=x.shape).detach()
    expect_close(out.mean(0), beta, call=shown, what="output mean per feature is", **TOL,
                 why="after normalising, each feature's mean is 0, and beta shifts it")
    expect_close(out.std(0, unbiased=False), gamma, call=shown, what="output std (biased) per feature is", **TOL,
                 why="after normalising, each feature's std is 1 (biased, dividing by N), and gamma scales it")


def test_batchnorm_forward_maps_a_constant_feature_to_beta(forward, gen):
    x, gamma, beta = draw(gen, 16, 4)
    x[:, 2] = 7.25  # var 0: only eps inside the sqrt keeps this finite
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta), eps=1e-5)
    out = expect_tensor(forward(x, gamma, beta, eps=1e-5), shown, shape=x.shape).detach()
    expect(bool(torch.isfinite(out).all()),
           f"{shown} returned inf or nan for a constant feature (column 2 is all 7.25): its variance is 0, "
           "so divide by sqrt(var + eps), with eps inside the square root")
    expect_close(out[:, 2], beta[2].expand(16), call=shown, what="column 2 (a constant feature) became", **TOL,
                 why="x - mean is exactly 0 there, so the output is beta")


@pytest.mark.parametrize("case", range(6))
def test_batchnorm_forward_matches_torch_batch_norm_in_training_mode(forward, gen, case):
    n = int(torch.randint(2, 65, (), generator=gen))
    c = int(torch.randint(1, 17, (), generator=gen))
    x, gamma, beta = draw(gen, n, c)
    eps = [1e-5, 1e-3, 0.1][case % 3]  # 0.1 makes eps's place visible even for unit-variance features
    expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta), eps=eps)
    expect_close(forward(x, gamma, beta, eps=eps), expected, call=shown, what="returned", **TOL)


def test_batchnorm_forward_ignores_a_per_feature_shift_of_the_input(forward, gen):
    x, gamma, beta = draw(gen, 24, 5)
    shift = 10 * torch.randn(5, generator=gen, dtype=torch.float64)  # what a bias before BN adds
    shown = call("batchnorm_forward", ("x + shift", x), ("gamma", gamma), ("beta", beta))
    expected = F.batch_norm(x, None, None, gamma, beta, training=True)  # of x, without the shift
    expect_close(forward(x + shift, gamma, beta), expected, call=shown, what="returned",
                 why="subtracting the batch mean removes any constant added to a feature (this is why a "
                     "bias before BatchNorm is redundant)", rtol=1e-6, atol=1e-6)  # shift of 10s costs ~1e-14 per op


def test_batchnorm_forward_default_eps_is_1e_5(forward, gen):
    x, gamma, beta = draw(gen, 32, 5)
    x = (x - x.mean(0)) * 3e-3 + x.mean(0)  # variances ~1e-5: eps=1e-5 changes the output by ~40%
    expected = F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    expect_close(forward(x, gamma, beta), expected, call=shown, what="returned", **TOL,
                 why="without an eps argument, eps is 1e-5 (the contract's default, as torch.nn.BatchNorm1d)")


def test_batchnorm_forward_gradients_match_torch_batch_norm(forward, gen):
    x, gamma, beta = draw(gen, 8, 3)
    upstream = torch.randn(8, 3, generator=gen, dtype=torch.float64)  # not all-ones: sum() would hide errors
    theirs = [t.clone().requires_grad_() for t in (x, gamma, beta)]
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    ours = vjp(forward, (x, gamma, beta), upstream)  # autograd through the learner's code, in its process
    expect_tensor(ours.out, shown, shape=x.shape)
    expect(ours.graph, f"{shown} returned a tensor with no autograd graph: batchnorm_forward must be "
                       "differentiable (no torch.no_grad(), no .detach(), no .item() inside)")
    (F.batch_norm(theirs[0], None, None, theirs[1], theirs[2], training=True) * upstream).sum().backward()
    for name, got, b in zip(("x", "gamma", "beta"), ours.grads, theirs):
        expect(got is not None, f"{shown}: no gradient reached {name}")
        expect_close(got, b.grad, call=shown, what=f"gave d loss / d {name} =", **TOL,
                     why="autograd through your formula should equal torch's batch norm gradient")


def test_batchnorm_forward_leaves_inputs_unchanged(forward, gen):
    x, gamma, beta = draw(gen, 10, 4)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    with inputs_unchanged(shown, x=x, gamma=gamma, beta=beta):
        out = forward(x, gamma, beta)
    expect_close(out, F.batch_norm(x, None, None, gamma, beta, training=True), call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, x=x)


def test_batchnorm_forward_keeps_float32_in_float32(forward, gen):
    # well-conditioned input (offset 1, spread 2): float32 cancellation cannot blur the comparison
    x = torch.randn(32, 6, generator=gen) * 2 + 1
    gamma, beta = 0.5 + torch.rand(6, generator=gen), torch.randn(6, generator=gen)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    out = expect_tensor(forward(x, gamma, beta), shown, shape=x.shape, dtype=torch.float32)
    expected = F.batch_norm(x, None, None, gamma, beta, training=True)
    # float32 rounding is 6e-8 per op; ~10 ops on values up to ~10 stay below 1e-5
    expect_close(out, expected, call=shown, what="returned", rtol=1e-5, atol=1e-5)


def test_batchnorm_forward_computes_without_torch_batch_norm(forward, impl, gen):
    x, gamma, beta = draw(gen, 32, 6)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    expect_close(forward(x, gamma, beta), F.batch_norm(x, None, None, gamma, beta, training=True),
                 call=shown, what="returned", **TOL)  # runs with torch's batch norm switched off
    expect_no_shortcut_source(impl, "batchnorm")


def test_batchnorm_forward_leaves_grad_mode_and_default_dtype_as_found(forward, gen):
    x, gamma, beta = draw(gen, 8, 3)
    shown = call("batchnorm_forward", ("x", x), ("gamma", gamma), ("beta", beta))
    expected = F.batch_norm(x, None, None, gamma, beta, training=True)
    expect_global_state_kept(lambda: forward(x, gamma, beta), shown,
                             lambda out: expect_like(out, expected, shown))
