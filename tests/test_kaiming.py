"""Topic 4, kaiming: gain against torch.nn.init.calculate_gain, kaiming_std against gain / sqrt(fan_in),
kaiming_normal's shape, scale, distribution and generator, and the lecture's deep tanh stack.
Run: pytest -m kaiming

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch

from kata.testing import (F64_TOL as TOL, KataFailure, call, expect, expect_close, expect_like, expect_float,
                          expect_global_rng_untouched, expect_global_state_kept, expect_no_shortcut_source, expect_tensor, fail, fmt, safe_repr)

pytestmark = pytest.mark.kaiming


FIVE_THIRDS = 5 / 3


TOL_STACK = 0.06  # activation std per tanh layer, see the deep-stack test


@pytest.fixture(scope="module")
def learner(impl):
    """The learner's kaiming module (torch.nn.init refuses to run while its code does)."""
    return impl.load("kaiming")


def torch_gain(nonlinearity, param=None) -> float:
    """The oracle: torch's own calculate_gain, here in the test process."""
    return float(torch.nn.init.calculate_gain(nonlinearity, param))


def shown_with_generator(shown: str, generator: str) -> str:
    """'kaiming_normal(30, 200)' -> 'kaiming_normal(30, 200, generator=g)'."""
    return f"{shown[:-1]}, generator={generator})"


def expect_float_gain(out, shown) -> float:
    if type(out) is int:
        fail(f"{shown} returned the int {out}, expected a Python float (the kata's gain always returns one)")
    return expect_float(out, shown)


# ---------------------------------------------------------------- gain
GAIN_CASES = [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None), ("selu", None),
              ("leaky_relu", None), ("leaky_relu", 0), ("leaky_relu", 0.2), ("leaky_relu", "random"),
              ("leaky_relu", "random")]


def expect_sample_std(out, expected: float, shown: str) -> None:
    """The sample std of the n weights is within 6 standard errors of `expected`."""
    n = out.numel()
    band = 6 / math.sqrt(2 * n)  # std error of a normal sample std is sigma / sqrt(2n); we allow 6 of them
    s = out.detach().double().std().item()
    if abs(s / expected - 1) <= band:
        return
    message = (f"{shown} has sample std {s:.5g}, expected {expected:.5g} (+-{100 * band:.1f}%, 6 standard errors "
               f"for {n} weights)")
    fail(message + ": draw torch.randn(fan_in, fan_out) and multiply by gain / sqrt(fan_in)")


def mean_field_stds(g: float, layers: int) -> list[float]:
    """Std of each tanh layer's output in an infinitely wide stack fed unit-variance input, weights
    N(0, g**2 / fan_in): q' = E[tanh(g * sqrt(q) * z)**2] with z ~ N(0, 1), integrated on a fine grid."""
    z = torch.linspace(-12, 12, 4801, dtype=torch.float64)
    w = torch.exp(-z**2 / 2)
    w = w / w.sum()  # normal weights on the grid
    q, stds = 1.0, []
    for _ in range(layers):
        q = float((w * torch.tanh(g * math.sqrt(q) * z) ** 2).sum())
        stds.append(math.sqrt(q))
    return stds


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("size", [(30, 200), (200, 27), "random"])
def test_kaiming_normal_has_shape_fan_in_by_fan_out(learner, gen, size):
    if size == "random":
        fan_in, fan_out = (int(v) for v in torch.randperm(300, generator=gen)[:2] + 1)  # distinct: no square
    else:
        fan_in, fan_out = size
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", fan_in), ("fan_out", fan_out)), "g")
    out = expect_tensor(learner.kaiming_normal(fan_in, fan_out, generator=gen), shown)
    expect(tuple(out.shape) != (fan_out, fan_in),
           f"{shown} returned shape {tuple(out.shape)}, expected ({fan_in}, {fan_out}): that is nn.Linear's "
           "(fan_out, fan_in) layout; the lecture's W is (fan_in, fan_out), used as x @ W")
    expect_tensor(out, shown, shape=(fan_in, fan_out))
    expect(out.is_floating_point() and bool(torch.isfinite(out).all()),
           f"{shown} returned {fmt(out)}: expected finite floating-point weights")


def test_gain_of_tanh_is_exactly_five_thirds(learner):
    assert torch_gain("tanh") == FIVE_THIRDS  # the lecture's number is torch's number
    shown = call("gain", ("nonlinearity", "tanh"))
    out = expect_float_gain(learner.gain("tanh"), shown)
    expect_close(out, FIVE_THIRDS, call=shown, what="returned", **TOL,
                 why="the lecture multiplies W1 by 5/3 / sqrt(fan_in): tanh squashes, so it needs a gain above 1")


