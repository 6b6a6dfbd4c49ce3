"""Topic 3, saturation: the saturated fraction and dead neurons against formulas written in the
test (and the Gaussian tail probability), tanh_backward against autograd of torch.tanh in float64.
Run: pytest -m saturation

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept, expect_like,
                          expect_new_tensor, expect_tensor, inputs_unchanged, safe_repr, type_name)

pytestmark = pytest.mark.saturation


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("saturation")


def tanh_layer(gen, n, c, spread):
    """A tanh layer's output with per-column offsets, so the two tails are not mirror images."""
    pre = spread * torch.randn(n, c, generator=gen, dtype=torch.float64) + torch.randn(c, generator=gen, dtype=torch.float64)
    return torch.tanh(pre)  # (n, c)


def expect_python_float(out, shown):
    expect(isinstance(out, float),
           f"{shown} returned {type_name(out)} {safe_repr(out)}, expected a Python float: end with .item(), "
           "as the lecture does when it prints the saturated share")
    return out


def band_layer(gen, n, c):
    """|h| spread over (0.95, 1): values beyond 0.99 and values between 0.97 and 0.99, both signs."""
    mag = 0.95 + 0.0499 * torch.rand(n, c, generator=gen, dtype=torch.float64)
    return torch.where(torch.rand(n, c, generator=gen) < 0.5, -mag, mag)


