"""Topic 9, diagnostics: activation_stats and grad_to_data_ratio against formulas written here, in
float64, plus the properties that define them. Run: pytest -m diagnostics

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_float, expect_global_state_kept,
                          expect_like, inputs_unchanged, type_name)

pytestmark = pytest.mark.diagnostics


KEYS = {"mean", "std", "saturated"}


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("diagnostics")


def tanh_layer(gen, *shape, spread=1.5, offset=0.2):
    """A tanh output with some saturation, a non-zero mean (a wrong sign or abs shows) and no symmetry."""
    return torch.tanh(spread * torch.randn(*shape, generator=gen, dtype=torch.float64) + offset)


def stats_of(topic, t, shown, **kwargs):
    """The learner's dict, checked for its keys and value types before anything else."""
    return stats_of_value(topic.activation_stats(t, **kwargs), shown)


def stats_of_value(out, shown):
    expect(type(out) is dict, f"{shown} returned {type_name(out)}, expected a dict with keys mean, std, saturated")
    expect(set(out) == KEYS, f"{shown} returned keys {sorted(map(str, out))}, expected exactly {sorted(KEYS)}")
    for key in sorted(KEYS):
        expect_float(out[key], f"{shown}[{key!r}]")
    return out


def weight_and_grad(gen, fan_in, fan_out):
    """A weight with a non-zero mean and a gradient with its own offset, as after a few steps
    (a mean or a norm in place of the std gives a different number)."""
    param = 0.3 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.2
    grad = 0.01 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.004
    return param, grad


# ---------------------------------------------------------------- tests, in lesson order
def test_activation_stats_returns_plain_floats_for_a_tensor_with_a_graph(topic, gen):
    x = torch.randn(16, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.tanh(2 * x + 0.3)  # a tensor with a graph, as a layer's .out is in the lecture
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)  # type(value) is float: no tensor and no graph kept alive
    expect_close(out["std"], t.detach().std().item(), call=shown, what="gave std", **TOL)


@pytest.mark.parametrize("shape", [(32, 200), (7, 3, 5), (50,), (2, 9)])
def test_activation_stats_matches_mean_std_and_fraction_beyond_threshold(topic, gen, shape):
    t = tanh_layer(gen, *shape)
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)
    expect_close(out["mean"], t.mean().item(), call=shown, what="gave mean", **TOL,
                 why="the mean over ALL elements of t, t.mean()")
    expect_close(out["std"], t.std().item(), call=shown, what="gave std", **TOL,
                 why="t.std() over all elements, unbiased (divide by n - 1) as torch and the lecture do")
    expect_close(out["saturated"], (t.abs() > 0.97).double().mean().item(), call=shown, what="gave saturated",
                 why="the fraction of elements with |t| > 0.97 (the default threshold)", **TOL)


@pytest.mark.parametrize("case", range(4))
def test_grad_to_data_ratio_matches_grad_std_over_param_std(topic, gen, case):
    fan_in = int(torch.randint(2, 40, (), generator=gen))
    fan_out = int(torch.randint(2, 40, (), generator=gen))
    param, grad = weight_and_grad(gen, fan_in, fan_out)
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    expect_close(topic.grad_to_data_ratio(param, grad), (grad.std() / param.std()).item(), call=shown, **TOL,
                 why="grad.std() / param.std(): how big the gradient is next to the values it updates")


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99])
def test_activation_stats_uses_the_given_threshold(topic, gen, threshold):
    t = tanh_layer(gen, 40, 25, spread=2.5)
    shown = call("activation_stats", ("t", t), threshold=threshold)
    out = stats_of(topic, t, shown, threshold=threshold)
    expect_close(out["saturated"], (t.abs() > threshold).double().mean().item(), call=shown, what="gave saturated",
                 why=f"count |t| > threshold with the threshold passed in ({threshold})", **TOL)


def test_activation_stats_does_not_count_values_exactly_at_the_threshold(topic, gen):
    # 0.97 appears exactly, with both signs: neither counts; 0.9700001 and -0.99 do
    t = torch.tensor([[0.97, -0.97, 0.9700001, -0.99, 0.1, -0.3],
                      [0.5, 0.97, -0.97, 0.2, 0.4, -0.6]], dtype=torch.float64)
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)
    expect_close(out["saturated"], 2 / 12, call=shown, what="gave saturated", **TOL,
                 why="2 of the 12 values are strictly beyond 0.97 in absolute value (0.9700001 and -0.99); "
                     "the four at exactly +-0.97 are not")