@pytest.mark.parametrize("fan_in, fan_out, nonlinearity", [(30, 200, "tanh"), (200, 27, "tanh"), (300, 64, "relu"),
                                                           (64, 400, "linear"), (50, 120, "leaky_relu")])
def test_kaiming_normal_std_matches_gain_over_sqrt_fan_in(learner, gen, fan_in, fan_out, nonlinearity):
    g = torch_gain(nonlinearity)
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", fan_in), ("fan_out", fan_out),
                                      nonlinearity=nonlinearity), "g")
    out = expect_tensor(learner.kaiming_normal(fan_in, fan_out, nonlinearity=nonlinearity, generator=gen), shown,
                        shape=(fan_in, fan_out))
    expected = g / math.sqrt(fan_in)
    expect_sample_std(out, expected, shown)
    n, mean = out.numel(), out.detach().double().mean().item()
    expect(abs(mean) <= 6 * expected / math.sqrt(n),  # std error of a sample mean is sigma / sqrt(n); 6 of them
           f"{shown} has sample mean {mean:.4g}, expected 0 (+-{6 * expected / math.sqrt(n):.2g}): the weights must "
           "be centred on 0; torch.rand draws from [0, 1), torch.randn from N(0, 1)")


@pytest.mark.parametrize("nonlinearity, param", GAIN_CASES)
def test_gain_matches_torch_calculate_gain(learner, gen, nonlinearity, param):
    if param == "random":
        param = 0.05 + 2 * float(torch.rand((), generator=gen))  # slopes from 0.05 to 2.05
    expected = torch_gain(nonlinearity, param)
    shown = call("gain", ("nonlinearity", nonlinearity), **({} if param is None else {"param": param}))
    try:
        out = learner.gain(nonlinearity, param)
    except ValueError as e:
        fail(f"{shown} raised ValueError({safe_repr(str(e))}), expected {expected:.10g}: {nonlinearity!r} is one of "
             "the six names the kata knows (linear, sigmoid, tanh, relu, leaky_relu, selu)")
    out = expect_float_gain(out, shown)
    expect_close(out, expected, call=shown, what="returned",
                 why=f"torch.nn.init.calculate_gain({nonlinearity!r}, {param!r}) = {expected:.10g}", **TOL)


@pytest.mark.parametrize("name", ["conv2d", "conv_transpose1d", "gelu", "Tanh", "", "identity"])
def test_gain_raises_value_error_for_any_other_name(learner, name):
    shown = call("gain", ("nonlinearity", name))
    try:
        out = learner.gain(name)
    except ValueError:
        return
    except (KataFailure, NotImplementedError):  # the shortcut rule, or the untouched stub: not this lesson
        raise
    except Exception as e:  # noqa: BLE001 - a wrong exception type is the lesson here
        fail(f"{shown} raised {type(e).__name__}: {str(e)[:120]}, expected ValueError: the names are "
             "exactly linear, sigmoid, tanh, relu, leaky_relu and selu, case-sensitive")
    fail(f"{shown} returned {safe_repr(out)}, expected ValueError: the names are exactly linear, sigmoid, tanh, "
         "relu, leaky_relu and selu, case-sensitive")


def test_gain_default_leaky_relu_slope_is_0_01(learner):
    expected = torch_gain("leaky_relu")  # sqrt(2 / (1 + 0.01**2))
    shown = call("gain", ("nonlinearity", "leaky_relu"))
    expect_close(expect_float_gain(learner.gain("leaky_relu"), shown), expected, call=shown, what="returned", **TOL,
                 why=f"torch.nn.init.calculate_gain('leaky_relu') = {expected:.10g}")


@pytest.mark.parametrize("nonlinearity", ["tanh", "linear", "relu", "selu", "leaky_relu"])
def test_kaiming_std_is_gain_over_sqrt_fan_in(learner, gen, nonlinearity):
    fan_in = int(torch.randint(2, 1001, (), generator=gen))  # not 1: sqrt(1) = 1 hides a missing sqrt
    g = torch_gain(nonlinearity)
    shown = call("kaiming_std", ("fan_in", fan_in), nonlinearity=nonlinearity)
    expect_close(learner.kaiming_std(fan_in, nonlinearity=nonlinearity), g / math.sqrt(fan_in), call=shown,
                 what="returned", **TOL,
                 why=f"std = gain / sqrt(fan_in) = {g:.6g} / sqrt({fan_in})")


