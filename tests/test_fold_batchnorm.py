"""Topic 12 (exercise E02), fold_batchnorm: the folded Linear against torch's eval-mode batch norm
(F.batch_norm with training=False, nn.BatchNorm1d in eval) in float64, plus the properties that
define the fold. Run: pytest -m fold_batchnorm

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept, expect_like,
                          expect_new_tensor, expect_no_shortcut_source, expect_tensor, fail, inputs_unchanged,
                          type_name)

pytestmark = pytest.mark.fold_batchnorm


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("fold_batchnorm")


def layer(gen, fan_in, fan_out, bias=True):
    """W, b and BN's running stats and affine parameters, all float64; gamma takes both signs and
    some running variances are small, so eps's place and gamma's sign both show."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def rand(*shape):
        return torch.rand(*shape, generator=gen, dtype=torch.float64)

    W = randn(fan_in, fan_out) / fan_in**0.5
    b = randn(fan_out) if bias else None
    running_mean = randn(fan_out) + 0.5
    running_var = 10 ** (2 * rand(fan_out) - 1.5)  # 0.03 .. 3: small enough that eps=0.01 matters
    gamma = (0.5 + rand(fan_out)) * torch.where(rand(fan_out) < 0.3, -1.0, 1.0)
    beta = randn(fan_out)
    return W, b, running_mean, running_var, gamma, beta


def shown_call(W, b, rm, rv, gamma, beta, eps):
    return call("fold_batchnorm", ("W", W), ("b", b) if b is not None else ("b", None), ("running_mean", rm),
                ("running_var", rv), ("gamma", gamma), ("beta", beta), eps=eps)


def fold(topic, shown, W, b, rm, rv, gamma, beta, eps):
    """The learner's (W', b'), checked for type and shape; a broadcasting error is explained.
    eps=None calls without it (the default)."""
    fan_in, fan_out = W.shape
    try:
        out = topic.fold_batchnorm(W, b, rm, rv, gamma, beta) if eps is None else \
            topic.fold_batchnorm(W, b, rm, rv, gamma, beta, eps=eps)
    except NotImplementedError:  # the untouched stub: reported as such
        raise
    except RuntimeError as e:
        if "size of tensor" in str(e) or "must match" in str(e):
            fail(f"{shown} raised RuntimeError({str(e)[:120]!r}): BN's scale has one entry per output "
                 f"feature ({fan_out},), and W is (fan_in, fan_out) = ({fan_in}, {fan_out}) used as x @ W, so the "
                 "scale multiplies the COLUMNS of W: W * scale (scale[:, None] would scale rows, torch's "
                 "(fan_out, fan_in) layout)")
        raise
    except TypeError as e:
        if b is None:
            fail(f"{shown} raised TypeError({str(e)[:120]!r}): b=None means the Linear layer has no bias "
                 "(the lecture's Linear(bias=False) before BatchNorm1d); treat it as zeros")
        raise
    expect(type(out) is tuple and len(out) == 2, f"{shown} returned {type_name(out)}, expected a tuple (W', b')")
    W2 = expect_tensor(out[0], f"{shown}[0] (W')", shape=(fan_in, fan_out))
    b2 = expect_tensor(out[1], f"{shown}[1] (b')", shape=(fan_out,))
    return W2, b2


def bn_eval(h, rm, rv, gamma, beta, eps):
    return F.batch_norm(h, rm, rv, gamma, beta, training=False, eps=eps)


# ---------------------------------------------------------------- tests, in lesson order
def test_fold_batchnorm_keeps_a_zero_variance_feature_finite_with_eps_inside_the_sqrt(topic, gen):
    W, b, rm, rv, gamma, beta = layer(gen, 6, 4)
    rv[1] = 0.0  # a feature that never varied: only eps keeps 1 / sqrt(var + eps) finite
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-3)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, 1e-3)
    expect(bool(torch.isfinite(W2).all() and torch.isfinite(b2).all()),
           f"{shown} gave inf or nan for feature 1, whose running_var is 0: divide by sqrt(running_var + eps), "
           "with eps inside the square root")
    expect_close(W2[:, 1], W[:, 1] * gamma[1] / 1e-3**0.5, call=shown, what="gave column 1 of W'", **TOL,
                 why="with running_var 0 the scale is gamma / sqrt(eps)")


