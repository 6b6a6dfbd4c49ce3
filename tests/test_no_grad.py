"""Topic 1, no_grad: split_loss against a cross-entropy written out in the test (log_softmax +
gather + mean, float64), run with a forward that records whether autograd was on. Run: pytest -m no_grad

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept,
                          inputs_unchanged, safe_repr, type_name)

pytestmark = pytest.mark.no_grad


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("no_grad")


class Model:
    """A tiny model like the lecture's: a trainable table looked up by the context characters.
    It records torch.is_grad_enabled() at every call, so a test can see how it was run. It runs
    here, in the test process: the learner's split_loss calls it back across the boundary, with
    the learner process's grad mode of that moment."""

    def __init__(self, gen, vocab, spread=2.0):
        self.table = (spread * torch.randn(vocab, vocab, generator=gen, dtype=torch.float64)).requires_grad_()
        self.grad_enabled = []

    def __call__(self, X):
        self.grad_enabled.append(torch.is_grad_enabled())
        return self.lookup(X)

    def logits(self, X):
        with torch.no_grad():
            return self.lookup(X)

    def lookup(self, X):
        """The lecture's C[X], summed over the context; index_select stays single-threaded (fast on 2 cores)."""
        N, block_size = X.shape
        rows = self.table.index_select(0, X.reshape(-1))  # (N * block_size, vocab)
        return rows.view(N, block_size, -1).sum(1)  # (N, vocab) logits


def draw(gen, n, vocab, block_size=3):
    X = torch.randint(0, vocab, (n, block_size), generator=gen)
    Y = torch.randint(0, vocab, (n,), generator=gen)
    return Model(gen, vocab), X, Y


def cross_entropy(logits, Y) -> float:
    """The lecture's loss, written out: -mean_i log softmax(logits)[i, Y[i]], softmax over dim 1."""
    return -F.log_softmax(logits, dim=1).gather(1, Y[:, None]).mean().item()


def expect_python_float(out, shown):
    expect(isinstance(out, float),
           f"{shown} returned {type_name(out)} {safe_repr(out)}, expected a Python float: call .item() on the "
           "loss, as the lecture prints split losses; a tensor would carry a 0-d result around instead of a number")
    return out


# ---------------------------------------------------------------- tests, in lesson order
@pytest.mark.parametrize("vocab", [27, 5])
def test_split_loss_of_uniform_logits_is_log_vocab(topic, gen, vocab):
    n = 40
    offsets = 3 * torch.randn(n, 1, generator=gen, dtype=torch.float64)  # one constant per row: still uniform

    def uniform(X):
        return offsets.expand(len(X), vocab).clone()  # (N, vocab), every class equally likely

    X = torch.randint(0, vocab, (n, 3), generator=gen)
    Y = torch.randint(0, vocab, (n,), generator=gen)
    shown = call("split_loss", ("forward", uniform), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(uniform, X, Y), shown)
    expect_close(out, math.log(vocab), call=shown, **TOL,
                 why=f"logits that are equal within each row give every one of the {vocab} classes probability "
                     f"1/{vocab}, a loss of -log(1/{vocab}) = {math.log(vocab):.4f}")


def test_split_loss_takes_the_mean_so_a_repeated_split_has_the_same_loss(topic, gen):
    model, X, Y = draw(gen, 30, 9)
    twice_X, twice_Y = torch.cat([X, X]), torch.cat([Y, Y])  # (60, 3), (60,)
    shown = call("split_loss", ("forward", model), ("X", twice_X), ("Y", twice_Y))
    out = expect_python_float(topic.split_loss(model, twice_X, twice_Y), shown)
    expect_close(out, cross_entropy(model.logits(X), Y), call=shown, **TOL,
                 why="the same examples twice must give the same mean loss")