def test_kaiming_std_defaults_to_tanh_and_gives_the_lecture_w1_scale(learner):
    shown = call("kaiming_std", ("fan_in", 30))
    expected = FIVE_THIRDS / math.sqrt(30)  # 0.3043, the lecture's W1 scale (fan_in = 3 * 10)
    expect_close(learner.kaiming_std(30), expected, call=shown, what="returned", **TOL,
                 why="the lecture's W1 is scaled by (5/3) / sqrt(30) = 0.3043")


def test_kaiming_normal_is_gaussian_not_uniform(learner, gen):
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", 100), ("fan_out", 200)), "g")
    out = expect_tensor(learner.kaiming_normal(100, 200, generator=gen), shown, shape=(100, 200)).detach().double()
    n, p = out.numel(), 0.04550026  # P(|z| > 2) for a normal z; a uniform with the same std never gets there
    tail = (out.abs() > 2 * out.std()).double().mean().item()
    # binomial std error sqrt(p(1-p)/n) = 0.0015 at n = 20000, plus 0.0011 from the sample std in the threshold
    # (dp/dt = 2 phi(2) = 0.108 per unit of t = 2, t's relative error 1/sqrt(2n)); we allow 6 x their sum
    band = 6 * (math.sqrt(p * (1 - p) / n) + 4 * 0.05399 / math.sqrt(2 * n))
    expect(abs(tail - p) <= band,
           f"{shown}: {100 * tail:.2f}% of the weights lie beyond 2 std, expected {100 * p:.2f}% (+-{100 * band:.2f}%) "
           "for a normal draw" + (": a uniform draw has no tails; nn.Linear initialises uniformly, the lecture and "
                                  "this function draw torch.randn" if tail < p / 3 else ""))


def test_kaiming_normal_same_seed_gives_same_weights_and_draws_from_the_generator(learner, gen):
    s = int(torch.randint(0, 2**31, (), generator=gen))
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", 30), ("fan_out", 200)),
                                 f"Generator().manual_seed({s})")
    a = expect_tensor(learner.kaiming_normal(30, 200, generator=torch.Generator().manual_seed(s)), shown)
    b = expect_tensor(learner.kaiming_normal(30, 200, generator=torch.Generator().manual_seed(s)), shown)
    expect(torch.equal(a, b), f"{shown} gave different weights for two generators with the same seed: draw "
                              "with torch.randn(..., generator=generator), not from the global RNG")
    c = expect_tensor(learner.kaiming_normal(30, 200, generator=torch.Generator().manual_seed(s + 1)), shown)
    expect(not torch.equal(a, c), f"{shown} gave the same weights for seeds {s} and {s + 1}: the draw must "
                                  "come from the generator passed in")
    g = torch.Generator().manual_seed(s)
    before = g.get_state()
    d = learner.kaiming_normal(30, 200, generator=g)
    expect(not torch.equal(g.get_state(), before) and not torch.equal(d, learner.kaiming_normal(30, 200, generator=g)),
           f"{shown} did not advance the generator: two calls with one generator must give two different "
           "weights (the lecture draws C, W1, b1, W2, b2 one after the other from g)")


def test_kaiming_normal_without_generator_uses_the_global_rng(learner, gen):
    s = int(torch.randint(0, 2**31, (), generator=gen))
    shown = call("kaiming_normal", ("fan_in", 10), ("fan_out", 20))
    saved = torch.get_rng_state()  # leave the global RNG as we found it
    try:
        torch.manual_seed(s)
        a = expect_tensor(learner.kaiming_normal(10, 20), shown, shape=(10, 20))
        torch.manual_seed(s)
        b = learner.kaiming_normal(10, 20)
        torch.manual_seed(s + 1)
        c = learner.kaiming_normal(10, 20)
    finally:
        torch.set_rng_state(saved)
    expect(torch.equal(a, b), f"{shown} after torch.manual_seed({s}) twice gave different weights: without a "
                              "generator, draw from torch's global RNG (torch.randn(..., generator=None))")
    expect(not torch.equal(a, c), f"{shown} gave the same weights after torch.manual_seed({s}) and ({s + 1}): "
                                  "without a generator, draw from torch's global RNG, do not seed your own")


def test_kaiming_normal_default_nonlinearity_is_tanh(learner, gen):
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", 40), ("fan_out", 500)), "g")
    out = expect_tensor(learner.kaiming_normal(40, 500, generator=gen), shown, shape=(40, 500))
    expect_sample_std(out, FIVE_THIRDS / math.sqrt(40), shown)


