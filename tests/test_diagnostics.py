"""Topic 9, diagnostics: activation_stats and grad_to_data_ratio against formulas written here, in
float64, plus the properties that define them. Run: pytest -m diagnostics"""
import math

import pytest
import torch

from kata.testing import (F64_TOL as TOL, Suspect, call, expect, expect_close, expect_float, expect_global_state_kept,
                          inputs_unchanged, type_name)

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


def saturated_suspects(t, threshold):
    sat = (t.abs() > threshold).double().mean().item()
    return (
        Suspect("percent", 100 * sat, "that is 100 times the fraction: the lecture prints percent, the kata "
                "returns a fraction in [0, 1] (the lecture's 2.78% is 0.0278 here)"),
        Suspect("at_threshold_counts", (t.abs() >= threshold).double().mean().item(),
                f"values exactly at |t| == {threshold} were counted: saturated means strictly beyond the "
                "threshold, |t| > threshold"),
        Suspect("no_abs", (t > threshold).double().mean().item(),
                "only the positive tail was counted: tanh saturates at -1 as well as at +1, compare t.abs()"),
        Suspect("count_not_fraction", float((t.abs() > threshold).sum().item()),
                "that is a count of elements; divide by t.numel() (take the mean of the boolean mask) for a fraction"),
        Suspect("threshold_099", (t.abs() > 0.99).double().mean().item(),
                "that is the fraction beyond 0.99 (the saturation topic's threshold); viz #1 and this "
                f"function use threshold={threshold}"),
    )


@pytest.mark.parametrize("shape", [(32, 200), (7, 3, 5), (50,), (2, 9)])
def test_activation_stats_matches_mean_std_and_fraction_beyond_threshold(topic, gen, shape):
    t = tanh_layer(gen, *shape)
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)
    n = t.numel()
    expect_close(out["mean"], t.mean().item(), call=shown, what="gave mean", **TOL,
                 why="the mean over ALL elements of t, t.mean()",
                 suspects=[Suspect("mean_of_abs", t.abs().mean().item(),
                                   "that is the mean of |t|; the lecture prints t.mean(), signed")])
    expect_close(out["std"], t.std().item(), call=shown, what="gave std", **TOL,
                 why="t.std() over all elements, unbiased (divide by n - 1) as torch and the lecture do",
                 suspects=[Suspect("biased_std", t.std(unbiased=False).item(),
                                   f"that is the biased std (divide by n): the lecture's t.std() is unbiased, "
                                   f"sqrt({n}/{n - 1}) larger"),
                           Suspect("variance", t.var().item(), "that is the variance; take its square root, t.std()")])
    expect_close(out["saturated"], (t.abs() > 0.97).double().mean().item(), call=shown, what="gave saturated",
                 why="the fraction of elements with |t| > 0.97 (the default threshold)", **TOL,
                 suspects=saturated_suspects(t, 0.97))


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99])
def test_activation_stats_uses_the_given_threshold(topic, gen, threshold):
    t = tanh_layer(gen, 40, 25, spread=2.5)
    shown = call("activation_stats", ("t", t), threshold=threshold)
    out = stats_of(topic, t, shown, threshold=threshold)
    expect_close(out["saturated"], (t.abs() > threshold).double().mean().item(), call=shown, what="gave saturated",
                 why=f"count |t| > threshold with the threshold passed in ({threshold})", **TOL,
                 suspects=[Suspect("threshold_ignored", (t.abs() > 0.97).double().mean().item(),
                                   f"that is the fraction beyond 0.97: the threshold argument ({threshold}) was ignored"),
                           *saturated_suspects(t, threshold)[:3]])


def test_activation_stats_does_not_count_values_exactly_at_the_threshold(topic, gen):
    # 0.97 appears exactly, with both signs: neither counts; 0.9700001 and -0.99 do
    t = torch.tensor([[0.97, -0.97, 0.9700001, -0.99, 0.1, -0.3],
                      [0.5, 0.97, -0.97, 0.2, 0.4, -0.6]], dtype=torch.float64)
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)
    expect_close(out["saturated"], 2 / 12, call=shown, what="gave saturated", **TOL,
                 why="2 of the 12 values are strictly beyond 0.97 in absolute value (0.9700001 and -0.99); "
                     "the four at exactly +-0.97 are not",
                 suspects=saturated_suspects(t, 0.97))


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
           + (": only one tail was counted, compare t.abs()" if abs(got - p / 2) <= bound else ""),
           mistake="no_abs" if abs(got - p / 2) <= bound else None)
    expect(abs(out["mean"]) <= 6 * out["std"] / math.sqrt(n),  # std of a sample mean: std/sqrt(n), 6 sigma
           f"{shown} gave mean {out['mean']:.4g}: tanh of zero-mean data averages to about 0")


