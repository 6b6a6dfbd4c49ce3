"""Topic 7, modules: the lecture's Linear, BatchNorm1d and Tanh classes, checked against formulas
written here and against torch.nn.BatchNorm1d step by step in float64. Run: pytest -m modules

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.remote import probe
from kata.testing import (F64_TOL as TOL, call, default_dtype, expect, expect_close, expect_like,
                          expect_global_rng_untouched, expect_global_state_kept,
                          expect_new_tensor, expect_no_shortcut_source, expect_tensor, inputs_unchanged, same_object,
                          type_name, vjp)

pytestmark = pytest.mark.modules


F64 = torch.float64


@pytest.fixture(scope="module")
def modules(impl):
    return impl.load("modules")


def float64_default():
    """Build the layers in float64, so they compare with torch at float64 tolerance (and a gradient
    that is zero in exact arithmetic is ~1e-16)."""
    return default_dtype(F64)


def assign(layer, **values):
    """Copy values into the layer's own tensors in place (a torch.nn.Parameter stays one), as the
    contract says tests do; `None` values are skipped."""
    for name, value in values.items():
        if value is not None:
            probe("assign", layer, name, value)


def draw(gen, n, c, spread=3.0):
    """A batch with per-feature offsets and scales: nothing symmetric that could hide a bug."""
    scale = spread * (0.3 + torch.rand(c, generator=gen, dtype=F64))
    return torch.randn(n, c, generator=gen, dtype=F64) * scale + 5 * torch.randn(c, generator=gen, dtype=F64)


def gamma_beta(gen, dim):
    """Not ones and zeros, so that swapping them, or forgetting one, shows."""
    return 0.5 + torch.rand(dim, generator=gen, dtype=F64), torch.randn(dim, generator=gen, dtype=F64)


def torch_bn(dim, eps, momentum, gamma, beta):
    """The oracle: torch.nn.BatchNorm1d in float64 with the same gamma (weight) and beta (bias)."""
    ref = torch.nn.BatchNorm1d(dim, eps=eps, momentum=momentum, dtype=F64)
    with torch.no_grad():
        ref.weight.copy_(gamma)
        ref.bias.copy_(beta)
    return ref


def stat(t, dim, shown, name):
    """A running statistic as (dim,). The contract says (dim,); the lecture's class computes its mean
    with keepdim=True, which turns running_mean into (1, dim) after the first update. That broadcasts
    the same way in eval, so we accept it and compare values after reshape(-1)."""
    t = expect_tensor(t, f"{shown}: .{name}")
    expect(t.numel() == dim, f"{shown}: .{name} has shape {tuple(t.shape)}, expected ({dim},): one value per "
                             "feature (reduce the batch over dim 0, then keep one number per feature)")
    return t.detach().reshape(-1)  # (dim,)


def deep_net(modules, gen, batchnorm):
    """The lecture's deep net: n_embd 10, block 3, n_hidden 100, vocab 27."""
    hidden = [100] * 5
    layers, fan_in = [], 30
    for fan_out in hidden + [27]:
        layers.append(modules.Linear(fan_in, fan_out, bias=not batchnorm, generator=gen))
        if batchnorm:
            layers.append(modules.BatchNorm1d(fan_out))
        if fan_out != 27:
            layers.append(modules.Tanh())
        fan_in = fan_out
    return layers


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("fan_in, fan_out", [(7, 3), (3, 11), (30, 100)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_init_weight_is_fan_in_by_fan_out_and_bias_is_zeros_or_none(modules, gen, fan_in, fan_out, bias):
    shown = call("Linear", fan_in=fan_in, fan_out=fan_out, bias=bias, generator="g")
    layer = modules.Linear(fan_in, fan_out, bias=bias, generator=gen)
    weight = expect_tensor(layer.weight, f"{shown}.weight")
    expect(tuple(weight.shape) != (fan_out, fan_in),
           f"{shown}.weight has shape {tuple(weight.shape)}, expected ({fan_in}, {fan_out}): the lecture stores "
           "the weight as (fan_in, fan_out) and computes x @ weight; (fan_out, fan_in) is torch.nn.Linear's "
           "layout, used as x @ weight.T")
    expect_tensor(weight, f"{shown}.weight", shape=(fan_in, fan_out))
    if not bias:
        expect(layer.bias is None, f"{shown}.bias is {type(layer.bias).__name__}, expected None: bias=False "
                                   "means the layer has no bias at all (the lecture's Linear before BatchNorm1d)")
        return
    got = expect_tensor(layer.bias, f"{shown}.bias", shape=(fan_out,))
    expect(bool((got == 0).all()), f"{shown}.bias is {got.tolist()[:4]}..., expected zeros({fan_out}): the "
                                   "lecture's Linear starts its bias at zero (only the weight is random)")


@pytest.mark.parametrize("bias", [True, False])
def test_linear_parameters_are_the_layer_own_tensors(modules, gen, bias):
    with float64_default():
        layer = modules.Linear(5, 4, bias=bias, generator=gen)
    shown = call(f"Linear(5, 4, bias={bias}).parameters")
    params = layer.parameters()
    expect(isinstance(params, list), f"{shown} returned {type_name(params)}, expected a list")
    mine = [layer.weight] + ([layer.bias] if bias else [])
    expect(all(p is not None for p in params),
           f"{shown} returned a list with None in it: with bias=False the parameters are [weight] only, so "
           "sum(p.nelement() for p in parameters) works")
    expect(len(params) == len(mine) and all(same_object(p, q) for p, q in zip(params, mine)),
           f"{shown} returned {len(params)} tensors, expected {'[weight, bias]' if bias else '[weight]'}, "
           "the layer's own tensors (not copies), so that an update of the parameters updates the layer")
    x = torch.randn(3, 5, generator=gen, dtype=F64)
    steps = [torch.randn(p.shape, generator=gen, dtype=F64) for p in params]
    probe("step_parameters", layer, steps)  # what the training loop does, p.data += -lr * p.grad, there
    params = [p.detach() + step for p, step in zip(params, steps)]
    expected = x @ params[0] + (params[1] if bias else 0)  # (3, 4)
    expect_close(layer(x), expected, call=f"Linear(5, 4, bias={bias})(x) after updating its parameters()",
                 what="returned", **TOL, why="the update made through parameters() must change the layer")


def test_batchnorm1d_parameters_are_gamma_and_beta(modules, gen):
    with float64_default():
        bn = modules.BatchNorm1d(3)
    shown = call("BatchNorm1d(3).parameters")
    params = bn.parameters()
    expect(isinstance(params, list) and len(params) == 2 and same_object(params[0], bn.gamma)
           and same_object(params[1], bn.beta),
           f"{shown} returned {type_name(params)} of {len(params) if isinstance(params, list) else '?'}, "
           "expected [gamma, beta], the module's own tensors in that order (running_mean and running_var are "
           "buffers, not parameters: they are not trained by gradient descent)")
    x = draw(gen, 4, 3)
    steps = [torch.randn(3, generator=gen, dtype=F64) for _ in params]
    probe("step_parameters", bn, steps)  # what the training loop does, there
    expected = F.batch_norm(x, None, None, params[0] + steps[0], params[1] + steps[1], training=True)
    expect_close(bn(x), expected, call="BatchNorm1d(3)(x) after updating its parameters()",
                 what="returned", **TOL, why="the update made through parameters() must change the module")


@pytest.mark.parametrize("fan_in, fan_out", [(400, 25), (30, 300)])
def test_linear_init_weight_std_is_one_over_sqrt_fan_in(modules, gen, fan_in, fan_out):
    shown = call("Linear", fan_in=fan_in, fan_out=fan_out, generator="g")
    weight = expect_tensor(modules.Linear(fan_in, fan_out, generator=gen).weight, f"{shown}.weight",
                           shape=(fan_in, fan_out)).detach().double()
    n, sigma = weight.numel(), 1 / math.sqrt(fan_in)
    # a sample std over n draws has std about sigma/sqrt(2n): n=10000 -> 0.71%, n=9000 -> 0.75%; 6 sigma
    expect_close(weight.std().item(), sigma, call=shown, what="drew a weight with std",
                 rtol=6 / math.sqrt(2 * n), atol=0.0, why="the lecture's weight is randn / sqrt(fan_in)")
    # a sample mean has std sigma/sqrt(n): 0.01 sigma at n=10000; 6 of those
    expect(abs(weight.mean().item()) < 6 * sigma / math.sqrt(n),
           f"{shown}.weight has mean {weight.mean().item():.4g}, expected about 0: draw from a normal centred at 0")
    # normal: 4.55% of draws lie beyond 2 sigma; a binomial count of n has std sqrt(p(1-p)/n) ~ 0.21%; 6 of those
    beyond = (weight.abs() > 2 * sigma).double().mean().item()
    expect(abs(beyond - 0.0455) < 6 * math.sqrt(0.0455 * 0.9545 / n),
           f"{shown}.weight has {beyond:.2%} of its values beyond 2 std, expected about 4.55%: draw from a normal "
           "(torch.randn), not a uniform")


def test_linear_init_draws_from_the_generator_it_is_given(modules, seed):
    shown = call("Linear", fan_in=20, fan_out=8, generator="torch.Generator().manual_seed(s)")
    with torch.random.fork_rng():  # the global seed is moved on purpose; the rest of the suite never sees it
        torch.manual_seed(1)
        first = modules.Linear(20, 8, generator=torch.Generator().manual_seed(seed)).weight.detach().clone()
        torch.manual_seed(2)
        again = modules.Linear(20, 8, generator=torch.Generator().manual_seed(seed)).weight.detach().clone()
        other = modules.Linear(20, 8, generator=torch.Generator().manual_seed(seed + 1)).weight.detach()
    expect(torch.equal(first, again),
           f"two calls {shown} with the same seed gave different weights: draw with "
           "torch.randn(..., generator=generator), not from the global random state")
    expect(not torch.equal(first, other), f"{shown} gave the same weights for two different seeds")


@pytest.mark.parametrize("n, fan_in, fan_out", [(1, 4, 3), (32, 10, 7), (5, 6, 20)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_call_is_x_at_weight_plus_bias_and_stored_in_out(modules, gen, n, fan_in, fan_out, bias):
    with float64_default():
        layer = modules.Linear(fan_in, fan_out, bias=bias, generator=gen)
    weight = torch.randn(fan_in, fan_out, generator=gen, dtype=F64)
    b = torch.randn(fan_out, generator=gen, dtype=F64) if bias else None  # not zeros: a lost bias must show
    assign(layer, weight=weight, bias=b)
    x = torch.randn(n, fan_in, generator=gen, dtype=F64)
    shown = call(f"Linear({fan_in}, {fan_out}, bias={bias})", ("x", x))
    with inputs_unchanged(shown, x=x):
        out = layer(x)
    expected = x @ weight + (0 if b is None else b)  # (n, fan_out)
    expect_close(out, expected, call=shown, what="returned", **TOL,
                 why="a Linear computes x @ weight + bias with weight (fan_in, fan_out)")
    expect_new_tensor(out, shown, x=x)
    expect(same_object(getattr(layer, "out", None), out),
           f"after {shown}, layer.out is not the tensor it returned: store the output in self.out and return "
           "it, so the diagnostics can read every layer's activations")


@pytest.mark.parametrize("batchnorm, expected", [(True, 47_024), (False, 46_497)])
def test_linear_and_batchnorm1d_build_the_lecture_deep_net_with_its_parameter_count(modules, gen, batchnorm, expected):
    embedding = torch.randn(27, 10, generator=gen)  # C: 270 of the parameters
    layers = deep_net(modules, gen, batchnorm)
    params = [embedding] + [p for layer in layers for p in layer.parameters()]
    count = sum(p.nelement() for p in params)
    what = "with BatchNorm1d (Linear bias=False)" if batchnorm else "without BatchNorm1d (Linear with bias)"
    expect(count == expected, f"the lecture's deep net {what} built from your modules has {count} parameters, "
                              f"expected {expected} (printed in the lecture): Linear gives [weight] or "
                              "[weight, bias], BatchNorm1d [gamma, beta], Tanh []")
    x = torch.randn(32, 30, generator=gen)
    out = x
    for layer in layers:
        out = layer(out)
    expect_tensor(out, "the deep net's forward pass on x[32,30]", shape=(32, 27))


def test_linear_init_defaults_to_a_zero_bias_and_the_global_rng(modules, seed):
    shown = call("Linear", fan_in=6, fan_out=5)
    with torch.random.fork_rng():  # the global seed is moved on purpose; the rest of the suite never sees it
        torch.manual_seed(seed % 2**31)
        first = modules.Linear(6, 5)
        torch.manual_seed(seed % 2**31)
        again = modules.Linear(6, 5)
    expect(first.bias is not None, f"{shown}.bias is None: bias=True is the default (only Linear(..., bias=False) "
                                   "has none)")
    bias = expect_tensor(first.bias, f"{shown}.bias", shape=(5,))
    expect(bool((bias == 0).all()), f"{shown}.bias is {bias.tolist()}, expected zeros(5): bias=True is the default")
    expect(torch.equal(first.weight, again.weight),
           f"{shown} twice after torch.manual_seed({seed % 2**31}) gave different weights: without a generator, "
           "draw from torch's global RNG (torch.randn(..., generator=None))")


@pytest.mark.parametrize("dim", [1, 7, 100])
def test_batchnorm1d_init_has_the_lecture_defaults(modules, dim):
    shown = call("BatchNorm1d", dim=dim)
    bn = modules.BatchNorm1d(dim)
    gamma = expect_tensor(getattr(bn, "gamma", None), f"{shown}.gamma", shape=(dim,))
    beta = expect_tensor(getattr(bn, "beta", None), f"{shown}.beta", shape=(dim,))
    expect(not (bool((gamma == 0).all()) and bool((beta == 1).all())),
           f"{shown} starts with gamma zeros and beta ones: they are swapped; gamma (the gain) starts at ones "
           "and beta (the bias) at zeros, so that a fresh BatchNorm1d outputs exactly the normalised x")
    for name, value in (("gamma", 1.0), ("beta", 0.0), ("running_mean", 0.0), ("running_var", 1.0)):
        t = expect_tensor(getattr(bn, name, None), f"{shown}.{name}", shape=(dim,))
        expect(bool((t == value).all()), f"{shown}.{name} is {t.tolist()[:4]}..., expected all {value}: gamma "
                                         "starts at ones and beta at zeros (the identity), running_mean at zeros "
                                         "and running_var at ones (the statistics of a unit normal)")
    expect(bn.training is True, f"{shown}.training is {bn.training!r}, expected True: a module starts in training "
                                "mode")


def test_batchnorm1d_defaults_are_eps_1e_5_and_momentum_0_1(modules, gen):
    dim = 5
    with float64_default():
        bn = modules.BatchNorm1d(dim)
    ref = torch_bn(dim, 1e-5, 0.1, torch.ones(dim, dtype=F64), torch.zeros(dim, dtype=F64))
    x = draw(gen, 32, dim, spread=3e-3)  # variances ~1e-5: eps=1e-5 changes the output by ~40%
    shown = call("BatchNorm1d(5)", ("x", x))
    expected = ref(x).detach()
    expect_close(bn(x), expected, call=shown, what="returned", **TOL,
                 why="without an eps argument, eps is 1e-5 (torch's default)")
    expect_close(stat(bn.running_mean, dim, shown, "running_mean"), ref.running_mean, call=shown,
                 what="left running_mean =", **TOL,
                 why="without a momentum argument, momentum is 0.1: running_mean = 0.9 * 0 + 0.1 * x.mean(0)")


@pytest.mark.parametrize("momentum, eps, n", [(0.1, 1e-5, 32), (0.001, 1e-5, 32), (0.1, 0.1, 2), (0.001, 0.1, 5)])
def test_batchnorm1d_training_matches_torch_step_by_step(modules, gen, momentum, eps, n):
    dim = int(torch.randint(1, 9, (), generator=gen))
    gamma, beta = gamma_beta(gen, dim)
    with float64_default():
        bn = modules.BatchNorm1d(dim, eps=eps, momentum=momentum)
    assign(bn, gamma=gamma, beta=beta)
    ref = torch_bn(dim, eps, momentum, gamma, beta)
    for step in range(4):
        x = draw(gen, n, dim)
        expected = ref(x).detach()
        shown = f"step {step}: {call(f'BatchNorm1d({dim}, eps={eps}, momentum={momentum})', ('x', x))}"
        out = bn(x)
        expect_close(out, expected, call=shown, what="returned", **TOL)
        expect_close(stat(bn.running_mean, dim, shown, "running_mean"), ref.running_mean, call=shown,
                     what="left running_mean =", **TOL,
                     why="running_mean = (1 - momentum) * running_mean + momentum * x.mean(0)")
        expect_close(stat(bn.running_var, dim, shown, "running_var"), ref.running_var, call=shown,
                     what="left running_var =", **TOL,
                     why="running_var = (1 - momentum) * running_var + momentum * x.var(0) (unbiased)")
    bn.training = False
    ref.eval()
    x = draw(gen, 3, dim)
    shown = call("bn", ("x", x)) + f" (bn = BatchNorm1d({dim}) after 4 training steps, then bn.training = False)"
    expect_close(bn(x), ref(x).detach(), call=shown, what="returned", **TOL,
                 why="in eval mode normalise with running_mean and running_var")


@pytest.mark.parametrize("n", [1, 4, 32])
def test_batchnorm1d_eval_uses_running_stats_and_leaves_them_alone(modules, gen, n):
    dim = 6
    gamma, beta = gamma_beta(gen, dim)
    running_mean, running_var = torch.randn(dim, generator=gen, dtype=F64), 0.2 + torch.rand(dim, generator=gen, dtype=F64)
    with float64_default():
        bn = modules.BatchNorm1d(dim, eps=0.01)
    assign(bn, gamma=gamma, beta=beta, running_mean=running_mean, running_var=running_var)
    bn.training = False
    ref = torch_bn(dim, 0.01, 0.1, gamma, beta).eval()
    with torch.no_grad():
        ref.running_mean.copy_(running_mean)
        ref.running_var.copy_(running_var)
    x = draw(gen, n, dim)  # n = 1: one example at a time, as when sampling names; batch stats are useless there
    shown = call("bn", ("x", x)) + " (bn = BatchNorm1d(6, eps=0.01), then bn.training = False)"
    with inputs_unchanged(shown, x=x):
        out = bn(x)
    expect_close(out, ref(x).detach(), call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, x=x)
    for name, kept in (("running_mean", running_mean), ("running_var", running_var)):
        now = stat(getattr(bn, name), dim, shown, name)
        expect(torch.equal(now, kept), f"{shown} changed bn.{name} from {kept.tolist()[:3]}... to "
                                       f"{now.tolist()[:3]}...: in eval mode (training = False) the running "
                                       "statistics are only read; update them only when self.training is True")


@pytest.mark.parametrize("shape", [(1, 1), (32, 100), (4, 7)])
def test_tanh_matches_torch_tanh_and_has_no_parameters(modules, gen, shape):
    x = 3 * torch.randn(shape, generator=gen, dtype=F64)
    layer = modules.Tanh()
    shown = call("Tanh()", ("x", x))
    with inputs_unchanged(shown, x=x):
        out = layer(x)
    expect_close(out, torch.tanh(x), call=shown, what="returned", **TOL)
    expect(same_object(getattr(layer, "out", None), out), f"after {shown}, layer.out is not the tensor it returned: store the "
                                               "output in self.out (the lecture's histograms read it)")
    params = layer.parameters()
    expect(isinstance(params, list) and params == [],
           f"Tanh().parameters() returned {params!r}, expected [] (an empty list, so the net's "
           "[p for layer in layers for p in layer.parameters()] still works)")


def test_linear_gradients_reach_weight_and_bias(modules, gen):
    with float64_default():
        layer = modules.Linear(6, 4, generator=gen)
    weight, b = torch.randn(6, 4, generator=gen, dtype=F64), torch.randn(4, generator=gen, dtype=F64)
    assign(layer, weight=weight, bias=b)
    x = torch.randn(9, 6, generator=gen, dtype=F64)
    upstream = torch.randn(9, 4, generator=gen, dtype=F64)  # not all-ones: sum() would hide errors
    shown = call("Linear(6, 4)", ("x", x))
    ours = vjp(layer, (x,), upstream, grads_of=[(layer, "weight"), (layer, "bias")])  # autograd, in its process
    expect_tensor(ours.out, shown, shape=(9, 4))
    expect(ours.graph, f"{shown} returned a tensor with no autograd graph: no torch.no_grad() or "
                       ".detach() in a Linear's forward")
    for name, got, expected in (("weight", ours.attrs[0], x.T @ upstream),
                                ("bias", ours.attrs[1], upstream.sum(0)),
                                ("x", ours.grads[0], upstream @ weight.T)):
        expect(got is not None, f"{shown}: no gradient reached {name}")
        expect_close(got, expected, call=shown, what=f"gave d loss / d {name} =", **TOL,
                     why="for y = x @ W + b: dW = x.T @ dy, db = dy.sum(0), dx = dy @ W.T")


def test_batchnorm1d_gradients_match_torch(modules, gen):
    dim, n = 4, 8
    gamma, beta = gamma_beta(gen, dim)
    x = draw(gen, n, dim)
    upstream = torch.randn(n, dim, generator=gen, dtype=F64)  # not all-ones: sum() would hide errors
    with float64_default():
        bn = modules.BatchNorm1d(dim)
    assign(bn, gamma=gamma, beta=beta)
    ref, theirs = torch_bn(dim, 1e-5, 0.1, gamma, beta), x.clone().requires_grad_()
    shown = call("BatchNorm1d(4)", ("x", x))
    ours = vjp(bn, (x,), upstream, grads_of=[(bn, "gamma"), (bn, "beta")])  # autograd, in the learner's process
    expect_tensor(ours.out, shown, shape=(n, dim))
    expect(ours.graph, f"{shown} returned a tensor with no autograd graph: the normalisation itself must "
                       "stay differentiable")
    (ref(theirs) * upstream).sum().backward()
    for name, got, expected in (("x", ours.grads[0], theirs.grad), ("gamma", ours.attrs[0], ref.weight.grad),
                                ("beta", ours.attrs[1], ref.bias.grad)):
        expect(got is not None, f"{shown}: no gradient reached {name}")
        expect_close(got, expected, call=shown, what=f"gave d loss / d {name} =", **TOL,
                     why="autograd through your module should equal torch.nn.BatchNorm1d's gradient")


def test_linear_leaves_global_state_and_the_global_rng_as_found(modules, gen):
    shown = call("Linear", fan_in=4, fan_out=3, generator="g")
    expect_global_state_kept(lambda: modules.Linear(4, 3, generator=gen), shown,  # dtype: the default of its time
                             lambda layer: expect_tensor(layer.weight, f"{shown}.weight", shape=(4, 3),
                                                         dtype=torch.get_default_dtype()))
    layer = modules.Linear(4, 3, generator=gen)
    weight, bias = layer.weight, layer.bias  # float32: made with the default dtype
    x = torch.randn(2, 4, generator=gen)
    shown = call("Linear(4, 3)", ("x", x))
    expect_global_state_kept(lambda: layer(x), shown,  # one float32 matmul of 4 terms: ~1e-7 relative
                             lambda out: expect_like(out, x @ weight + bias, shown))
    expect_global_rng_untouched(lambda: modules.Linear(4, 3, generator=gen), call("Linear", fan_in=4, fan_out=3,
                                                                                  generator="g"), gen)


def test_batchnorm1d_updates_running_stats_without_a_graph(modules, gen):
    dim = 5
    gamma, beta = gamma_beta(gen, dim)
    with float64_default():
        bn = modules.BatchNorm1d(dim)
    assign(bn, gamma=gamma, beta=beta)
    ref = torch_bn(dim, 1e-5, 0.1, gamma, beta)
    x = draw(gen, 16, dim)
    ref(x)
    x.requires_grad_()  # as in the deep net: x is the output of a Linear and carries a graph
    shown = call("BatchNorm1d(5)", ("x", x))
    out = expect_tensor(bn(x), shown, shape=(16, dim))
    expect(out.requires_grad, f"{shown} returned a tensor with no autograd graph: only the running statistics "
                              "are updated under torch.no_grad(), not the output")
    for name in ("running_mean", "running_var"):
        t = expect_tensor(getattr(bn, name), f"{shown}: .{name}")
        expect(not t.requires_grad,
               f"after {shown}, bn.{name} has grad_fn {getattr(t, '_kata_grad_fn', None)}: update the running statistics "
               "under torch.no_grad() (the lecture does), else every step's graph stays attached to them and "
               "the next backward() tries to go through old batches")
        expect_close(stat(t, dim, shown, name), getattr(ref, name), call=shown, what=f"left {name} =", **TOL)


def test_batchnorm1d_leaves_input_unchanged_and_stores_out(modules, gen):
    with float64_default():
        bn = modules.BatchNorm1d(5)
    x = draw(gen, 10, 5)
    shown = call("BatchNorm1d(5)", ("x", x))
    with inputs_unchanged(shown, x=x):
        out = bn(x)
    expect_close(out, F.batch_norm(x, None, None, training=True), call=shown, what="returned", **TOL)
    expect_new_tensor(out, shown, x=x)
    expect(same_object(getattr(bn, "out", None), out), f"after {shown}, bn.out is not the tensor it returned: store the "
                                            "output in self.out")


def test_batchnorm1d_computes_without_torch_batch_norm(modules, impl, gen):
    with float64_default():
        bn = modules.BatchNorm1d(6)
    x = draw(gen, 32, 6)
    expected = F.batch_norm(x, None, None, training=True)
    shown = call("BatchNorm1d(6)", ("x", x))
    expect_close(bn(x), expected, call=shown, what="returned", **TOL)  # torch's batch norm switched off
    expect_no_shortcut_source(impl, "modules")


def test_batchnorm1d_leaves_grad_mode_and_default_dtype_as_found(modules, gen):
    shown = call("BatchNorm1d", dim=3)
    expect_global_state_kept(lambda: modules.BatchNorm1d(3), shown,
                             lambda bn: expect_tensor(bn.gamma, f"{shown}.gamma", shape=(3,)))
    with float64_default():
        bn = modules.BatchNorm1d(3)
    x = draw(gen, 8, 3)
    shown = call("BatchNorm1d(3)", ("x", x))
    expect_global_state_kept(lambda: bn(x), shown,
                             lambda out: expect_like(out, x, shown))


def test_tanh_leaves_grad_mode_and_default_dtype_as_found(modules, gen):
    layer = modules.Tanh()
    x = 3 * torch.randn(4, 3, generator=gen, dtype=F64)
    shown = call("Tanh()", ("x", x))
    expect_global_state_kept(lambda: layer(x), shown,
                             lambda out: expect_like(out, x, shown))