def test_activation_stats_saturation_of_tanh_of_gaussian_matches_the_normal_tail(topic, gen):
    n, sigma = 20_000, 2.0
    t = torch.tanh(sigma * torch.randn(n, generator=gen, dtype=torch.float64))
    shown = call("activation_stats", ("tanh(2 * randn)", t))
    out = stats_of(topic, t, shown)
    z = math.atanh(0.97) / sigma  # |t| > 0.97  <=>  |x| > atanh(0.97) = 2.09, i.e. |N(0,1)| > z
    p = math.erfc(z / math.sqrt(2))  # two-sided normal tail, about 0.296
    bound = 6 * math.sqrt(p * (1 - p) / n)  # binomial std of a fraction, n=20k -> 0.0032; we allow 6 sigma
    got = out["saturated"]
    expect(abs(got - p) <= bound,
           f"{shown} gave saturated {got:.4g}, expected {p:.4g} +- {bound:.2g}: tanh(x) is beyond 0.97 where "
           f"|x| > atanh(0.97) = {math.atanh(0.97):.3f}, which for x ~ N(0, {sigma}^2) happens with probability "
           f"{p:.3f} (both tails)"
           + (": only one tail was counted, compare t.abs()" if abs(got - p / 2) <= bound else ""))
    expect(abs(out["mean"]) <= 6 * out["std"] / math.sqrt(n),  # std of a sample mean: std/sqrt(n), 6 sigma
           f"{shown} gave mean {out['mean']:.4g}: tanh of zero-mean data averages to about 0")


def test_grad_to_data_ratio_ignores_a_shift_and_scales_with_the_gradient(topic, gen):
    param, grad = weight_and_grad(gen, 20, 7)
    base = topic.grad_to_data_ratio(param, grad)
    expect_close(base, (grad.std() / param.std()).item(), call=call("grad_to_data_ratio", ("param", param),
                                                                     ("grad", grad)), **TOL)
    shown = call("grad_to_data_ratio", ("param + 5", param), ("grad", grad))
    expect_close(topic.grad_to_data_ratio(param + 5, grad), base, call=shown, **TOL,
                 why="a std does not see a constant shift: adding 5 to every weight leaves the ratio alone")
    shown = call("grad_to_data_ratio", ("param", param), ("grad * 3", grad))
    expect_close(topic.grad_to_data_ratio(param, 3 * grad), 3 * base, call=shown, **TOL,
                 why="a gradient three times larger gives a ratio three times larger")


def test_activation_stats_leaves_its_input_unchanged(topic, gen):
    t = tanh_layer(gen, 12, 10, spread=2.5)
    shown = call("activation_stats", ("t", t))
    expected = (t.abs() > 0.97).double().mean().item()
    with inputs_unchanged(shown, t=t):
        out = stats_of(topic, t, shown)
    expect_close(out["saturated"], expected, call=shown, what="gave saturated", **TOL)


def test_activation_stats_keeps_float64_in_float64(topic, gen):
    # an offset of 1e4 leaves float64 ~12 digits of the spread, float32 (ulp 1e-3 there) about 3
    t = 1e4 + torch.randn(40, 30, generator=gen, dtype=torch.float64)
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)
    expect_close(out["mean"], t.mean().item(), call=shown, what="gave mean", **TOL)
    expect_close(out["std"], t.std().item(), call=shown, what="gave std", **TOL)


def test_activation_stats_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    t = tanh_layer(gen, 6, 5)
    shown = call("activation_stats", ("t", t))
    expect_global_state_kept(lambda: topic.activation_stats(t), shown, lambda out: stats_of_value(out, shown))


def test_grad_to_data_ratio_uses_the_grad_argument_and_leaves_inputs_unchanged(topic, gen):
    param, grad = weight_and_grad(gen, 10, 27)
    param.requires_grad_()
    param.grad = torch.randn(10, 27, generator=gen, dtype=torch.float64)  # a stale .grad that must not be read
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    with inputs_unchanged(shown, param=param, grad=grad, param_grad=param.grad):
        out = topic.grad_to_data_ratio(param, grad)
    expect_close(out, (grad.std() / param.detach().std()).item(), call=shown, **TOL,
                 why="use the grad passed in (param.grad may be stale or None); the answer is a plain float")


def test_grad_to_data_ratio_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    param, grad = weight_and_grad(gen, 6, 5)
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    expected = (grad.std() / param.std()).item()
    expect_global_state_kept(lambda: topic.grad_to_data_ratio(param, grad), shown,
                             lambda out: expect_like(out, expected, shown))
