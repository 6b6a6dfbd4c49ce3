"""Topic 6, running_stats: ema_update against its formula and nn.BatchNorm1d's running statistics,
batchnorm_eval against F.batch_norm(training=False), calibrate against torch's mean(0) / var(0),
and the lecture's point that a long EMA and a calibration agree. Run: pytest -m running_stats

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept, expect_like,
                          expect_new_tensor, expect_no_shortcut_source, expect_tensor, fail, fmt, inputs_unchanged,
                          safe_repr, type_name)

pytestmark = pytest.mark.running_stats


F64 = dict(dtype=torch.float64)


@pytest.fixture(scope="module")
def learner(impl):
    """The learner's running_stats module (torch's batch norm refuses to run while its code does)."""
    return impl.load("running_stats")


# ---------------------------------------------------------------- ema_update
def draw_stats(gen, c):
    """A running value and a batch value per feature, nothing symmetric."""
    running = 3 * torch.randn(c, generator=gen, **F64) + 1
    batch = 3 * torch.randn(c, generator=gen, **F64) - 1
    return running, batch


# ---------------------------------------------------------------- batchnorm_eval
def draw_eval(gen, n, c):
    """x with per-feature offsets, running statistics that are NOT x's own batch statistics."""
    x = torch.randn(n, c, generator=gen, **F64) * 2 + 3 * torch.randn(c, generator=gen, **F64)
    running_mean = 1 + 4 * torch.rand(c, generator=gen, **F64)  # positive: swapped statistics stay finite
    running_var = 0.2 + 3 * torch.rand(c, generator=gen, **F64)
    gamma = 0.5 + torch.rand(c, generator=gen, **F64)
    beta = torch.randn(c, generator=gen, **F64)
    return x, running_mean, running_var, gamma, beta


# ---------------------------------------------------------------- calibrate
def expect_pair(out, shown, c, n):
    """calibrate returns a tuple of two real tensors of shape (C,)."""
    expect(isinstance(out, tuple) and len(out) == 2,
           f"{shown} returned {type_name(out)} {safe_repr(out)}, expected a tuple (mean, var)")
    for name, t in zip(("mean", "var"), out):
        if isinstance(t, torch.Tensor) and tuple(t.shape) == (n,) and n != c:
            fail(f"{shown} returned {name} of shape ({n},), expected ({c},): reduce over dim 0 (the examples), "
                 "one value per feature")
        expect_tensor(t, shown, shape=(c,))
    return out


def draw_preacts(gen, n, c):
    return torch.randn(n, c, generator=gen, **F64) * (0.5 + 2 * torch.rand(c, generator=gen, **F64)) \
        + 4 * torch.randn(c, generator=gen, **F64)


# ---------------------------------------------------------------- tests, in lesson order
def test_batchnorm_eval_keeps_a_zero_running_var_finite(learner, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 8, 5)
    rv[3] = 0.0  # a feature that never varied in training: only eps inside the sqrt keeps this finite
    eps = 1e-3
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta), eps=eps)
    out = expect_tensor(learner.batchnorm_eval(x, rm, rv, gamma, beta, eps=eps), shown, shape=x.shape)
    expect(bool(torch.isfinite(out).all()),
           f"{shown} returned inf or nan where running_var is 0 (feature 3): divide by sqrt(running_var + eps)")
    expect_close(out, expected, call=shown, what="returned",
                 **TOL)


@pytest.mark.parametrize("n", [2, 3, 32, "random"])
def test_calibrate_returns_the_mean_and_unbiased_var_over_dim_0(learner, gen, n):
    if n == "random":
        n = int(torch.randint(4, 300, (), generator=gen))
    c = 7
    x = draw_preacts(gen, n, c)
    want_mean, want_var = x.mean(0), x.var(0)  # torch's, computed before the learner's call
    shown = call("calibrate", ("preacts", x))
    mean, var = expect_pair(learner.calibrate(x), shown, c, n)
    expect_close(mean, want_mean, call=shown, what="returned mean", **TOL,
                 why="the mean of each feature over dim 0")
    expect_close(var, want_var, call=shown, what="returned var", **TOL,
                 why="the unbiased variance of each feature over dim 0, x.var(0)")