@pytest.mark.parametrize("case", range(4))
def test_split_loss_matches_the_cross_entropy_written_out(topic, gen, case):
    n = int(torch.randint(2, 200, (), generator=gen))
    vocab = int(torch.randint(3, 30, (), generator=gen))
    model, X, Y = draw(gen, n, vocab)
    shown = call("split_loss", ("forward", model), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(model, X, Y), shown)
    logits = model.logits(X)
    expect_close(out, cross_entropy(logits, Y), call=shown, **TOL)


def test_split_loss_runs_forward_with_grad_disabled(topic, gen):
    model, X, Y = draw(gen, 64, 27)
    shown = call("split_loss", ("forward", model), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(model, X, Y), shown)
    expect_close(out, cross_entropy(model.logits(X), Y), call=shown, **TOL)
    expect(len(model.grad_enabled) > 0, f"{shown} never called forward(X)")
    expect(not any(model.grad_enabled),
           f"{shown} ran forward(X) with autograd on (torch.is_grad_enabled() was True inside it): wrap the "
           "forward pass in `with torch.no_grad():` (the lecture decorates split_loss with @torch.no_grad()) so "
           "torch does not build a graph and keep every activation of the whole split for a backward that never "
           "comes; .detach() afterwards is too late, the graph was already built")


def test_split_loss_ignores_a_constant_added_to_each_row_of_logits(topic, gen):
    model, X, Y = draw(gen, 50, 11)
    shift = 10 * torch.randn(50, 1, generator=gen, dtype=torch.float64)

    def shifted(X_):
        return model(X_) + shift  # (N, vocab): softmax over a row is unchanged by adding a constant to it

    shown = call("split_loss", ("forward + per-row shift", shifted), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(shifted, X, Y), shown)
    expect_close(out, cross_entropy(model.logits(X), Y), call=shown, **TOL,
                 why="the softmax of a row does not change when a constant is added to the whole row, so neither "
                     "does the loss")


def test_split_loss_works_for_a_single_example(topic, gen):
    model, X, Y = draw(gen, 1, 7)
    shown = call("split_loss", ("forward", model), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(model, X, Y), shown)
    logits = model.logits(X)
    expect_close(out, cross_entropy(logits, Y), call=shown, **TOL)


def test_split_loss_leaves_X_and_Y_unchanged(topic, gen):
    model, X, Y = draw(gen, 20, 8)
    shown = call("split_loss", ("forward", model), ("X", X), ("Y", Y))
    with inputs_unchanged(shown, X=X, Y=Y):
        out = topic.split_loss(model, X, Y)
    expect_close(expect_python_float(out, shown), cross_entropy(model.logits(X), Y), call=shown, **TOL)


def test_split_loss_accepts_float32_logits(topic, gen):
    model, X, Y = draw(gen, 32, 27)

    def forward32(X_):
        return model(X_).float()  # (N, vocab) float32, as the lecture's model computes

    shown = call("split_loss", ("forward", forward32), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(forward32, X, Y), shown)
    expect_close(out, cross_entropy(model.logits(X).float().double(), Y), call=shown,
                 rtol=1e-5, atol=1e-5)  # float32 log-softmax over 27 classes: ~1e-7 relative per op


def test_split_loss_keeps_float64_logits_in_float64(topic, gen):
    model, X, Y = draw(gen, 40, 27)

    def shifted(X_):
        return model(X_) + 1e4  # the softmax ignores it; float32 (ulp 1e-3 at 1e4) would not

    shown = call("split_loss", ("forward", shifted), ("X", X), ("Y", Y))
    out = expect_python_float(topic.split_loss(shifted, X, Y), shown)
    expect_close(out, cross_entropy(model.logits(X), Y), call=shown, **TOL)


def test_split_loss_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    model, X, Y = draw(gen, 16, 7)
    shown = call("split_loss", ("forward", model), ("X", X), ("Y", Y))
    expect_global_state_kept(lambda: topic.split_loss(model, X, Y), shown,
                             lambda out: expect_python_float(out, shown))