@pytest.mark.parametrize("case", range(6))
def test_fold_batchnorm_matches_eval_mode_batch_norm_after_the_linear_layer(topic, gen, case):
    fan_in = int(torch.randint(2, 20, (), generator=gen))
    fan_out = fan_in + int(torch.randint(1, 20, (), generator=gen))  # non-square: rows and columns differ
    if case % 2:
        fan_in, fan_out = fan_out, fan_in
    eps = [1e-5, 1e-2, 0.1][case % 3]  # 0.01 and 0.1 make eps's place visible next to variances of 0.03
    W, b, rm, rv, gamma, beta = layer(gen, fan_in, fan_out)
    x = torch.randn(7, fan_in, generator=gen, dtype=torch.float64)
    shown = shown_call(W, b, rm, rv, gamma, beta, eps)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, eps)
    expect_close(x @ W2 + b2, bn_eval(x @ W + b, rm, rv, gamma, beta, eps), call=shown,
                 what="folded: x @ W' + b' gave", **TOL,
                 why="it must equal F.batch_norm(x @ W + b, running_mean, running_var, gamma, beta, training=False)")


def test_fold_batchnorm_keeps_float64_inputs_in_float64_precision(topic, gen):
    W, b, rm, rv, gamma, beta = layer(gen, 9, 12)
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-5)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, 1e-5)
    scale = gamma / torch.sqrt(rv + 1e-5)
    # a handful of float64 operations: another order of them differs by a few units of 2**-52 (about
    # 1e-15 relative); a factor rounded to float32 on the way (.float()) is off by up to 6e-8
    precise = dict(rtol=1e-12, atol=1e-12)
    expect_close(W2, W * scale, call=shown, what="W' (float64 in, float64 arithmetic) is", **precise,
                 why="compute the fold in the inputs' dtype: a float32 step loses 8 of float64's 16 digits")
    expect_close(b2, (b - rm) * scale + beta, call=shown, what="b' is", **precise,
                 why="compute the fold in the inputs' dtype: a float32 step loses 8 of float64's 16 digits")


@pytest.mark.parametrize("n", [8, 27])
def test_fold_batchnorm_scales_the_columns_of_a_square_weight(topic, gen, n):
    W, b, rm, rv, gamma, beta = layer(gen, n, n)
    x = torch.randn(5, n, generator=gen, dtype=torch.float64)
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-5)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, 1e-5)
    expect_close(x @ W2 + b2, bn_eval(x @ W + b, rm, rv, gamma, beta, 1e-5), call=shown,
                 what="folded: x @ W' + b' gave", **TOL)


def test_fold_batchnorm_without_a_bias_treats_it_as_zeros(topic, gen):
    W, _, rm, rv, gamma, beta = layer(gen, 30, 12, bias=False)
    x = torch.randn(6, 30, generator=gen, dtype=torch.float64)
    shown = shown_call(W, None, rm, rv, gamma, beta, 1e-5)
    W2, b2 = fold(topic, shown, W, None, rm, rv, gamma, beta, 1e-5)
    expect_close(x @ W2 + b2, bn_eval(x @ W, rm, rv, gamma, beta, 1e-5), call=shown,
                 what="folded: x @ W' + b' gave", **TOL,
                 why="with b=None (Linear(bias=False)) the layer is x @ W, then eval-mode batch norm")
    zeros = torch.zeros(12, dtype=torch.float64)
    expect_close(b2, fold(topic, shown, W, zeros, rm, rv, gamma, beta, 1e-5)[1], call=shown, what="gave b'", **TOL,
                 why="b=None and b=zeros describe the same layer")


