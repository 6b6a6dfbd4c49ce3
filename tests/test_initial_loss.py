"""Topic 2, initial_loss: the loss of a uniform prediction (against math.log and F.cross_entropy)
and the output-layer rescale that gets an MLP there at init. Run: pytest -m initial_loss

Tests run in lesson order, simplest property first: shape, then mean and std, then the full
comparison with torch or a formula, then gradients, then hygiene (inputs unchanged, dtype, grad mode,
no shortcut). The order of this file is the topic's declared lesson order."""
import math

import pytest
import torch
import torch.nn.functional as F

from kata.testing import (F64_TOL as TOL, call, expect, expect_close, expect_global_state_kept, expect_like,
                          expect_new_tensor, expect_tensor, inputs_unchanged, safe_repr, type_name)

pytestmark = pytest.mark.initial_loss


LECTURE_LOSS_27 = 3.295836866  # -log(1/27), lecture-facts.md


@pytest.fixture(scope="module")
def topic(impl):
    return impl.load("initial_loss")


def expect_python_float(out, shown):
    expect(isinstance(out, float),
           f"{shown} returned {type_name(out)} {safe_repr(out)}, expected a Python float (math.log gives one; "
           "use .item() if you computed a tensor)")
    return out


# ---------------------------------------------------------------- scale_output_layer
def draw_layer(gen, fan_in, vocab):
    W = torch.randn(fan_in, vocab, generator=gen, dtype=torch.float64)
    b = 0.5 + torch.rand(vocab, generator=gen, dtype=torch.float64)  # nonzero everywhere: b*0 vs b must differ
    return W, b


def call_scale(topic, W, b, scale=None):
    """The learner's call, and how it is shown; scale=None uses the default. W and b must come back
    unchanged first: a W *= scale in place would otherwise make every later comparison look right
    or wrong for the wrong reason (the test's expectations come from copies taken before it)."""
    shown = call("scale_output_layer", ("W", W), ("b", b), **({} if scale is None else {"scale": scale}))
    with inputs_unchanged(shown, W=W, b=b):
        out = topic.scale_output_layer(W, b) if scale is None else topic.scale_output_layer(W, b, scale=scale)
    return out, shown


def unpack(out, shown, W, b):
    """A tuple (W', b') of real tensors with W's and b's shapes and dtypes."""
    expect(isinstance(out, tuple) and len(out) == 2,
           f"{shown} returned {type_name(out)} {safe_repr(out)}, expected a tuple (W * scale, b * 0)")
    W2, b2 = out
    return (expect_tensor(W2, shown + "[0]", shape=W.shape, dtype=W.dtype),
            expect_tensor(b2, shown + "[1]", shape=b.shape, dtype=b.dtype))


# ---------------------------------------------------------------- tests, in lesson order
def test_expected_initial_loss_is_the_lecture_value_for_27_characters(topic):
    shown = call("expected_initial_loss", ("", 27))
    out = expect_python_float(topic.expected_initial_loss(27), shown)
    expect_close(out, LECTURE_LOSS_27, call=shown, **TOL,
                 why="27 characters equally likely: -log(1/27) = 3.2958, the lecture's target at init")


def test_expected_initial_loss_is_zero_for_a_single_class(topic):
    shown = call("expected_initial_loss", ("", 1))
    out = expect_python_float(topic.expected_initial_loss(1), shown)
    expect_close(out, 0.0, call=shown, **TOL,
                 why="with one class its probability is 1, and -log(1) = 0")


@pytest.mark.parametrize("case", range(4))
def test_expected_initial_loss_equals_cross_entropy_of_all_zero_logits(topic, gen, case):
    vocab = int(torch.randint(2, 5000, (), generator=gen))
    Y = torch.randint(0, vocab, (16,), generator=gen)
    expected = F.cross_entropy(torch.zeros(16, vocab, dtype=torch.float64), Y).item()
    shown = call("expected_initial_loss", ("", vocab))
    out = expect_python_float(topic.expected_initial_loss(vocab), shown)
    expect_close(out, expected, call=shown, **TOL,
                 why="all-zero logits are a uniform softmax, and F.cross_entropy of those is the expected loss")


def test_expected_initial_loss_grows_by_log_2_when_the_vocabulary_doubles(topic, gen):
    vocab = int(torch.randint(2, 1000, (), generator=gen))
    shown = call("expected_initial_loss", ("", 2 * vocab))
    small = expect_python_float(topic.expected_initial_loss(vocab), shown)
    big = expect_python_float(topic.expected_initial_loss(2 * vocab), shown)
    expect_close(big - small, math.log(2), call=shown, what=f"minus expected_initial_loss({vocab}) is", **TOL,
                 why="-log(1/(2V)) = log(V) + log(2): twice as many equally likely classes cost log 2 more")