# ---------------------------------------------------------------- dead_neurons
def dead_layer(gen, n, c, t):
    """h (n, c) with known dead columns: some saturated on both sides, some nearly dead (one row
    is not), some exactly at the threshold, the rest ordinary."""
    h = torch.tanh(0.7 * torch.randn(n, c, generator=gen, dtype=torch.float64))  # ordinary: |h| < 0.99
    tail = t + (1 - t) * torch.rand(n, generator=gen, dtype=torch.float64).clamp(min=0.01)  # (t, 1)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    h[:, 0] = tail * sign  # dead, both tails
    h[:, 1] = -tail  # dead, negative tail only
    h[:, 2] = tail * sign
    h[n // 2, 2] = 0.3  # alive: one example still passes a gradient
    h[:, 3] = t * sign  # exactly at the threshold everywhere: not saturated (strict >)
    h[:, 4] = tail  # dead, positive tail
    return h[:, torch.randperm(c, generator=gen)]  # columns shuffled: position must not matter


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("case", range(4))
def test_saturation_fraction_matches_the_formula_over_all_elements(topic, gen, case):
    n = int(torch.randint(2, 100, (), generator=gen))
    c = int(torch.randint(2, 60, (), generator=gen))
    spread = [5.18, 1.0, 2.5, 0.8][case]  # the lecture's naive init is 5.18
    threshold = [0.99, 0.97, 0.9, 0.5][case]
    h = tanh_layer(gen, n, c, spread)
    shown = call("saturation_fraction", ("h", h), threshold=threshold)
    out = expect_python_float(topic.saturation_fraction(h, threshold=threshold), shown)
    expected = ((h.abs() > threshold).sum() / h.numel()).item()  # over ALL n*c elements
    expect_close(out, expected, call=shown, **TOL)


@pytest.mark.parametrize("threshold", [0.99, 0.75])
def test_saturation_fraction_does_not_count_values_exactly_at_the_threshold(topic, gen, threshold):
    t = threshold
    values = [t, -t, t, -t, t, (1 + t) / 2, -(1 + 3 * t) / 4, 0.1, -0.3, 0.25 * t]  # 2 strictly beyond t
    h = torch.tensor(values, dtype=torch.float64)[torch.randperm(len(values), generator=gen)].reshape(2, 5)
    shown = call("saturation_fraction", ("h", h), threshold=t)
    out = expect_python_float(topic.saturation_fraction(h, threshold=t), shown)
    expect_close(out, 2 / 10, call=shown, **TOL,
                 why=f"exactly 2 of the 10 values are strictly beyond {t}; five sit exactly at +-{t} and do not count")


def test_saturation_fraction_counts_the_negative_tail(topic, gen):
    h = -tanh_layer(gen, 16, 8, 0.3).abs()  # all in (-1, 0]
    h[:, :3] = -0.999  # three columns deep in the negative tail
    shown = call("saturation_fraction", ("h", h))
    out = expect_python_float(topic.saturation_fraction(h), shown)
    expected = ((h.abs() > 0.99).sum() / h.numel()).item()
    expect_close(out, expected, call=shown, **TOL,
                 why="tanh saturates at -1 too: a unit at -0.999 passes as little gradient as one at +0.999")


@pytest.mark.parametrize("spread, threshold", [(5.18, 0.99), (1.52, 0.99), (1.0, 0.97)])
def test_saturation_fraction_of_gaussian_preactivations_matches_the_tail_probability(topic, gen, spread, threshold):
    n = 30_000  # below torch's parallel grain (32,768 elements): one thread, no stalls on a busy machine
    h = torch.tanh(spread * torch.randn(n // 200, 200, generator=gen, dtype=torch.float64))  # (150, 200)
    shown = call("saturation_fraction", ("tanh(s*z)", h), threshold=threshold)
    out = expect_python_float(topic.saturation_fraction(h, threshold=threshold), shown)
    a = math.atanh(threshold) / spread  # |tanh(s z)| > t  <=>  |z| > atanh(t) / s
    p = 1 - math.erf(a / math.sqrt(2))  # P(|z| > a) for z ~ N(0, 1)
    sigma = math.sqrt(p * (1 - p) / n)  # binomial standard error of a share over n independent draws
    # n = 30,000: sigma <= 0.0029 (at p = 0.5); we allow 6 sigma
    expect(abs(out - p) < 6 * sigma,
           f"{shown} returned {out:.6g}, expected P(|z| > atanh({threshold}) / {spread}) = {p:.4f} "
           f"+- {6 * sigma:.4f} (6 binomial standard errors at n = {n}); the lecture's pre-activations of std "
           f"5.18 give 0.61 saturated")


def test_saturation_fraction_default_threshold_is_0_99(topic, gen):
    h = band_layer(gen, 30, 20)
    shown = call("saturation_fraction", ("h", h))
    out = expect_python_float(topic.saturation_fraction(h), shown)
    expect_close(out, (h.abs() > 0.99).double().mean().item(), call=shown,
                 why="without a threshold argument, saturated means |h| > 0.99", **TOL)


@pytest.mark.parametrize("n, c, t", [(32, 12, 0.99), (2, 7, 0.97), (9, 20, 0.9)])
def test_dead_neurons_flags_columns_saturated_for_every_example(topic, gen, n, c, t):
    h = dead_layer(gen, n, c, t)
    shown = call("dead_neurons", ("h", h), threshold=t)
    out = topic.dead_neurons(h, threshold=t)
    if isinstance(out, torch.Tensor):
        expect(tuple(out.shape) != (n,) or n == c,
               f"{shown} returned shape {tuple(out.shape)}, one value per EXAMPLE; a neuron is a column of h "
               f"(N, C): reduce over dim 0, the batch, to get one flag per neuron, shape ({c},)")
    out = expect_tensor(out, shown, shape=(c,), dtype=torch.bool)
    expect_close(out, (h.abs() > t).all(dim=0), call=shown, rtol=0, atol=0)
    expect(int(out.sum()) == 3, f"{shown} found {int(out.sum())} dead neurons, expected the 3 built in")


def test_dead_neurons_none_when_only_most_examples_saturate(topic, gen):
    h = tanh_layer(gen, 32, 50, 5.18)  # the lecture's naive init: 61% saturated
    h[0] = 0.5 * torch.sign(h[0])  # the first example is in the linear region of every unit
    shown = call("dead_neurons", ("h", h))
    out = expect_tensor(topic.dead_neurons(h), shown, shape=(50,), dtype=torch.bool)
    expect_close(out, torch.zeros(50, dtype=torch.bool), call=shown, rtol=0, atol=0,
                 why="every neuron has at least one example (row 0) that is not saturated, so none is dead; the "
                     "lecture found no all-white column at the naive init")


def test_dead_neurons_default_threshold_is_0_99(topic, gen):
    h = band_layer(gen, 16, 12)
    h[:, :4] = 0.991 + 0.008 * torch.rand(16, 4, generator=gen, dtype=torch.float64)  # dead at 0.99
    h[:, 4:8] = 0.975 + 0.01 * torch.rand(16, 4, generator=gen, dtype=torch.float64)  # dead at 0.97 only
    shown = call("dead_neurons", ("h", h))
    out = expect_tensor(topic.dead_neurons(h), shown, shape=(12,), dtype=torch.bool)
    expect_close(out, (h.abs() > 0.99).all(dim=0), call=shown,
                 rtol=0, atol=0, why="without a threshold argument, a neuron is dead when |h| > 0.99 in every row")


@pytest.mark.parametrize("case", range(3))
def test_tanh_backward_matches_autograd_of_torch_tanh(topic, gen, case):
    n = int(torch.randint(2, 40, (), generator=gen))
    c = int(torch.randint(1, 30, (), generator=gen))
    x = ([0.5, 2.0, 5.18][case] * torch.randn(n, c, generator=gen, dtype=torch.float64)).requires_grad_()
    grad_out = torch.randn(n, c, generator=gen, dtype=torch.float64)  # not all-ones: that would hide a missing factor
    h = torch.tanh(x)
    (h * grad_out).sum().backward()  # the same as h.backward(grad_out), without importing torch.fx's sympy
    h = h.detach()
    shown = call("tanh_backward", ("h", h), ("grad_out", grad_out))
    expect_close(topic.tanh_backward(h, grad_out), x.grad, call=shown, what="returned", **TOL,
                 why="autograd of h = torch.tanh(x) gives d loss / d x = (1 - tanh(x)**2) * grad_out")


def test_tanh_backward_is_zero_where_the_unit_is_saturated(topic, gen):
    h = torch.tensor([[1.0, -1.0, 0.0, 0.6], [-0.6, 1.0, 0.999, -1.0]], dtype=torch.float64)
    grad_out = 1 + torch.rand(2, 4, generator=gen, dtype=torch.float64)  # in (1, 2): nonzero everywhere
    shown = call("tanh_backward", ("h", h), ("grad_out", grad_out))
    expected = (1 - h**2) * grad_out  # 0 at |h| = 1, grad_out at h = 0
    expect_close(topic.tanh_backward(h, grad_out), expected, call=shown, what="returned", **TOL,
                 why="at |h| = 1 the unit sits on tanh's flat tail: 1 - h**2 = 0, no gradient passes whatever "
                     "grad_out is; at h = 0 it passes grad_out unchanged")


def test_tanh_backward_is_linear_in_grad_out(topic, gen):
    h = tanh_layer(gen, 6, 5, 1.5)
    g1, g2 = (torch.randn(6, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    shown = call("tanh_backward", ("h", h), ("2.5 * g1 - g2", g1))
    combined = topic.tanh_backward(h, 2.5 * g1 - g2)
    parts = 2.5 * expect_tensor(topic.tanh_backward(h, g1), shown, shape=h.shape) \
        - expect_tensor(topic.tanh_backward(h, g2), shown, shape=h.shape)
    expect_close(combined, parts.detach(), call=shown, what="returned", **TOL,
                 why="backprop is linear in the incoming gradient: grad_in = local_gradient * grad_out")
    expect_close(combined, (1 - h**2) * (2.5 * g1 - g2), call=shown, what="returned", **TOL)


def test_saturation_fraction_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    h = tanh_layer(gen, 8, 5, 2.0)
    shown = call("saturation_fraction", ("h", h))
    expect_global_state_kept(lambda: topic.saturation_fraction(h), shown, lambda out: expect_python_float(out, shown))


def test_dead_neurons_leaves_h_unchanged(topic, gen):
    h = dead_layer(gen, 8, 6, 0.99)
    shown = call("dead_neurons", ("h", h))
    with inputs_unchanged(shown, h=h):
        out = topic.dead_neurons(h)
    out = expect_tensor(out, shown, shape=(6,), dtype=torch.bool)
    expect_close(out, (h.abs() > 0.99).all(dim=0), call=shown, rtol=0, atol=0)


def test_dead_neurons_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    h = dead_layer(gen, 8, 6, 0.99)
    shown = call("dead_neurons", ("h", h))
    expect_global_state_kept(lambda: topic.dead_neurons(h), shown,
                             lambda out: expect_tensor(out, shown, shape=(6,), dtype=torch.bool))


def test_tanh_backward_returns_a_new_tensor_and_leaves_inputs_unchanged(topic, gen):
    h = tanh_layer(gen, 5, 4, 2.0)
    grad_out = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    shown = call("tanh_backward", ("h", h), ("grad_out", grad_out))
    with inputs_unchanged(shown, h=h, grad_out=grad_out):
        out = topic.tanh_backward(h, grad_out)
    expect_close(out, (1 - h**2) * grad_out, call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, h=h, grad_out=grad_out)


def test_tanh_backward_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    h = tanh_layer(gen, 5, 4, 2.0)
    grad_out = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    shown = call("tanh_backward", ("h", h), ("grad_out", grad_out))
    expect_global_state_kept(lambda: topic.tanh_backward(h, grad_out), shown,
                             lambda out: expect_like(out, h, shown))
