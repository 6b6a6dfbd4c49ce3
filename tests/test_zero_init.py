"""Topic 11 (exercise E01), zero_init: unigram_loss against the entropy written out here and
F.cross_entropy of log-frequency logits; zero_init_grads against autograd of the lecture's MLP
with every parameter zero, run in the test, and against the formula for b2's gradient.
Run: pytest -m zero_init

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, default_dtype, expect, expect_close, expect_float,
                          expect_global_state_kept, expect_tensor, fail, inputs_unchanged, safe_repr)

pytestmark = pytest.mark.zero_init


NAMES = ("C", "W1", "b1", "W2", "b2")


F64 = torch.float64


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("zero_init")


# ---------------------------------------------------------------- unigram_loss
def entropy(Y, vocab_size) -> float:
    """The oracle: -sum p log p over the classes that occur, in float64 nats."""
    p = torch.bincount(Y, minlength=vocab_size).double() / len(Y)
    p = p[p > 0]
    return -(p * p.log()).sum().item()


def expect_loss(topic, Y, vocab, shown, expected, why, **kwargs):
    """The learner's unigram_loss(Y, **kwargs) is a float equal to `expected` (vocab: the number of classes)."""
    out = topic.unigram_loss(Y, **kwargs)
    out = expect_float(out, shown)
    expect_close(out, expected, call=shown, why=why, **TOL)


def skewed_targets(gen, n, vocab_size, absent):
    """n targets with frequencies far from uniform and `absent` classes that never occur."""
    weights = torch.rand(vocab_size, generator=gen, dtype=F64) ** 3
    weights[torch.randperm(vocab_size, generator=gen)[:absent]] = 0
    return torch.multinomial(weights, n, replacement=True, generator=gen)


# ---------------------------------------------------------------- zero_init_grads
def draw_batch(gen, n, block_size, vocab_size):
    X = torch.randint(0, vocab_size, (n, block_size), generator=gen)
    Y = skewed_targets(gen, n, vocab_size, absent=min(3, vocab_size - 2))
    return X, Y


def autograd_grads(X, Y, vocab_size, n_embd, n_hidden):
    """The oracle: the lecture's forward pass with every parameter zero, differentiated by torch."""
    N, block_size = X.shape
    shapes = {"C": (vocab_size, n_embd), "W1": (block_size * n_embd, n_hidden), "b1": (n_hidden,),
              "W2": (n_hidden, vocab_size), "b2": (vocab_size,)}
    p = {k: torch.zeros(s, dtype=F64, requires_grad=True) for k, s in shapes.items()}
    h = torch.tanh(p["C"][X].view(N, -1) @ p["W1"] + p["b1"])  # (N, n_hidden)
    F.cross_entropy(h @ p["W2"] + p["b2"], Y).backward()
    return {k: v.grad for k, v in p.items()}


def grads_of(topic, X, Y, shown, dtype=F64, **kwargs):
    """The learner's dict of gradients, built in `dtype`, checked for its keys and tensors."""
    with default_dtype(dtype):
        out = topic.zero_init_grads(X, Y, **kwargs)
    expect(type(out) is dict and set(out) == set(NAMES),
           f"{shown} returned {safe_repr(out)}, expected a dict with the keys {', '.join(NAMES)}")
    for name in NAMES:
        expect(out[name] is not None, f"{shown}[{name!r}] is None: every parameter gets a gradient, even if it "
                                      "is zero (make each parameter requires_grad before the forward pass)")
        expect_tensor(out[name], f"{shown}[{name!r}]")
    return out


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("vocab_size", [27, 5])
def test_unigram_loss_is_log_v_for_uniform_targets(topic, gen, vocab_size):
    Y = torch.arange(vocab_size).repeat(7)[torch.randperm(7 * vocab_size, generator=gen)]  # each class 7 times
    shown = call("unigram_loss", ("Y", Y), vocab_size=vocab_size)
    expect_loss(topic, Y, vocab_size, shown, math.log(vocab_size), vocab_size=vocab_size,
                why=f"every class is equally frequent, so the best constant prediction is uniform: log({vocab_size})")


def test_unigram_loss_is_zero_for_a_single_class(topic, gen):
    k = int(torch.randint(0, 27, (), generator=gen))
    Y = torch.full((50,), k)
    shown = call("unigram_loss", ("Y", Y), vocab_size=27)
    expect_loss(topic, Y, 27, shown, 0.0, vocab_size=27,
                why=f"every target is class {k}: predicting it with probability 1 costs -log(1) = 0")