def test_fold_batchnorm_matches_torch_linear_and_batchnorm1d_in_eval_mode(topic, gen):
    net = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.BatchNorm1d(16)).double()
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(16, 10, generator=gen, dtype=torch.float64) / 10**0.5)  # not the global RNG
        net[0].bias.copy_(torch.randn(16, generator=gen, dtype=torch.float64))
        for _ in range(3):  # training-mode passes give the running stats and affine params real values
            net(torch.randn(32, 10, generator=gen, dtype=torch.float64) * 2 + 1)
        net[1].weight.copy_(torch.randn(16, generator=gen, dtype=torch.float64))
        net[1].bias.copy_(torch.randn(16, generator=gen, dtype=torch.float64))
    net.eval()
    lin, bn = net
    W = lin.weight.detach().T.contiguous()  # torch stores (fan_out, fan_in); the kata's W is (fan_in, fan_out)
    args = (W, lin.bias.detach().clone(), bn.running_mean.clone(), bn.running_var.clone(),
            bn.weight.detach().clone(), bn.bias.detach().clone())
    shown = call("fold_batchnorm", ("W", W), ("b", args[1]), ("bn.running_mean", args[2]), ("bn.running_var", args[3]),
                 ("bn.weight", args[4]), ("bn.bias", args[5]), eps=bn.eps)
    W2, b2 = fold(topic, shown, *args, bn.eps)
    x = torch.randn(9, 10, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        expected = net(x)
    expect_close(x @ W2 + b2, expected, call=shown, what="folded: x @ W' + b' gave", **TOL,
                 why="one Linear layer must do what nn.Linear followed by nn.BatchNorm1d in eval mode does")


def test_fold_batchnorm_with_the_identity_batch_norm_returns_the_layer_itself(topic, gen):
    W, b, _, _, _, _ = layer(gen, 7, 11)
    eps = 0.25  # running_var = 1 - eps makes sqrt(var + eps) exactly 1
    rm, rv = torch.zeros(11, dtype=torch.float64), torch.full((11,), 1 - eps, dtype=torch.float64)
    gamma, beta = torch.ones(11, dtype=torch.float64), torch.zeros(11, dtype=torch.float64)
    shown = shown_call(W, b, rm, rv, gamma, beta, eps)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, eps)
    expect_close(W2, W, call=shown, what="gave W'", **TOL,
                 why="a batch norm with mean 0, var + eps = 1, gamma 1 and beta 0 is the identity: W' = W")
    expect_close(b2, b, call=shown, what="gave b'", **TOL,
                 why="the identity batch norm leaves b as it is")


def test_fold_batchnorm_default_eps_is_1e_5(topic, gen):
    W, b, rm, _, gamma, beta = layer(gen, 6, 5)
    rv = 1e-5 * (1 + torch.rand(5, generator=gen, dtype=torch.float64))  # variances ~1e-5: eps's value shows
    x = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    shown = call("fold_batchnorm", ("W", W), ("b", b), ("running_mean", rm), ("running_var", rv), ("gamma", gamma),
                 ("beta", beta))
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, None)
    h = x @ W + b  # (4, 5)
    expect_close(x @ W2 + b2, bn_eval(h, rm, rv, gamma, beta, 1e-5), call=shown, what="folded: x @ W' + b' gave", **TOL,
                 why="without an eps argument, eps is 1e-5, as batch norm's")


def test_fold_batchnorm_leaves_inputs_unchanged_and_returns_new_tensors(topic, gen):
    W, b, rm, rv, gamma, beta = layer(gen, 9, 5)
    x = torch.randn(4, 9, generator=gen, dtype=torch.float64)
    expected = bn_eval(x @ W + b, rm, rv, gamma, beta, 1e-5)
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-5)
    with inputs_unchanged(shown, W=W, b=b, running_mean=rm, running_var=rv, gamma=gamma, beta=beta):
        W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, 1e-5)
    expect_close(x @ W2 + b2, expected, call=shown, what="folded: x @ W' + b' gave", **TOL)
    expect_new_tensor(W2, shown, W=W)
    expect_new_tensor(b2, shown, b=b, running_mean=rm, beta=beta)


def test_fold_batchnorm_computes_without_torch_batch_norm(topic, impl, gen):
    W, b, rm, rv, gamma, beta = layer(gen, 5, 4)
    x = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-5)
    W2, b2 = fold(topic, shown, W, b, rm, rv, gamma, beta, 1e-5)  # torch's batch norm refuses to run meanwhile
    expect_close(x @ W2 + b2, bn_eval(x @ W + b, rm, rv, gamma, beta, 1e-5), call=shown, what="folded: x @ W' + b' gave",
                 **TOL)
    expect_no_shortcut_source(impl, "fold_batchnorm")


def test_fold_batchnorm_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    W, b, rm, rv, gamma, beta = layer(gen, 5, 4)
    shown = shown_call(W, b, rm, rv, gamma, beta, 1e-5)

    def check(out):
        expect(type(out) is tuple and len(out) == 2, f"{shown} returned {type_name(out)}, expected a tuple (W', b')")
        expect_like(out[0], W, shown + "[0]")
        expect_like(out[1], b, shown + "[1]")
    expect_global_state_kept(lambda: topic.fold_batchnorm(W, b, rm, rv, gamma, beta), shown, check)