def test_kaiming_normal_keeps_a_deep_tanh_stack_in_a_band_while_gain_one_shrinks_it(learner, gen):
    layers, width, rows = 10, 100, 200  # float32 and 200 rows: small enough to stay single-threaded and fast
    x = torch.randn(rows, width, generator=gen)

    def run(nonlinearity):
        h, stds = x, []
        for _ in range(layers):
            W = expect_tensor(learner.kaiming_normal(width, width, nonlinearity=nonlinearity, generator=gen),
                              shown, shape=(width, width))
            h = torch.tanh(h @ W.detach().float())  # (rows, width)
            stds.append(h.std().item())
        return stds

    shown = shown_with_generator(call("kaiming_normal", ("fan_in", width), ("fan_out", width), nonlinearity="tanh"),
                                 "g")
    tanh_stds, kept, shrunk = run("tanh"), mean_field_stds(FIVE_THIRDS, layers), mean_field_stds(1.0, layers)
    # kept: 0.76, 0.69, 0.67, ... 0.65 (the lecture's 0.65); shrunk: 0.63, 0.49, 0.41, 0.36, 0.32 (the lecture's
    # 0.62 -> 0.32), 0.29 ... 0.23. A random 100 x 100 W moves a layer's variance by about sqrt(2 / 100**2) = 1.4%,
    # and 200 rows add sampling noise: over 300 seeds each layer's std deviated by at most 0.008 (sd) from these
    # values, 0.028 at worst. We allow 0.06, 7.5 sd; kept and shrunk differ by 0.13 already at layer 1.
    shown_stds = ", ".join(f"{s:.2f}" for s in tanh_stds)
    if all(abs(a - b) <= TOL_STACK for a, b in zip(tanh_stds, shrunk)):
        fail(f"10 tanh layers with W = {shown}: activation std {shown_stds} shrinks layer by layer, as with "
             "gain 1; the tanh gain 5/3 is missing")
    expect(all(abs(a - b) <= TOL_STACK for a, b in zip(tanh_stds, kept)),
           f"10 tanh layers with W = {shown} on unit-variance input: activation std per layer {shown_stds}, "
           f"expected {', '.join(f'{s:.2f}' for s in kept)} (+-0.06): Kaiming init with gain 5/3 keeps it near 0.65")
    linear_stds = run("linear")
    expect(all(abs(a - b) <= TOL_STACK for a, b in zip(linear_stds, shrunk)),
           f"10 tanh layers with W = {shown.replace('tanh', 'linear')}: activation std per layer "
           f"{', '.join(f'{s:.2f}' for s in linear_stds)}, expected {', '.join(f'{s:.2f}' for s in shrunk)} (+-0.06): "
           "with gain 1 tanh squashes every layer a little more (the lecture's 0.62 -> 0.32)")


def test_gain_leaves_grad_mode_and_default_dtype_as_found(learner):
    shown = call("gain", ("nonlinearity", "tanh"))
    expect_global_state_kept(lambda: learner.gain("tanh"), shown,
                             lambda out: expect_float_gain(out, shown))


def test_gain_and_kaiming_normal_compute_without_torch_nn_init(learner, impl, gen):
    expected_std = torch_gain("relu") / math.sqrt(300)
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", 300), ("fan_out", 64), nonlinearity="relu"), "g")
    out = expect_tensor(learner.kaiming_normal(300, 64, nonlinearity="relu", generator=gen), shown, shape=(300, 64))
    expect_sample_std(out, expected_std, shown)  # runs with nn.init blocked
    expect_close(learner.gain("tanh"), FIVE_THIRDS, call=call("gain", ("nonlinearity", "tanh")), **TOL)
    expect_no_shortcut_source(impl, "kaiming")


def test_kaiming_std_leaves_grad_mode_and_default_dtype_as_found(learner):
    shown = call("kaiming_std", ("fan_in", 30))
    expect_global_state_kept(lambda: learner.kaiming_std(30), shown,
                             lambda out: expect_like(out, FIVE_THIRDS, shown))


def test_kaiming_normal_leaves_global_state_and_the_global_rng_as_found(learner, gen):
    shown = shown_with_generator(call("kaiming_normal", ("fan_in", 10), ("fan_out", 20)), "g")
    # the weights follow the default dtype; 200 draws: their std is within 6 standard errors (1/sqrt(400))
    expect_global_state_kept(lambda: learner.kaiming_normal(10, 20, generator=gen), shown,
                             lambda out: expect_tensor(out, shown, shape=(10, 20), dtype=torch.get_default_dtype()))
    expect_global_rng_untouched(lambda: learner.kaiming_normal(10, 20, generator=gen), shown, gen)