def test_calibrate_gives_zero_variance_for_a_constant_feature(learner, gen):
    x = draw_preacts(gen, 20, 4)
    x[:, 1] = -2.75
    want_var = x.var(0)  # feature 1: exactly 0
    shown = call("calibrate", ("preacts", x))
    mean, var = expect_pair(learner.calibrate(x), shown, 4, 20)
    expect_close(mean[1], torch.tensor(-2.75, **F64), call=shown, what="returned mean[1]", **TOL,
                 why="feature 1 is -2.75 in every row")
    expect_close(var, want_var, call=shown, what="returned var", **TOL,
                 why="feature 1 is -2.75 in every row, so its variance is 0")


@pytest.mark.parametrize("momentum", [0.1, 0.001, 0.9, "random"])
def test_ema_update_is_one_minus_momentum_times_running_plus_momentum_times_batch(learner, gen, momentum):
    if momentum == "random":
        momentum = 0.01 + 0.5 * float(torch.rand((), generator=gen))
    c = int(torch.randint(1, 17, (), generator=gen))
    running, batch = draw_stats(gen, c)
    expected = (1 - momentum) * running + momentum * batch
    shown = call("ema_update", ("running", running), ("batch_stat", batch), momentum=momentum)
    expect_close(learner.ema_update(running, batch, momentum=momentum), expected, call=shown, what="returned", **TOL,
                 why=f"running' = (1 - {momentum:.4g}) * running + {momentum:.4g} * batch_stat")


def test_ema_update_defaults_to_the_lecture_momentum_0_001(learner, gen):
    running, batch = draw_stats(gen, 7)
    expected = 0.999 * running + 0.001 * batch  # every expected value is computed before the learner's call
    shown = call("ema_update", ("running", running), ("batch_stat", batch))
    expect_close(learner.ema_update(running, batch), expected, call=shown, what="returned", **TOL,
                 why="the lecture's update is 0.999 * running + 0.001 * batch")


def test_ema_update_approaches_a_constant_batch_value_geometrically(learner, gen):
    running, batch = draw_stats(gen, 5)
    m, steps = 0.1, 40
    # a first-order IIR filter: the gap to a constant input shrinks by (1 - m) every step
    expected = batch + (1 - m) ** steps * (running - batch)
    shown = call("ema_update", ("running", running), ("batch_stat", batch), momentum=m) + f" repeated {steps} times"
    r = running.clone()
    for _ in range(steps):
        r = expect_tensor(learner.ema_update(r, batch, momentum=m), shown, shape=running.shape)
    expect_close(r, expected, call=shown, what="gave", **TOL,
                 why=f"after k steps the gap to the batch value is (1 - m)**k = {(1 - m) ** steps:.4g} of the start")


@pytest.mark.parametrize("momentum", [0.1, 0.001])
def test_ema_update_matches_batchnorm1d_running_statistics(learner, gen, momentum):
    c, n = 5, 32
    bn = torch.nn.BatchNorm1d(c, momentum=momentum, **F64)
    batches = [torch.randn(n, c, generator=gen, **F64) * 2 + torch.arange(c, **F64) for _ in range(4)]
    with torch.no_grad():
        for x in batches:
            bn(x)  # training mode: updates bn.running_mean / running_var (unbiased)
    mean, var = torch.zeros(c, **F64), torch.ones(c, **F64)  # BatchNorm1d's initial values
    shown = call("ema_update", ("running_mean", mean), ("x.mean(0)", mean), momentum=momentum) + " per batch"
    for x in batches:
        mean = learner.ema_update(mean, x.mean(0), momentum=momentum)
        var = learner.ema_update(var, x.var(0), momentum=momentum)
    expect_close(mean, bn.running_mean, call=shown, what="gave running_mean", **TOL,
                 why=f"nn.BatchNorm1d(momentum={momentum}) updates running_mean = (1 - m) * running_mean + "
                     "m * batch mean after every training batch")
    expect_close(var, bn.running_var, call=shown.replace("mean", "var"), what="gave running_var", **TOL,
                 why="the same filter applied to the unbiased batch variance")