@pytest.mark.parametrize("case", range(4))
def test_unigram_loss_equals_cross_entropy_of_log_frequency_logits(topic, gen, case):
    vocab_size = [27, 27, 10, 60][case]
    n = int(torch.randint(20, 400, (), generator=gen))
    Y = skewed_targets(gen, n, vocab_size, absent=[0, 5, 3, 20][case])
    freq = torch.bincount(Y, minlength=vocab_size).double() / n
    logits = freq.log().expand(n, vocab_size)  # (n, vocab): b2 = log p on every row; absent classes -inf
    expected = F.cross_entropy(logits, Y).item()
    assert math.isclose(expected, entropy(Y, vocab_size), rel_tol=1e-9)  # the two oracles agree
    shown = call("unigram_loss", ("Y", Y), vocab_size=vocab_size)
    expect_loss(topic, Y, vocab_size, shown, expected, vocab_size=vocab_size,
                why="the best constant logits are log(count / N), and F.cross_entropy of those is the entropy")


def test_unigram_loss_default_vocab_size_is_27(topic, gen):
    Y = skewed_targets(gen, 300, 27, absent=4)
    Y[:3] = 26  # 'z', the last of 27 classes: a default below 27 has no room for it
    shown = call("unigram_loss", ("Y", Y))
    expect_loss(topic, Y, 27, shown, entropy(Y, 27), why="vocab_size defaults to the lecture's 27 characters")


@pytest.mark.parametrize("n", [32, 7])
def test_zero_init_grads_b2_is_softmax_of_zero_minus_target_frequencies(topic, gen, n):
    X, Y = draw_batch(gen, n, 3, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y))
    grads = grads_of(topic, X, Y, shown)
    freq = torch.bincount(Y, minlength=27).double() / n
    expect_close(grads["b2"], 1 / 27 - freq, call=shown, what="gave b2's gradient",
                 why="the logits are all 0, so softmax(0) = 1/27 for every class, and d loss / d b2 is the batch "
                     "mean of softmax - onehot(Y): 1/27 - count_k / N", **TOL)


def test_zero_init_grads_every_other_gradient_is_exactly_zero(topic, gen):
    X, Y = draw_batch(gen, 32, 3, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y))
    grads = grads_of(topic, X, Y, shown)
    why = {"C": "demb = dhpreact @ W1.T and W1 = 0", "W1": "dW1 = emb.T @ dhpreact and emb = C[X] = 0",
           "b1": "dh = dlogits @ W2.T and W2 = 0, so dhpreact = 0",
           "W2": "dW2 = h.T @ dlogits and h = tanh(0) = 0"}
    for name, reason in why.items():
        g = grads[name].detach()
        expect(bool((g == 0).all()), f"{shown}[{name!r}] has non-zero entries (largest |g| = "
                                     f"{g.abs().max().item():.3g}), expected exactly 0: {reason}")
    expect(grads["b2"].abs().max().item() > 0, f"{shown}['b2'] is all zeros: b2 is the one parameter that "
                                               "learns (its gradient is 1/27 - the targets' frequencies)")


@pytest.mark.parametrize("vocab_size, n_embd, n_hidden, block_size", [(27, 10, 200, 3), (11, 4, 9, 5), (6, 3, 17, 1)])
def test_zero_init_grads_match_autograd_of_the_all_zero_mlp(topic, gen, vocab_size, n_embd, n_hidden, block_size):
    X, Y = draw_batch(gen, 24, block_size, vocab_size)
    sizes = dict(vocab_size=vocab_size, n_embd=n_embd, n_hidden=n_hidden)
    expected = autograd_grads(X, Y, **sizes)
    shown = call("zero_init_grads", ("X", X), ("Y", Y), **sizes)
    grads = grads_of(topic, X, Y, shown, **sizes)
    for name in NAMES:
        expect_close(grads[name], expected[name], call=shown, what=f"gave {name}'s gradient", **TOL,
                     why=f"autograd of the lecture's MLP with every parameter zero; W1 is (block_size * n_embd, "
                         f"n_hidden) = ({block_size * n_embd}, {n_hidden}), block_size = X.shape[1]")


def test_zero_init_grads_defaults_are_the_lecture_sizes(topic, gen):
    X, Y = draw_batch(gen, 32, 3, 27)
    Y[0] = 26  # the last of 27 classes
    shown = call("zero_init_grads", ("X", X), ("Y", Y))
    grads = grads_of(topic, X, Y, shown)
    expected = {"C": (27, 10), "W1": (30, 200), "b1": (200,), "W2": (200, 27), "b2": (27,)}
    for name, shape in expected.items():
        expect(tuple(grads[name].shape) == shape,
               f"{shown}[{name!r}] has shape {tuple(grads[name].shape)}, expected {shape}: the defaults are the "
               "lecture's vocab_size=27, n_embd=10, n_hidden=200 (block_size 3 comes from X)")
    expect_close(grads["b2"], autograd_grads(X, Y, 27, 10, 200)["b2"], call=shown, what="gave b2's gradient", **TOL)