@pytest.mark.parametrize("scale", [0.01, 0.1, 0.37])
def test_scale_output_layer_scales_W_and_zeroes_b(topic, gen, scale):
    fan_in = int(torch.randint(2, 300, (), generator=gen))
    vocab = int(torch.randint(2, 40, (), generator=gen))
    W, b = draw_layer(gen, fan_in, vocab)
    out, shown = call_scale(topic, W, b, scale)
    W2, b2 = unpack(out, shown, W, b)
    expect_close(W2, W * scale, call=shown, what="returned W' =", **TOL)
    expect_close(b2, torch.zeros_like(b), call=shown, what="returned b' =", **TOL)


def test_scale_output_layer_default_scale_is_the_lectures_0_01(topic, gen):
    W, b = draw_layer(gen, 200, 27)
    out, shown = call_scale(topic, W, b)
    W2, b2 = unpack(out, shown, W, b)
    expect_close(W2, W * 0.01, call=shown, what="returned W' =", **TOL,
                 why="the default scale is 0.01, the lecture's W2 * 0.01")
    expect_close(b2, torch.zeros_like(b), call=shown, what="returned b' =", **TOL)


def test_scale_output_layer_brings_the_first_batch_loss_near_log_27(topic, gen):
    n, hidden, vocab = 512, 200, 27
    h = torch.tanh(torch.randn(n, hidden, generator=gen, dtype=torch.float64))  # a tanh layer's output, |h| < 1
    Y = torch.randint(0, vocab, (n,), generator=gen)
    W, b = torch.randn(hidden, vocab, generator=gen, dtype=torch.float64), torch.randn(vocab, generator=gen, dtype=torch.float64)
    out, shown = call_scale(topic, W, b)
    W2, b2 = unpack(out, shown, W, b)
    loss = F.cross_entropy(h @ W2 + b2, Y).item()  # (n, hidden) @ (hidden, vocab) -> (n, vocab) logits
    naive = F.cross_entropy(h @ W + b, Y).item()
    target = math.log(vocab)
    # each logit is N(0, s^2) with s = 0.01 * ||h_n|| <= 0.01 * sqrt(200) = 0.14, so loss - log 27 has bias
    # <= s^2 / 2 = 0.01 and std <= s / sqrt(n) = 0.0063 (rows independent): we allow 0.01 + 6 std = 0.048
    expect(abs(loss - target) < 0.048,
           f"{shown}: logits h @ W2' + b2' give a first-batch loss of {loss:.4f}, expected about "
           f"log(27) = {target:.4f} (unscaled it is {naive:.2f}): near-zero logits make the softmax nearly "
           "uniform, which is what an untrained network should predict")
    expect(naive - target > 1, f"test set-up: the unscaled loss {naive:.2f} should be far above log(27)")


def test_expected_initial_loss_leaves_grad_mode_and_default_dtype_as_found(topic):
    shown = call("expected_initial_loss", ("", 27))
    expect_global_state_kept(lambda: topic.expected_initial_loss(27), shown,
                             lambda out: expect_like(out, LECTURE_LOSS_27, shown))


def test_scale_output_layer_keeps_float32_in_float32(topic, gen):
    W, b = (t.float() for t in draw_layer(gen, 30, 27))
    out, shown = call_scale(topic, W, b, 0.2)
    W2, b2 = unpack(out, shown, W, b)  # dtype checked there: float32 in, float32 out
    expect_close(W2, W * 0.2, call=shown, what="returned W' =", rtol=1e-6, atol=1e-7)  # one float32 multiply
    expect_close(b2, torch.zeros_like(b), call=shown, what="returned b' =", rtol=0, atol=0)


def test_scale_output_layer_returns_new_tensors_and_leaves_inputs_unchanged(topic, gen):
    W, b = draw_layer(gen, 20, 27)
    out, shown = call_scale(topic, W, b, 0.05)  # inputs_unchanged inside
    W2, b2 = unpack(out, shown, W, b)
    expect_close(W2, W * 0.05, call=shown, what="returned W' =", **TOL)
    expect_close(b2, torch.zeros_like(b), call=shown, what="returned b' =", **TOL)
    expect_new_tensor(W2, shown + "[0]", W=W, b=b)
    expect_new_tensor(b2, shown + "[1]", W=W, b=b)


def test_scale_output_layer_leaves_grad_mode_and_default_dtype_as_found(topic, gen):
    W, b = draw_layer(gen, 20, 27)
    shown = call("scale_output_layer", ("W", W), ("b", b))

    expect_global_state_kept(lambda: topic.scale_output_layer(W.clone(), b.clone()), shown,
                             lambda out: unpack(out, shown, W, b))  # fresh copies:
