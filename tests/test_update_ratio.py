"""Topic 10, update_ratio: update_to_data_ratio and update_ratios against the lecture's formula
written here, in float64, plus the properties that define them. Run: pytest -m update_ratio

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_float, expect_global_state_kept,
                          fmt, inputs_unchanged, safe_repr, type_name)

pytestmark = pytest.mark.update_ratio


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("update_ratio")


def lecture_ratio(param, grad, lr):
    """The lecture's formula: ((lr * p.grad).std() / p.data.std()).log10()."""
    return ((lr * grad).std() / param.std()).log10().item()


def weight_and_grad(gen, fan_in, fan_out):
    """A weight and a gradient, both with a positive mean (so a mean-based ratio is a finite, wrong number)."""
    param = 0.3 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.25
    grad = 0.02 * torch.randn(fan_in, fan_out, generator=gen, dtype=torch.float64) + 0.01
    return param, grad


def with_grads(gen, shapes):
    """Leaf parameters of these shapes, each with a .grad of a different size (so each ratio is distinct)."""
    params = []
    for k, shape in enumerate(shapes):
        p = (0.2 * torch.randn(shape, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
        p.grad = (0.001 * (k + 1) ** 2) * torch.randn(shape, generator=gen, dtype=torch.float64)
        params.append(p)
    return params


def same(got, want):
    """Equal lists of floats, within float64 tolerance; nan matches nan (the std of a 0-D tensor is nan)."""
    return len(got) == len(want) and all(
        (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-7) for a, b in zip(got, want))


def show(values):
    return "[" + ", ".join(fmt(v) for v in values) + "]"


def expect_float_list(out, shown):
    expect(type(out) is list, f"{shown} returned {type_name(out)}, expected a list of floats")
    for value in out:
        expect_float(value, f"{shown} element")


def expect_ratio_list(out, params, lr, shown):
    """out must be the lecture's list: one float per p with p.ndim == 2, in order."""
    expect_float_list(out, shown)

    expected = [lecture_ratio(p.detach(), p.grad, lr) for p in params if p.ndim == 2]
    if same(out, expected):
        return
    shapes = [tuple(p.shape) for p in params]
    message = f"{shown} with parameters of shapes {shapes} returned {show(out)}, expected {show(expected)}"
    expect(False, message + ": update_to_data_ratio(p, p.grad, lr) for each p with p.ndim == 2, in the order given")


# ---------------------------------------------------------------- tests, in lesson order
def test_update_ratios_returns_an_empty_list_without_2d_parameters(topic, gen):
    params = with_grads(gen, [(100,), (27,), (4, 3, 2)])
    shown = "update_ratios([bias (100,), bias (27,), tensor (4, 3, 2)], lr=0.1)"
    out = topic.update_ratios(params, 0.1)
    expect(type(out) is list and out == [],
           f"{shown} returned {safe_repr(out)}, expected []: none of these is a weight matrix (p.ndim == 2)")


def test_update_to_data_ratio_is_minus_3_for_an_update_one_thousandth_of_the_data(topic, gen):
    param, grad = weight_and_grad(gen, 30, 100)
    param = (param - param.mean()) / param.std() * 0.4  # std exactly 0.4
    grad = (grad - grad.mean()) / grad.std() * 0.4  # the same std as the data
    shown = call("update_to_data_ratio", ("param", param), ("grad", grad), lr=0.001)
    expect_close(topic.update_to_data_ratio(param, grad, 0.001), -3.0, call=shown, **TOL,
                 why="grad has the same std as param, so the update lr * grad is 1/1000 of the data: log10 gives "
                     "-3, the lecture's guide line")


@pytest.mark.parametrize("case", range(4))
def test_update_to_data_ratio_matches_the_lecture_formula(topic, gen, case):
    fan_in = int(torch.randint(2, 40, (), generator=gen))
    fan_out = int(torch.randint(2, 40, (), generator=gen))
    param, grad = weight_and_grad(gen, fan_in, fan_out)
    lr = [0.1, 0.01, 0.05, 0.003][case]  # never 1, which would hide a missing lr
    shown = call("update_to_data_ratio", ("param", param), ("grad", grad), lr=lr)
    expect_close(topic.update_to_data_ratio(param, grad, lr), lecture_ratio(param, grad, lr), call=shown, **TOL,
                 why="log10((lr * grad).std() / param.std())")


def test_update_to_data_ratio_ten_times_the_lr_adds_exactly_one(topic, gen):
    param, grad = weight_and_grad(gen, 27, 10)
    shown = f"update_to_data_ratio(param{list(param.shape)}, grad{list(grad.shape)}, lr=0.01 and lr=0.1)"
    low = expect_float(topic.update_to_data_ratio(param, grad, 0.01), shown)
    high = expect_float(topic.update_to_data_ratio(param, grad, 0.1), shown)
    step = high - low
    expect(math.isclose(step, 1.0, rel_tol=0, abs_tol=1e-9),
           f"{shown} gave {low:.6g} and {high:.6g}, a step of {step:.6g}, expected exactly 1: ten times the learning "
           "rate makes the update ten times bigger, and log10 turns that into +1")


def test_update_to_data_ratio_ten_times_the_data_subtracts_exactly_one(topic, gen):
    param, grad = weight_and_grad(gen, 12, 9)
    base = expect_float(topic.update_to_data_ratio(param, grad, 0.1),
                        call("update_to_data_ratio", ("param", param), ("grad", grad), lr=0.1))
    shown = call("update_to_data_ratio", ("param * 10", param), ("grad", grad), lr=0.1)
    expect_close(topic.update_to_data_ratio(10 * param, grad, 0.1), base - 1, call=shown, **TOL,
                 why="data ten times larger makes the same update ten times smaller relative to it: -1 in log10")


@pytest.mark.parametrize("order", range(3))
def test_update_ratios_takes_exactly_the_2d_parameters_in_order(topic, gen, order):
    shapes = [(27, 10), (30, 100), (100,), (100,), (4, 5, 6), (100, 27), (), (27,)]
    perm = torch.randperm(len(shapes), generator=gen).tolist() if order else range(len(shapes))
    params = with_grads(gen, [shapes[i] for i in perm])
    shown = "update_ratios(params, lr=0.1)"
    expect_ratio_list(topic.update_ratios(params, 0.1), params, 0.1, shown)


def test_update_ratios_of_a_small_net_after_backward_matches_the_lecture_loop(topic, gen):
    # the lecture's deep net in miniature: C, Linear (no bias) + BN gain/bias + tanh, Linear + bias
    C = torch.randn(27, 10, generator=gen, dtype=torch.float64)
    W1 = torch.randn(30, 20, generator=gen, dtype=torch.float64) * (5 / 3) / 30**0.5
    gamma, beta = torch.ones(20, dtype=torch.float64), torch.zeros(20, dtype=torch.float64)
    W2 = torch.randn(20, 27, generator=gen, dtype=torch.float64) * 0.1
    b2 = torch.zeros(27, dtype=torch.float64)
    params = [C, W1, gamma, beta, W2, b2]
    for p in params:
        p.requires_grad_()
    X = torch.randint(0, 27, (16, 3), generator=gen)
    Y = torch.randint(0, 27, (16,), generator=gen)
    hpre = C[X].view(16, 30) @ W1  # (16, 20)
    h = torch.tanh(gamma * (hpre - hpre.mean(0)) / hpre.std(0) + beta)  # the lecture's inline BatchNorm
    F.cross_entropy(h @ W2 + b2, Y).backward()
    shown = "update_ratios([C, W1, bngain, bnbias, W2, b2], lr=0.1)"
    expect_ratio_list(topic.update_ratios(params, 0.1), params, 0.1, shown)


def test_update_to_data_ratio_uses_the_grad_argument_and_leaves_inputs_unchanged(topic, gen):
    param, grad = weight_and_grad(gen, 30, 100)
    param.requires_grad_()
    param.grad = 5 * torch.randn(30, 100, generator=gen, dtype=torch.float64)  # stale: must not be read
    shown = call("update_to_data_ratio", ("param", param), ("grad", grad), lr=0.1)
    with inputs_unchanged(shown, param=param, grad=grad, param_grad=param.grad):
        out = topic.update_to_data_ratio(param, grad, 0.1)
    expect_close(out, lecture_ratio(param.detach(), grad, 0.1), call=shown, **TOL,
                 why="use the grad passed in (param.grad may be stale or None); the answer is a plain float")


def test_update_to_data_ratio_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    param, grad = weight_and_grad(gen, 6, 5)
    shown = call("update_to_data_ratio", ("param", param), ("grad", grad), lr=0.1)
    expect_global_state_kept(lambda: topic.update_to_data_ratio(param, grad, 0.1), shown,
                             lambda out: expect_float(out, shown))


def test_update_ratios_changes_neither_parameters_nor_gradients(topic, gen):
    params = with_grads(gen, [(30, 100), (100,), (100, 27)])
    grads = [p.grad for p in params]
    shown = "update_ratios([W (30, 100), b (100,), W (100, 27)], lr=0.1)"
    with inputs_unchanged(shown, params=params, grads=grads):
        out = topic.update_ratios(params, 0.1)
    expect(all(p.grad is g for p, g in zip(params, grads)),
           f"{shown} replaced or cleared p.grad: measuring the update must not zero the gradients (the "
           "training loop does that before the next backward)")
    expect_ratio_list(out, params, 0.1, shown)


def test_update_ratios_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    params = with_grads(gen, [(6, 5), (5,)])
    shown = "update_ratios([W (6, 5), b (5,)], lr=0.1)"
    expect_global_state_kept(lambda: topic.update_ratios(params, 0.1), shown,
                             lambda out: expect_float_list(out, shown))