@pytest.mark.parametrize("block_size", [1, 5])
def test_zero_init_grads_take_the_block_size_from_X(topic, gen, block_size):
    X, Y = draw_batch(gen, 16, block_size, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y), n_embd=4, n_hidden=8)
    try:
        grads = grads_of(topic, X, Y, shown, n_embd=4, n_hidden=8)
    except NotImplementedError:  # the untouched stub: reported as such
        raise
    except RuntimeError as e:
        fail(f"{shown} raised RuntimeError({str(e)[:100]!r}): W1 takes the whole context's embeddings, "
             f"block_size * n_embd = {block_size} * 4 inputs, with block_size = X.shape[1]")
    expect(tuple(grads["W1"].shape) == (block_size * 4, 8),
           f"{shown}['W1'] has shape {tuple(grads['W1'].shape)}, expected ({block_size * 4}, 8): "
           "(block_size * n_embd, n_hidden) with block_size = X.shape[1]")


def test_unigram_loss_leaves_Y_unchanged(topic, gen):
    Y = skewed_targets(gen, 100, 27, absent=2)
    shown = call("unigram_loss", ("Y", Y), vocab_size=27)
    expected = entropy(Y, 27)
    with inputs_unchanged(shown, Y=Y):
        out = topic.unigram_loss(Y, vocab_size=27)
    expect_close(expect_float(out, shown), expected, call=shown, **TOL)


def test_unigram_loss_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    Y = skewed_targets(gen, 50, 27, absent=3)
    shown = call("unigram_loss", ("Y", Y))
    expect_global_state_kept(lambda: topic.unigram_loss(Y), shown, lambda out: expect_float(out, shown))


def test_zero_init_grads_work_with_autograd_turned_off(topic, gen):
    X, Y = draw_batch(gen, 32, 3, 27)
    shown = "with torch.no_grad(): " + call("zero_init_grads", ("X", X), ("Y", Y))
    try:
        with torch.no_grad():
            grads = grads_of(topic, X, Y, shown)
    except NotImplementedError:  # the untouched stub: reported as such
        raise
    except RuntimeError as e:
        fail(f"{shown} raised RuntimeError({str(e)[:100]!r}): under torch.no_grad() nothing builds a graph, so "
             "backward() has nothing to go through; wrap the forward and backward pass in "
             "torch.enable_grad()")
    expect_close(grads["b2"], autograd_grads(X, Y, 27, 10, 200)["b2"], call=shown, what="gave b2's gradient", **TOL)
    expect(torch.is_grad_enabled(), "test set-up: grad mode is back on after the no_grad block")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_init_grads_are_in_the_default_dtype(topic, gen, dtype):
    X, Y = draw_batch(gen, 32, 3, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y)) + f" with default dtype {dtype}"
    grads = grads_of(topic, X, Y, shown, dtype=dtype)
    for name in NAMES:
        expect(grads[name].dtype == dtype, f"{shown}[{name!r}] is {grads[name].dtype}, expected {dtype}: make the "
                                           "parameters with torch.zeros(...), which follows the default dtype")
    freq = torch.bincount(Y, minlength=27).double() / 32
    # float32: 1/27 - k/32 is computed to ~6e-8 relative
    expect_close(grads["b2"].double(), 1 / 27 - freq, call=shown, what="gave b2's gradient", rtol=1e-6, atol=1e-7)


def test_zero_init_grads_leave_X_and_Y_unchanged(topic, gen):
    X, Y = draw_batch(gen, 20, 3, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y))
    with inputs_unchanged(shown, X=X, Y=Y):
        grads = grads_of(topic, X, Y, shown)
    expect_close(grads["b2"], autograd_grads(X, Y, 27, 10, 200)["b2"], call=shown, what="gave b2's gradient", **TOL)


def test_zero_init_grads_leave_grad_mode_and_default_dtype_as_found(topic, gen):
    X, Y = draw_batch(gen, 8, 3, 27)
    shown = call("zero_init_grads", ("X", X), ("Y", Y))
    freq = torch.bincount(Y, minlength=27).double() / 8

    def check(out):  # b2's gradient in the default dtype of the moment: float32 rounds 1/27 - k/8 to ~6e-8
        expect(type(out) is dict and "b2" in out, f"{shown} returned {safe_repr(out)}, expected a dict of gradients")
        expect_close(expect_tensor(out["b2"], shown).double(), 1 / 27 - freq, call=shown, what="gave b2's gradient",
                     rtol=1e-6, atol=1e-7)
    expect_global_state_kept(lambda: topic.zero_init_grads(X, Y), shown, check)