@pytest.mark.parametrize("case", range(6))
def test_batchnorm_eval_matches_torch_batch_norm_in_eval_mode(learner, gen, case):
    n = int(torch.randint(2, 65, (), generator=gen))
    c = int(torch.randint(1, 17, (), generator=gen))
    x, rm, rv, gamma, beta = draw_eval(gen, n, c)
    eps = [1e-5, 1e-3, 0.1][case % 3]  # 0.1 makes eps's place visible
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=eps)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta), eps=eps)
    expect_close(learner.batchnorm_eval(x, rm, rv, gamma, beta, eps=eps), expected, call=shown, what="returned", **TOL)


def test_batchnorm_eval_works_on_a_single_example(learner, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 1, 6)
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    out = expect_tensor(learner.batchnorm_eval(x, rm, rv, gamma, beta), shown, shape=(1, 6))
    expect(not torch.allclose(out.detach().double(), beta.expand(1, 6)) and bool(torch.isfinite(out).all()),
           f"{shown} returned {fmt(out)} for one example: that is beta (or nan), what the "
           "batch's own statistics give when the batch is one row; at inference use the running statistics")
    expect_close(out, expected, call=shown, what="returned",
                 **TOL)


def test_batchnorm_eval_treats_each_row_on_its_own(learner, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 12, 4)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False)
    whole = expect_tensor(learner.batchnorm_eval(x, rm, rv, gamma, beta), shown, shape=x.shape).detach()
    expect_close(whole, expected, call=shown, what="returned", **TOL)
    shown = call("batchnorm_eval", ("x[:3]", x[:3]), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    part = expect_tensor(learner.batchnorm_eval(x[:3], rm, rv, gamma, beta), shown, shape=(3, 4)).detach()
    expect_close(part, whole[:3], call=shown, what="returned",
                 why="in eval mode a row's output must not depend on the other rows of the batch: normalise with "
                     "the running statistics, not the batch's", **TOL)


def test_batchnorm_eval_default_eps_is_1e_5(learner, gen):
    x, rm, _, gamma, beta = draw_eval(gen, 6, 5)
    rv = 1e-5 * (1 + torch.rand(5, generator=gen, **F64))  # running variances ~1e-5: eps's value shows
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False, eps=1e-5)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    expect_close(learner.batchnorm_eval(x, rm, rv, gamma, beta), expected, call=shown, what="returned", **TOL,
                 why="without an eps argument, eps is 1e-5, as in training")


def test_calibrate_agrees_with_a_long_ema_of_batch_statistics(learner, gen):
    n, c, b, m, steps = 20000, 6, 32, 0.1, 150  # torch's momentum: 150 steps forget the start (0.9**150 = 1e-7)
    sigma = 0.5 + 2 * torch.rand(c, generator=gen, **F64)
    x = torch.randn(n, c, generator=gen, **F64) * sigma + 4 * torch.randn(c, generator=gen, **F64)  # "training set"
    batches = x[torch.randint(0, n, (steps, b), generator=gen)]  # (steps, b, c): minibatches with replacement
    batch_stats = torch.cat([batches.mean(1), batches.var(1)], dim=1)  # (steps, 2c): means, unbiased vars
    shown = call("calibrate", ("preacts", x))
    mean, var = expect_pair(learner.calibrate(x), shown, c, n)
    running = torch.cat([torch.zeros(c, **F64), torch.ones(c, **F64)])  # (2c,): BatchNorm1d's initial values
    for k in range(steps):
        running = learner.ema_update(running, batch_stats[k], momentum=m)
    running_mean, running_var = running[:c], running[c:]
    # In steady state an EMA of independent batch statistics has variance m / (2 - m) times theirs:
    # the batch mean's is sigma^2 / b, the unbiased batch var's 2 sigma^4 / (b - 1) (normal data). The start
    # value is forgotten as (1 - m)^150 = 1e-7, and N = 20000 makes the biased/unbiased gap 5e-5. 6 std errors:
    shrink = math.sqrt(m / (2 - m))
    mean_band = 6 * shrink * sigma / math.sqrt(b)  # 0.24 sigma
    var_band = 6 * shrink * math.sqrt(2 / (b - 1)) * sigma**2 + 1e-3 * sigma**2  # 0.35 sigma^2
    gap_mean, gap_var = (running_mean - mean).abs(), (running_var - var).abs()
    rounded = [[round(v, 3) for v in t.tolist()] for t in (mean, running_mean, var, running_var)]
    expect(bool((gap_mean <= mean_band).all()) and bool((gap_var <= var_band).all()),
           f"{shown} and {steps} calls of ema_update(momentum={m}) over minibatches of {b}: calibrated mean "
           f"{rounded[0]} vs EMA {rounded[1]}, calibrated var {rounded[2]} vs EMA {rounded[3]}; "
           "they should agree within 6 standard errors of the EMA (the lecture: calibrating after training or "
           "keeping an EMA during training give almost the same loss)")