def test_activation_stats_returns_plain_floats_for_a_tensor_with_a_graph(topic, gen):
    x = torch.randn(16, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.tanh(2 * x + 0.3)  # a tensor with a graph, as a layer's .out is in the lecture
    shown = call("activation_stats", ("t", t))
    out = stats_of(topic, t, shown)  # type(value) is float: no tensor and no graph kept alive
    expect_close(out["std"], t.detach().std().item(), call=shown, what="gave std", **TOL)


def test_activation_stats_leaves_its_input_unchanged(topic, gen):
    t = tanh_layer(gen, 12, 10, spread=2.5)
    shown = call("activation_stats", ("t", t))
    expected = (t.abs() > 0.97).double().mean().item()
    with inputs_unchanged(shown, t=t):
        out = stats_of(topic, t, shown)
    expect_close(out["saturated"], expected, call=shown, what="gave saturated", **TOL)


def weight_and_grad(gen, fan_in, fan_out):
    """A weight with a non-zero mean and a gradient with its own offset, as after a few steps
    (a mean or a norm in place of the std gives a different number)."""
    param = 0.3 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.2
    grad = 0.01 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.004
    return param, grad


def ratio_suspects(param, grad):
    return (
        Suspect("swapped_args", (param.std() / grad.std()).item(),
                "that is param.std() / grad.std(), upside down: the gradient's spread over the data's, grad.std() / param.std()"),
        Suspect("mean_not_std", (grad.mean() / param.mean()).item(),
                "that is a ratio of means; the mean of a gradient is mostly sign cancellation: use std"),
        Suspect("abs_mean", (grad.abs().mean() / param.abs().mean()).item(),
                "that is a ratio of mean absolute values; the lecture divides the stds: grad.std() / param.std()"),
        Suspect("norm_ratio", (grad.norm() / param.norm()).item(),
                "that is a ratio of L2 norms, which includes each tensor's mean; the lecture divides the stds"),
        Suspect("variance_ratio", (grad.var() / param.var()).item(),
                "that is a ratio of variances (the square of the answer): use std"),
    )


@pytest.mark.parametrize("case", range(4))
def test_grad_to_data_ratio_matches_grad_std_over_param_std(topic, gen, case):
    fan_in = int(torch.randint(2, 40, (), generator=gen))
    fan_out = int(torch.randint(2, 40, (), generator=gen))
    param, grad = weight_and_grad(gen, fan_in, fan_out)
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    expect_close(topic.grad_to_data_ratio(param, grad), (grad.std() / param.std()).item(), call=shown, **TOL,
                 why="grad.std() / param.std(): how big the gradient is next to the values it updates",
                 suspects=ratio_suspects(param, grad))


def test_grad_to_data_ratio_ignores_a_shift_and_scales_with_the_gradient(topic, gen):
    param, grad = weight_and_grad(gen, 20, 7)
    base = topic.grad_to_data_ratio(param, grad)
    expect_close(base, (grad.std() / param.std()).item(), call=call("grad_to_data_ratio", ("param", param),
                                                                     ("grad", grad)), **TOL,
                 suspects=ratio_suspects(param, grad))
    shown = call("grad_to_data_ratio", ("param + 5", param), ("grad", grad))
    expect_close(topic.grad_to_data_ratio(param + 5, grad), base, call=shown, **TOL,
                 why="a std does not see a constant shift: adding 5 to every weight leaves the ratio alone",
                 suspects=ratio_suspects(param + 5, grad))
    shown = call("grad_to_data_ratio", ("param", param), ("grad * 3", grad))
    expect_close(topic.grad_to_data_ratio(param, 3 * grad), 3 * base, call=shown, **TOL,
                 why="a gradient three times larger gives a ratio three times larger",
                 suspects=ratio_suspects(param, 3 * grad))


def test_grad_to_data_ratio_uses_the_grad_argument_and_leaves_inputs_unchanged(topic, gen):
    param, grad = weight_and_grad(gen, 10, 27)
    param.requires_grad_()
    param.grad = torch.randn(10, 27, generator=gen, dtype=torch.float64)  # a stale .grad that must not be read
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    with inputs_unchanged(shown, param=param, grad=grad, param_grad=param.grad):
        out = topic.grad_to_data_ratio(param, grad)
    expect_close(out, (grad.std() / param.detach().std()).item(), call=shown, **TOL,
                 why="use the grad passed in (param.grad may be stale or None); the answer is a plain float",
                 suspects=[Suspect("used_param_grad", (param.grad.std() / param.detach().std()).item(),
                                   "that used param.grad; the function gets the gradient as its second argument"),
                           *ratio_suspects(param.detach(), grad)])


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
    sat = (t.abs() > 0.97).double().mean().item()
    expect_global_state_kept(lambda: topic.activation_stats(t), shown,
                             lambda out: expect_close(stats_of_value(out, shown)["saturated"], sat, call=shown,
                                                      what="gave saturated", **TOL))


def test_grad_to_data_ratio_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    param, grad = weight_and_grad(gen, 6, 5)
    shown = call("grad_to_data_ratio", ("param", param), ("grad", grad))
    expected = (grad.std() / param.std()).item()
    expect_global_state_kept(lambda: topic.grad_to_data_ratio(param, grad), shown,
                             lambda out: expect_close(out, expected, call=shown, **TOL))