def test_ema_update_leaves_inputs_unchanged(learner, gen):
    running, batch = draw_stats(gen, 6)
    expected = 0.9 * running + 0.1 * batch
    shown = call("ema_update", ("running", running), ("batch_stat", batch), momentum=0.1)
    with inputs_unchanged(shown, running=running, batch_stat=batch):
        out = learner.ema_update(running, batch, momentum=0.1)
    expect_close(out, expected, call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, running=running, batch_stat=batch)


def test_ema_update_leaves_grad_mode_and_default_dtype_as_found(learner, gen):
    running, batch = draw_stats(gen, 4)
    shown = call("ema_update", ("running", running), ("batch_stat", batch))
    expect_global_state_kept(lambda: learner.ema_update(running, batch), shown,
                             lambda out: expect_like(out, running, shown))


def test_batchnorm_eval_leaves_inputs_unchanged(learner, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 10, 4)
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    with inputs_unchanged(shown, x=x, running_mean=rm, running_var=rv, gamma=gamma, beta=beta):
        out = learner.batchnorm_eval(x, rm, rv, gamma, beta)
    expect_close(out, expected, call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, x=x)


def test_batchnorm_eval_computes_without_torch_batch_norm(learner, impl, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 32, 6)
    expected = F.batch_norm(x, rm, rv, gamma, beta, training=False)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    expect_close(learner.batchnorm_eval(x, rm, rv, gamma, beta), expected, call=shown, what="returned",
                 **TOL)  # runs with torch's batch norm switched off
    expect_no_shortcut_source(impl, "running_stats")


def test_batchnorm_eval_leaves_grad_mode_and_default_dtype_as_found(learner, gen):
    x, rm, rv, gamma, beta = draw_eval(gen, 6, 3)
    shown = call("batchnorm_eval", ("x", x), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    expect_global_state_kept(lambda: learner.batchnorm_eval(x, rm, rv, gamma, beta), shown,
                             lambda out: expect_like(out, x, shown))


def test_calibrate_builds_no_autograd_graph(learner, gen):
    x = draw_preacts(gen, 50, 3)
    want_mean, want_var = x.mean(0), x.var(0)
    x = (x * 1.0).requires_grad_()  # pre-activations computed from parameters carry a graph
    shown = call("calibrate", ("preacts", x))
    mean, var = expect_pair(learner.calibrate(x), shown, 3, 50)
    expect_close(mean, want_mean, call=shown, what="returned mean", **TOL)
    expect_close(var, want_var, call=shown, what="returned var", **TOL)
    expect(not mean.requires_grad and not var.requires_grad,
           f"{shown} returned statistics that require grad: calibration is bookkeeping, not part of the model; "
           "compute it under torch.no_grad() (as the lecture does) so no graph is built or kept")


def test_calibrate_leaves_its_input_unchanged(learner, gen):
    x = draw_preacts(gen, 40, 5)
    want_mean, want_var = x.mean(0), x.var(0)
    shown = call("calibrate", ("preacts", x))
    with inputs_unchanged(shown, preacts=x):
        mean, var = expect_pair(learner.calibrate(x), shown, 5, 40)
    expect_close(mean, want_mean, call=shown, what="returned mean", **TOL)
    expect_close(var, want_var, call=shown, what="returned var", **TOL)
    for t in (mean, var):
        expect_new_tensor(t, shown, preacts=x)


def test_calibrate_leaves_grad_mode_and_default_dtype_as_found(learner, gen):
    x = draw_preacts(gen, 30, 4)
    shown = call("calibrate", ("preacts", x))

    expect_global_state_kept(lambda: learner.calibrate(x), shown, lambda out: expect_pair(out, shown, 4, 30))
