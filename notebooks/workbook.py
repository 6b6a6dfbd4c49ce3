# %% [markdown] id="intro"
# # makemore Part 3: Activations & Gradients, BatchNorm (the workbook)
#
# This notebook follows Andrej Karpathy's lecture from top to bottom. For each of the kata's twelve
# topics it gives the spec (formula, shapes, the value the lecture shows, and a note where the lecture
# and torch differ), a code cell with the stub for you to fill in, a check cell that grades your code
# with the kata's tests, and then the lecture's experiment for that topic, run with **your** functions.
#
# Run the cells in order; the first one installs the kata if it is not here yet (Colab). Until a
# topic passes, its check cell says what is wrong and the experiments that need it print one line
# saying which topic to finish first; nothing stops with an error.
#
# * `check("batchnorm", batchnorm_forward)` grades your code in a separate process and prints the verdict;
#   `check()` prints the scorecard of every topic you have defined;
# * `hint("batchnorm")` prints the next hint level (concept, formula, near-solution);
# * `explain("batchnorm")` answers questions viewers asked about that part of the lecture.
#
# The experiments run the lecture's own code (the kata's `kata/mlp.py` and `kata/deepnet.py`, which
# `python -m kata lecture` runs too) with the lecture's data, seeds and sizes, and with shorter
# training runs than the lecture's, so that each cell takes seconds.

# %% id="setup" kata={"kind": "setup"}
# Find the kata: the clone this notebook sits in (the kernel starts in notebooks/ or at the root),
# else the installed package; if there is neither (Colab), install it, as the README's Colab cell does.
import subprocess
import sys
from pathlib import Path

for folder in (Path.cwd(), *Path.cwd().parents):
    if (folder / "kata" / "topics.py").is_file() and (folder / "grader.py").is_file():
        sys.path.insert(0, str(folder))
        break
try:
    import kata
except ModuleNotFoundError:
    print("installing the kata (about a minute) ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+<this repository's URL>"], check=True)
    import kata

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import kata.data
from grader import check, explain, hint   # grade what you define in a cell; hints; viewer questions
from kata import deepnet, facts, loop, mlp  # the lecture's code, and its printed and measured numbers
from kata.workbook import ready, show, yours  # an experiment runs once the topics it calls are done

# %matplotlib inline
torch.set_num_threads(1)  # tiny tensors: one thread is faster than two that keep synchronising

# %% [markdown] id="data-intro"
# ## The data
#
# The lecture's names, split 80/10/10 after `random.seed(42)`, with contexts of 3 characters.

# %% id="data"
data = kata.data.load()  # names.txt: $MAKEMORE_NAMES, the user cache, or a download (once, checked by sha256)
Xtr, Ytr, Xdev, Ydev = data.Xtr, data.Ytr, data.Xdev, data.Ydev
vocab_size, block_size = data.vocab_size, Xtr.shape[1]
print(f"{len(Xtr):,} / {len(Xdev):,} / {len(data.Xte):,} train / val / test examples, "
      f"vocabulary {vocab_size}, block size {block_size}")

# %% [markdown] id="mlp-intro"
# ## The lecture's MLP
#
# The experiments build the lecture's MLP with the kata's own code, the one `python -m kata lecture`
# runs: `mlp.init_stage` draws the parameters from the lecture's seed in its order, as one stage
# of its loss log initialises them; `mlp.forward` is its forward pass; `loop.lecture_loop` its
# training loop. They call none of your code until an experiment hands them yours (`yours()`).

# %% id="mlp"
show(mlp.init_stage, mlp.forward, loop.lecture_loop)

# %% [markdown] id="no_grad-spec" kata={"kind": "spec", "topic": "no_grad"}
# ## 1. `no_grad`: starter code: evaluating the split loss without building a graph
#
# Evaluate a split's loss without building an autograd graph.
#
# Lecture: starter code, `split_loss('train')` / `split_loss('val')` under `@torch.no_grad()`.
# See `explain("no_grad")` (what no\_grad saves, and why it is not BatchNorm's eval mode).
#
# ### `split_loss(forward, X, Y)`
#
# Mean cross-entropy of `forward(X)` against `Y`, computed under `torch.no_grad()`.
#
# **Formula**
# ```text
# loss = -mean_i log softmax(forward(X))[i, Y[i]]  (F.cross_entropy), the softmax
# taken over the vocabulary (dim 1), the mean over the examples (dim 0).
# ```
#
# **Shape**
# ```text
# X: (N, block_size) int64 -> forward(X): (N, vocab) logits; Y: (N,) int64 -> float
# ```
#
# **Lecture value:** the starter MLP ends at train 2.1245, val 2.1682 after 200,000 steps; a
# uniform prediction (all logits equal) gives log(27) = 3.2958.
#
# **Note:** the lecture decorates its split\_loss with `@torch.no_grad()`; a `with torch.no_grad():`
# block around the forward pass does the same. Evaluation needs no gradients: without it, torch
# keeps every intermediate activation of all 182,625 training examples alive for a backward
# pass that never comes. Return a Python float (`.item()`, as the lecture prints), not a tensor.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("no_grad")` (one level deeper each call); the viewer questions: `explain("no_grad")`.

# %% id="no_grad-code" kata={"kind": "topic", "topic": "no_grad"}
import torch
import torch.nn.functional as F


def split_loss(forward, X, Y):
    """Mean cross-entropy of `forward(X)` against `Y`, computed under `torch.no_grad()`."""
    raise NotImplementedError('no_grad: split_loss is yours to write (hint: hint("no_grad"))')


# %% id="no_grad-check" kata={"kind": "check", "topic": "no_grad"}
check("no_grad", split_loss)

# %% [markdown] id="starter-intro"
# ### Experiment: the starter MLP's loss at init
#
# The lecture's MLP (embedding 10, hidden 200), drawn from its seed with every parameter `randn`,
# evaluated on whole splits with your `split_loss`. At init it is far worse than a uniform guess.

# %% id="starter-run" kata={"kind": "experiment", "id": "starter"}
if ready("no_grad"):
    code = yours()
    stage = mlp.init_stage("original", code, vocab_size, block_size)
    forward = lambda X: mlp.forward(stage.params, code, X)[2]
    print(f"split_loss at init: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f}")
    train, val = facts.LOSS_LOG["original"]
    print(f"the lecture (measured): train {facts.INIT_LOSS_TRAIN_SET} at init; a uniform guess would give "
          f"{-torch.tensor(1 / vocab_size).log().item():.4f}; after {facts.STEPS:,} steps: train {train}, val {val}")

# %% [markdown] id="initial_loss-spec" kata={"kind": "spec", "topic": "initial_loss"}
# ## 2. `initial_loss`: fixing the initial loss
#
# What the loss should be at init, and how to get there.
#
# Lecture: "fixing the initial loss". With 27 characters and no knowledge yet, the network should
# give each one probability 1/27, a loss of -log(1/27) = 3.2958. The naive init (all randn) starts
# at 27.88 instead: the logits are large, so the softmax is confidently wrong.
# See `explain("initial_loss")` for the viewer questions on this topic.
#
# ### `expected_initial_loss(vocab_size)`
#
# The cross-entropy of a uniform prediction over `vocab_size` classes.
#
# **Formula**
# ```text
# -log(1 / vocab_size)  (= log(vocab_size), natural log)
# ```
#
# **Shape**
# ```text
# int -> float
# ```
#
# **Lecture value:** 3.295836866 for vocab\_size 27 (the 26 letters plus '.'); the naive init
# starts at 27.88 on the first batch instead.
#
# **Note:** this is exactly F.cross\_entropy of all-zero logits: every class gets 1/vocab\_size.
#
# ### `scale_output_layer(W, b, scale=0.01)`
#
# Shrink the output layer so the initial logits are near zero: (W \* scale, b \* 0).
#
# **Formula**
# ```text
# W' = W * scale, b' = b * 0
# ```
#
# **Shape**
# ```text
# W: (fan_in, vocab), b: (vocab,) -> (W': (fan_in, vocab), b': (vocab,)), new tensors
# ```
#
# **Lecture value:** with W2 \* 0.01 and b2 \* 0 the first-batch loss is 3.3221 instead of 27.88;
# W2 \* 0.1 gives 4.2326 and W2 \* 0 exactly 3.2958. The lecture keeps 0.01, not 0, so the
# weights still differ from one another (some symmetry breaking).
#
# **Note:** return new tensors; `W *= scale` would rewrite the caller's weights. The bias is
# zeroed, not scaled: a random bias alone would make some characters likelier at init.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("initial_loss")` (one level deeper each call); the viewer questions: `explain("initial_loss")`.

# %% id="initial_loss-code" kata={"kind": "topic", "topic": "initial_loss"}
import math


def expected_initial_loss(vocab_size):
    """The cross-entropy of a uniform prediction over `vocab_size` classes."""
    raise NotImplementedError('initial_loss: expected_initial_loss is yours to write (hint: hint("initial_loss"))')


def scale_output_layer(W, b, scale=0.01):
    """Shrink the output layer so the initial logits are near zero: (W * scale, b * 0)."""
    raise NotImplementedError('initial_loss: scale_output_layer is yours to write (hint: hint("initial_loss"))')


# %% id="initial_loss-check" kata={"kind": "check", "topic": "initial_loss"}
check("initial_loss", expected_initial_loss, scale_output_layer)

# %% [markdown] id="initial_loss-intro"
# ### Experiment: fixing the initial loss
#
# The first minibatch of the lecture's loop, with the naive init and after your `scale_output_layer`,
# and the lecture's "hockey stick": the first few hundred steps of the naive net only squash the logits
# back down, which the fixed init never needs to do.

# %% id="initial_loss-run" kata={"kind": "experiment", "id": "initial_loss"}
if ready("initial_loss"):
    code = yours()
    stage = mlp.init_stage("original", code, vocab_size, block_size)
    first = mlp.first_batch(stage, code, Xtr, Ytr)  # the loop's first minibatch, before any update
    p = stage.params
    logits = mlp.forward(p, code, first.X)[2]
    print(f"expected at init: -log(1/{vocab_size}) = {expected_initial_loss(vocab_size):.4f}")
    print(f"naive init, first batch: {first.loss:.4f} (the lecture: {facts.INIT_LOSS['original']}); "
          f"logits from {logits.min().item():.1f} to {logits.max().item():.1f}: confidently wrong")
    for scale, lecture in (*facts.SCALED_INIT_LOSS.items(), (0.0, expected_initial_loss(vocab_size))):
        W2, b2 = scale_output_layer(p["W2"], p["b2"], scale)
        loss = F.cross_entropy(mlp.forward({**p, "W2": W2, "b2": b2}, code, first.X)[2], first.Y).item()
        print(f"scale_output_layer(W2, b2, {scale}): first batch {loss:.4f} (the lecture: {lecture:.4f})")

    steps = 1_000
    plt.figure(figsize=(12, 4))
    for name, label in (("original", "naive init (W2, b2 randn)"),
                        ("softmax", "scale_output_layer(W2, b2): W2 * 0.01, b2 * 0")):
        stage = mlp.init_stage(name, code, vocab_size, block_size)
        plt.plot(mlp.reference_loop(stage, code, Xtr, Ytr, steps).log10(), label=label)
    plt.xlabel("step"); plt.ylabel("log10 loss"); plt.legend()
    plt.title(f"the first {steps:,} steps: the naive init's hockey stick")
    plt.show()

# %% [markdown] id="saturation-spec" kata={"kind": "spec", "topic": "saturation"}
# ## 3. `saturation`: fixing the saturated tanh
#
# How much of the tanh layer sits in its flat tails, and what that does
# to the gradient.
#
# Lecture: "fixing the saturated tanh". With the naive init the pre-activations have std 5.18 and
# 60.95% of |h| > 0.99 on the first batch; W1 \* 0.2, b1 \* 0.01 brings that to 0.98%.
# See `explain("saturation")` for the viewer questions on this topic.
#
# ### `saturation_fraction(h, threshold=0.99)`
#
# Fraction of tanh outputs whose magnitude is strictly above `threshold`.
#
# **Formula**
# ```text
# mean over all elements of (|h| > threshold), strictly greater
# ```
#
# **Shape**
# ```text
# h: (N, C) -> float in [0, 1] (a fraction, not a percent)
# ```
#
# **Lecture value:** 0.6095 on the first batch with the naive init; 0.0098 after W1 \* 0.2;
# 0.0814 with Kaiming init. For h = tanh(s \* z), z ~ N(0, 1), it is P(|z| > atanh(threshold) / s):
# s = 5.18 gives 0.609.
#
# ### `dead_neurons(h, threshold=0.99)`
#
# Which neurons are saturated for every example: a "dead" neuron never passes a gradient.
#
# **Formula**
# ```text
# dead[c] = all over n of (|h[n, c]| > threshold), strictly greater
# ```
#
# **Shape**
# ```text
# h: (N, C) -> (C,) bool, one flag per neuron (column), reduced over the batch (dim 0)
# ```
#
# **Lecture value:** the all-white columns of the `h.abs() > 0.99` image; none at the naive init.
#
# ### `tanh_backward(h, grad_out)`
#
# The gradient through tanh, given tanh's OUTPUT h (not its input).
#
# **Formula**
# ```text
# grad_in = (1 - h**2) * grad_out, because d tanh(x)/dx = 1 - tanh(x)**2
# ```
#
# **Shape**
# ```text
# h: (N, C), grad_out: (N, C) -> (N, C)
# ```
#
# **Lecture value:** the local gradient is 1 at h = 0 and goes to 0 as |h| -> 1: a saturated unit
# stops the gradient, whatever grad\_out is.
#
# **Note:** h is already tanh(x). Applying tanh again (1 - tanh(h)\*\*2) is the derivative at the
# wrong point, as if h were the pre-activation.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("saturation")` (one level deeper each call); the viewer questions: `explain("saturation")`.

# %% id="saturation-code" kata={"kind": "topic", "topic": "saturation"}
import torch


def saturation_fraction(h, threshold=0.99):
    """Fraction of tanh outputs whose magnitude is strictly above `threshold`."""
    raise NotImplementedError('saturation: saturation_fraction is yours to write (hint: hint("saturation"))')


def dead_neurons(h, threshold=0.99):
    """Which neurons are saturated for every example: a "dead" neuron never passes a gradient."""
    raise NotImplementedError('saturation: dead_neurons is yours to write (hint: hint("saturation"))')


def tanh_backward(h, grad_out):
    """The gradient through tanh, given tanh's OUTPUT h (not its input)."""
    raise NotImplementedError('saturation: tanh_backward is yours to write (hint: hint("saturation"))')


# %% id="saturation-check" kata={"kind": "check", "topic": "saturation"}
check("saturation", saturation_fraction, dead_neurons, tanh_backward)

# %% [markdown] id="saturation-intro"
# ### Experiment: the saturated tanh
#
# The lecture's first minibatch after the softmax fix, with W1 and b1 still `randn`: the
# pre-activations are wide, so most tanh outputs sit in the flat tails where `1 - h**2` is about 0.
# White in the image is |h| > 0.99 (rows: the 32 examples, columns: the 200 neurons); an all-white
# column would be a dead neuron. Then the lecture's fix, `W1 * 0.2, b1 * 0.01`.

# %% id="saturation-run" kata={"kind": "experiment", "id": "saturation"}
if ready("initial_loss", "saturation"):
    code = yours()
    first = mlp.first_batch(mlp.init_stage("softmax", code, vocab_size, block_size), code, Xtr, Ytr)
    hpreact, h = first.hpre, first.h
    low, high = facts.HPREACT_RANGE
    print(f"hpreact: std {hpreact.std().item():.2f}, from {hpreact.min().item():.1f} to {hpreact.max().item():.1f} "
          f"(the lecture: std {facts.HPREACT_STD['original']:.2f}, about {low} to {high})")
    print(f"saturation_fraction(h) = {saturation_fraction(h):.4f}: {saturation_fraction(h):.2%} of |h| > "
          f"{facts.SATURATED} (the lecture: {facts.INIT_SATURATION['original']:.2%})")
    print(f"dead_neurons(h): {int(dead_neurons(h).sum())} of {h.shape[1]} neurons saturated for every example "
          f"(the lecture: {facts.DEAD_NEURONS['original']})")
    local = tanh_backward(h, torch.ones_like(h))  # 1 - h**2: the share of the gradient each unit lets through
    print(f"tanh_backward(h, 1): on average {local.mean().item():.1%} of the gradient gets through")

    plt.figure(figsize=(20, 10))
    plt.imshow(h.abs() > facts.SATURATED, cmap="gray", interpolation="nearest")
    plt.title(f"h.abs() > {facts.SATURATED} on the first batch, naive W1 and b1 (white: saturated)")
    plt.show()

    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
    left.hist(h.view(-1).tolist(), 50); left.set_title("h: piled up at -1 and 1")
    right.hist(hpreact.view(-1).tolist(), 50); right.set_title("hpreact: too wide for tanh")
    plt.show()

    fixed = mlp.first_batch(mlp.init_stage("tanh", code, vocab_size, block_size), code, Xtr, Ytr)
    print(f"W1 * 0.2, b1 * 0.01: hpreact std {fixed.hpre.std().item():.2f}, {saturation_fraction(fixed.h):.2%} "
          f"saturated (the lecture: {facts.HPREACT_STD['tanh']:.2f}, {facts.INIT_SATURATION['tanh']:.2%})")
    fig, (image, left, right) = plt.subplots(1, 3, figsize=(20, 4))
    image.imshow(fixed.h.abs() > facts.SATURATED, cmap="gray", interpolation="nearest", aspect="auto")
    image.set_title(f"h.abs() > {facts.SATURATED} after W1 * 0.2, b1 * 0.01")
    left.hist(fixed.h.view(-1).tolist(), 50); left.set_title("h")
    right.hist(fixed.hpre.view(-1).tolist(), 50); right.set_title("hpreact")
    plt.show()

# %% [markdown] id="kaiming-spec" kata={"kind": "spec", "topic": "kaiming"}
# ## 4. `kaiming`: calculating the init scale: Kaiming init
#
# Choose the init scale from the fan-in and the nonlinearity.
#
# Lecture: "calculating the init scale". x (1000, 10) @ w (10, 200) has std sqrt(10) = 3.16 when w
# is randn; dividing w by sqrt(fan\_in) brings it back to 1. tanh squashes, so it needs a gain of
# 5/3 on top: std = gain / sqrt(fan\_in).
# See `explain("kaiming")` for the viewer questions on this topic.
#
# ### `gain(nonlinearity, param=None)`
#
# The recommended gain for a nonlinearity, as torch.nn.init.calculate\_gain gives it.
#
# **Formula**
# ```text
# linear 1, sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + slope**2))
# with slope = param (default 0.01), selu 3/4. Any other name raises ValueError.
# ```
#
# **Shape**
# ```text
# str -> float
# ```
#
# **Lecture value:** 5/3 for tanh (1.6667), the number the lecture multiplies W1 by.
#
# **Note:** torch returns the int 1 for linear and sigmoid and also accepts the conv names
# ('conv2d', ...); the kata always returns a Python float and raises ValueError for every name
# not listed above (names are case-sensitive: 'Tanh' is not 'tanh'). Do not call
# torch.nn.init: computing it is the exercise.
#
# ### `kaiming_std(fan_in, nonlinearity="tanh")`
#
# The weight std that keeps activations at unit scale: gain / sqrt(fan\_in).
#
# **Formula**
# ```text
# std = gain(nonlinearity) / sqrt(fan_in)
# ```
#
# **Shape**
# ```text
# int -> float
# ```
#
# **Lecture value:** (5/3) / sqrt(30) = 0.3043 for the MLP's W1 (fan\_in = 3 \* 10).
#
# **Note:** fan\_in is the number of inputs each output sums over: the rows of W in x @ W. It
# assumes inputs of roughly unit variance (see kata/notes/kaiming.md, questions 6 and 9).
#
# ### `kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None)`
#
# A (fan\_in, fan\_out) weight drawn from N(0, kaiming\_std(fan\_in) \*\* 2).
#
# **Formula**
# ```text
# W = randn(fan_in, fan_out, generator=generator) * gain / sqrt(fan_in)
# ```
#
# **Shape**
# ```text
# -> (fan_in, fan_out), used as x @ W
# ```
#
# **Lecture value:** with W1 drawn this way the MLP's pre-activations have std 1.52 and 8.14% of
# |h| > 0.99; the loss log reaches train 2.0377, val 2.1070.
#
# **Note:** torch.nn.init.kaiming\_normal\_ takes the weight as (fan\_out, fan\_in) (nn.Linear's layout);
# the lecture's weights are (fan\_in, fan\_out). Draw one randn with the generator (as the lecture
# does) so the same seed gives the lecture's numbers; without a generator, torch's global one.
# A normal draw, not nn.Linear's uniform one (see kata/notes/kaiming.md, question 8).
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("kaiming")` (one level deeper each call); the viewer questions: `explain("kaiming")`.

# %% id="kaiming-code" kata={"kind": "topic", "topic": "kaiming"}
import math

import torch


def gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity, as torch.nn.init.calculate_gain gives it."""
    raise NotImplementedError('kaiming: gain is yours to write (hint: hint("kaiming"))')


def kaiming_std(fan_in, nonlinearity="tanh"):
    """The weight std that keeps activations at unit scale: gain / sqrt(fan_in)."""
    raise NotImplementedError('kaiming: kaiming_std is yours to write (hint: hint("kaiming"))')


def kaiming_normal(fan_in, fan_out, nonlinearity="tanh", generator=None):
    """A (fan_in, fan_out) weight drawn from N(0, kaiming_std(fan_in) ** 2)."""
    raise NotImplementedError('kaiming: kaiming_normal is yours to write (hint: hint("kaiming"))')


# %% id="kaiming-check" kata={"kind": "check", "topic": "kaiming"}
check("kaiming", gain, kaiming_std, kaiming_normal)

# %% [markdown] id="kaiming-intro"
# ### Experiment: calculating the init scale
#
# The lecture's demo: x (1000, 10) of unit Gaussians times a (10, 200) weight. With `randn` weights
# each output sums 10 products, so its std grows to sqrt(10); `w * 5` and `w * 0.2` miss in either
# direction; `w / sqrt(fan_in)` (your `kaiming_std(10, "linear")`) keeps it at 1. tanh squashes, so
# Kaiming init adds a gain of 5/3. (The lecture draws these with torch's global generator; here a
# seeded one, so the figures repeat.)

# %% id="kaiming-run" kata={"kind": "experiment", "id": "kaiming"}
if ready("initial_loss", "saturation", "kaiming"):
    code = yours()
    demo = mlp.fan_in_demo(code, torch.Generator().manual_seed(facts.SEED))
    fig, axes = plt.subplots(1, 4, figsize=(20, 3.5), sharex=True)
    axes[0].hist(demo["x"].view(-1).tolist(), 50, density=True)
    axes[0].set_title(f"x: std {demo['x'].std().item():.2f}")
    for ax, (name, y) in zip(axes[1:], demo["y"].items()):
        ax.hist(y.view(-1).tolist(), 50, density=True)
        ax.set_title(f"x @ ({name}): std {y.std().item():.2f}")
    axes[0].set_xlim(-20, 20)  # one scale for all four (w * 5 reaches past it): the widths compare directly
    plt.show()
    print("the lecture: std of x @ w " + ", ".join(f"{k} {v}" for k, v in facts.KAIMING_DEMO.items()))

    for name in ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"):
        print(f"gain({name!r}) = {gain(name):.4f}   torch.nn.init.calculate_gain: "
              f"{torch.nn.init.calculate_gain(name):.4f}")
    fan_in = facts.N_EMBD * block_size
    print(f"kaiming_std({fan_in}) = {kaiming_std(fan_in):.4f} (the lecture: (5/3) / sqrt({fan_in}) = "
          f"{5 / 3 / fan_in ** 0.5:.4f})")

    stage = mlp.init_stage("kaiming", code, vocab_size, block_size)  # W1 from your kaiming_normal, b1 * 0.01
    first = mlp.first_batch(stage, code, Xtr, Ytr)
    print(f"W1 = kaiming_normal({fan_in}, {facts.N_HIDDEN}): std {stage.params['W1'].std().item():.4f}; first batch "
          f"hpreact std {first.hpre.std().item():.2f}, {saturation_fraction(first.h):.2%} of |h| > {facts.SATURATED} "
          f"(the lecture: {facts.HPREACT_STD['kaiming']:.2f}, {facts.INIT_SATURATION['kaiming']:.2%})")
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
    left.hist(first.h.view(-1).tolist(), 50); left.set_title("h with Kaiming init")
    right.hist(first.hpre.view(-1).tolist(), 50); right.set_title("hpreact with Kaiming init")
    plt.show()

# %% [markdown] id="batchnorm-spec" kata={"kind": "spec", "topic": "batchnorm"}
# ## 5. `batchnorm`: batch normalization (training-mode forward)
#
# The training-mode forward pass of batch normalization.
#
# Lecture: "batch normalization". Normalise each pre-activation over the batch, then let a learned
# gain and bias scale and shift it: hpreact = bngain \* (hpreact - mean) / std + bnbias.
# See `explain("batchnorm")` for the viewer questions on this topic.
#
# ### `batchnorm_forward(x, gamma, beta, eps=1e-5)`
#
# Normalise each feature over the batch (dim 0), then scale by gamma and shift by beta.
#
# **Formula**
# ```text
# y = gamma * (x - mean) / sqrt(var + eps) + beta, with mean and var over dim 0 and
# var the BIASED variance (divide by N): var = ((x - mean) ** 2).mean(0)
# ```
#
# **Shape**
# ```text
# x: (N, C), gamma: (C,), beta: (C,) -> (N, C)
# ```
#
# **Lecture value:** each output feature has mean beta and (biased) std gamma; in the MLP it
# takes the loss log to train 2.0668, val 2.1048.
#
# **Note:** the lecture writes x.std(0), which is UNBIASED (divides by N - 1). The kata follows
# torch.nn.BatchNorm1d and the paper, which normalise with the biased variance; at N = 32 the
# two outputs differ by sqrt(32/31) = 1.016. eps goes inside the sqrt. Must be differentiable
# (autograd flows to x, gamma and beta), and must not call F.batch\_norm or nn.BatchNorm1d.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("batchnorm")` (one level deeper each call); the viewer questions: `explain("batchnorm")`.

# %% id="batchnorm-code" kata={"kind": "topic", "topic": "batchnorm"}
import torch


def batchnorm_forward(x, gamma, beta, eps=1e-5):
    """Normalise each feature over the batch (dim 0), then scale by gamma and shift by beta."""
    raise NotImplementedError('batchnorm: batchnorm_forward is yours to write (hint: hint("batchnorm"))')


# %% id="batchnorm-check" kata={"kind": "check", "topic": "batchnorm"}
check("batchnorm", batchnorm_forward)

# %% [markdown] id="batchnorm-intro"
# ### Experiment: batch normalization on the first batch
#
# Batch norm makes the pre-activations unit Gaussian-ish by construction, whatever the init: here
# the naive W1, whose pre-activations are far too wide, through your `batchnorm_forward` with gain
# ones and bias zeros. (b1 is still in hpreact here; the mean subtraction removes it, which is why the
# lecture drops it, topic 8.)

# %% id="batchnorm-run" kata={"kind": "experiment", "id": "batchnorm"}
if ready("saturation", "batchnorm"):
    code = yours()
    first = mlp.first_batch(mlp.init_stage("original", code, vocab_size, block_size), code, Xtr, Ytr)
    hpreact, n = first.hpre, first.hpre.shape[0]
    hbn = batchnorm_forward(hpreact, torch.ones(hpreact.shape[1]), torch.zeros(hpreact.shape[1]))
    print(f"before: column means up to {hpreact.mean(0).abs().max().item():.2f}, column std "
          f"{hpreact.std(0).mean().item():.2f} on average; tanh saturated {saturation_fraction(first.h):.2%}")
    print(f"after:  column means up to {hbn.mean(0).abs().max().item():.1e}; column std "
          f"{hbn.std(0, unbiased=False).mean().item():.4f} dividing by N, {hbn.std(0).mean().item():.4f} by N - 1 "
          f"(sqrt({n}/{n - 1}) = {(n / (n - 1)) ** 0.5:.4f}); tanh saturated {saturation_fraction(torch.tanh(hbn)):.2%}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(16, 4))
    left.hist(hpreact.view(-1).tolist(), 50); left.set_title("hpreact, naive init")
    right.hist(hbn.view(-1).tolist(), 50); right.set_title("batchnorm_forward(hpreact, ones, zeros)")
    plt.show()

# %% [markdown] id="running_stats-spec" kata={"kind": "spec", "topic": "running_stats"}
# ## 6. `running_stats`: running mean/var by EMA, calibration, inference with running stats
#
# Estimate the mean and variance for inference.
#
# Lecture: at test time there is no batch to normalise over, so BatchNorm keeps running estimates
# (an exponential moving average updated during training), or calibrates them once on the whole
# training set after training. Either gives almost the same loss (val 2.1057 with the EMA).
# See `explain("running_stats")` for the viewer questions on this topic.
#
# ### `ema_update(running, batch_stat, momentum=0.001)`
#
# One step of the exponential moving average: (1 - momentum) \* running + momentum \* batch\_stat.
#
# **Formula**
# ```text
# running' = (1 - m) * running + m * batch_stat
# ```
#
# **Shape**
# ```text
# running: (C,), batch_stat: (C,) -> (C,), a new tensor
# ```
#
# **Lecture value:** the lecture's inline BN uses 0.999 \* running + 0.001 \* batch (m = 0.001, for
# noisy batches of 32); torch.nn.BatchNorm1d defaults to momentum 0.1.
#
# **Note:** torch's momentum is the weight of the NEW value. CS231n and Keras write the same filter
# with momentum 0.9 or 0.99 as the weight of the OLD value; the kata follows torch. It is a
# first-order IIR filter: a constant batch value b is approached as b + (1 - m)\*\*k \* (r0 - b).
#
# ### `batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5)`
#
# Inference-mode batch norm: normalise with the running statistics, not the batch's.
#
# **Formula**
# ```text
# y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta
# ```
#
# **Shape**
# ```text
# x: (N, C), running_mean, running_var, gamma, beta: (C,) -> (N, C)
# ```
#
# **Lecture value:** with the EMA estimates the MLP's val loss is 2.1057. Works for N = 1: each
# row's output depends on that row alone.
#
# **Note:** the lecture's inline BN keeps a running std and has no eps; the kata follows its class
# version and torch (F.batch\_norm with training=False): a running VARIANCE, eps inside the sqrt.
# Must not call F.batch\_norm or nn.BatchNorm1d.
#
# ### `calibrate(preacts)`
#
# The mean and variance of every feature over the whole training set, after training.
#
# **Formula**
# ```text
# mean = preacts.mean(0), var = preacts.var(0) (unbiased, divide by N - 1)
# ```
#
# **Shape**
# ```text
# preacts: (N, C) -> (mean: (C,), var: (C,)), with no autograd graph
# ```
#
# **Lecture value:** these give almost the same val loss as the EMA estimates (2.1057).
#
# **Note:** unbiased, the same convention as torch's running\_var (the normalisation itself uses
# the biased one).
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("running_stats")` (one level deeper each call); the viewer questions: `explain("running_stats")`.

# %% id="running_stats-code" kata={"kind": "topic", "topic": "running_stats"}
import torch


def ema_update(running, batch_stat, momentum=0.001):
    """One step of the exponential moving average: (1 - momentum) * running + momentum * batch_stat."""
    raise NotImplementedError('running_stats: ema_update is yours to write (hint: hint("running_stats"))')


def batchnorm_eval(x, running_mean, running_var, gamma, beta, eps=1e-5):
    """Inference-mode batch norm: normalise with the running statistics, not the batch's."""
    raise NotImplementedError('running_stats: batchnorm_eval is yours to write (hint: hint("running_stats"))')


def calibrate(preacts):
    """The mean and variance of every feature over the whole training set, after training."""
    raise NotImplementedError('running_stats: calibrate is yours to write (hint: hint("running_stats"))')


# %% id="running_stats-check" kata={"kind": "check", "topic": "running_stats"}
check("running_stats", ema_update, batchnorm_eval, calibrate)

# %% [markdown] id="bn_training-intro"
# ### Experiment: training with batch norm, and inference with running statistics
#
# The lecture's last MLP stage: Kaiming W1, no b1, your `batchnorm_forward` in every step, and the
# running mean and variance tracked with your `ema_update` (the lecture's
# `0.999 * running + 0.001 * batch`). After training, your `calibrate` measures them on the whole
# training set instead, and `batchnorm_eval` evaluates with either: the two give almost the same loss.
# This run is a few thousand steps, not the lecture's full length (lr 0.1, then 0.01 for the second
# half, the lecture's schedule compressed), so its losses are higher than the lecture's.

# %% id="bn_training-run" kata={"kind": "experiment", "id": "bn_training"}
if ready("no_grad", "initial_loss", "kaiming", "batchnorm", "running_stats"):
    code = yours()
    steps = 5_000
    stage = mlp.init_stage("batchnorm", code, vocab_size, block_size)  # no b1: batch norm would cancel it
    print(f"{sum(p.nelement() for p in stage.params.values()):,} parameters "
          f"(the lecture: {facts.PARAMETERS['mlp_batchnorm']:,})")
    losses = mlp.reference_loop(stage, code, Xtr, Ytr, steps)  # your ema_update keeps the running statistics

    plt.figure(figsize=(12, 4))
    plt.plot(losses.log10().view(-1, 100).mean(1))  # the mean of every 100 steps, as the lecture smooths it
    plt.xlabel("step / 100"); plt.ylabel("log10 loss"); plt.title(f"the MLP with batch norm, {steps:,} steps")
    plt.show()

    result = mlp.evaluate(stage, code, data)  # with the running statistics, and with your calibrate
    print(f"{'running (EMA)':>14}: train {result['train']:.4f}, val {result['val']:.4f}")
    print(f"{'calibrated':>14}: train {result['calibrated']['train']:.4f}, val {result['calibrated']['val']:.4f}")
    with torch.no_grad():
        bnmean, _ = calibrate(mlp.forward(stage.params, code, Xtr)[0])  # over every training example
    print(f"EMA vs calibrated mean: at most {(stage.running[0] - bnmean).abs().max().item():.3f} apart")
    train, val = facts.LOSS_LOG["batchnorm"]
    print(f"after {steps:,} steps; the lecture after {facts.STEPS:,}: train {train}, val {val} "
          f"(val {facts.BN_EMA_VAL} with the EMA)")

# %% [markdown] id="modules-spec" kata={"kind": "spec", "topic": "modules"}
# ## 7. `modules`: PyTorch-ifying the code: Linear, BatchNorm1d, Tanh
#
# The lecture's Linear, BatchNorm1d and Tanh, "PyTorch-ified".
#
# Lecture: each layer is a small class with \_\_call\_\_ and parameters(), shaped like torch.nn's, so a
# deep net is a list of layers. Every module stores its last output in `.out` so the diagnostics
# (topic 9) can look at the activations and, with out.retain\_grad(), their gradients.
# See `explain("modules")` for the viewer questions on this topic.
#
# ### class `Linear(fan_in, fan_out, bias=True, generator=None)`
#
# y = x @ weight + bias.
#
# **Formula**
# ```text
# weight ~ randn(fan_in, fan_out) / sqrt(fan_in); bias zeros(fan_out), or None
# ```
#
# **Shape**
# ```text
# x: (N, fan_in) -> (N, fan_out)
# ```
#
# **Lecture value:** Linear(30, 100) draws a weight with std 1/sqrt(30) = 0.183; parameters() gives
# [weight] or [weight, bias], and the deep net built from these classes has 47,024 parameters
# with BatchNorm1d (every Linear bias=False) and 46,497 without.
#
# **Note:** torch.nn.Linear stores weight as (fan\_out, fan\_in) and draws it from
# uniform(-1/sqrt(fan\_in), 1/sqrt(fan\_in)); the lecture uses (fan\_in, fan\_out) and a normal
# with std 1/sqrt(fan\_in) (gain 1; the deep net multiplies by a gain afterwards).
#
# ### class `BatchNorm1d(dim, eps=1e-5, momentum=0.1)`
#
# Batch normalization with running statistics, as torch.nn.BatchNorm1d.
#
# **Formula (training)**
# ```text
# y = gamma * (x - mean) / sqrt(var + eps) + beta with the batch's mean and
# BIASED var; then, without building a graph,
#     running_mean = (1 - momentum) * running_mean + momentum * mean
#     running_var  = (1 - momentum) * running_var  + momentum * unbiased var
# Formula (eval, training = False): the same with running_mean and running_var.
# ```
#
# **Shape**
# ```text
# x: (N, dim) -> (N, dim); gamma, beta, running_mean, running_var: (dim,)
# ```
#
# **Lecture value:** gamma ones, beta zeros, running\_mean zeros, running\_var ones; the deep net
# uses momentum 0.1 and its last BatchNorm1d's gamma \* 0.1.
#
# **Note:** the lecture's class uses x.var(0) (unbiased) for both; torch normalises with the biased
# var and tracks the unbiased one, and the kata follows torch. momentum is the weight of the
# new batch (torch's convention; CS231n's 0.9 is the weight of the old value). The lecture
# takes the mean with keepdim=True, which makes running\_mean (1, dim) after the first update;
# the tests accept that, but (dim,) is the contract. Write the arithmetic yourself: no
# F.batch\_norm or torch.nn.BatchNorm1d inside.
#
# ### class `Tanh()`
#
# y = tanh(x), elementwise, stored in .out; no parameters.
#
# **Formula**
# ```text
# out = torch.tanh(x); parameters() = []
# ```
#
# **Shape**
# ```text
# x: (N, C) -> (N, C)
# ```
#
# **Lecture value:** after 1,001 steps the deep net's Tanh outputs have std about 0.63-0.65 and
# 1.7-2.8% of |out| > 0.97 (layer 2: std 0.63, 2.78%).
#
# **Note:** the lecture's own class; torch.nn.Tanh is the same function (and has no .out).
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("modules")` (one level deeper each call); the viewer questions: `explain("modules")`.

# %% id="modules-code" kata={"kind": "topic", "topic": "modules"}
import torch


class Linear:
    """y = x @ weight + bias."""

    def __init__(self, fan_in, fan_out, bias=True, generator=None):
        raise NotImplementedError('modules: Linear.__init__ is yours to write (hint: hint("modules"))')

    def __call__(self, x):
        raise NotImplementedError('modules: Linear.__call__ is yours to write (hint: hint("modules"))')

    def parameters(self):
        raise NotImplementedError('modules: Linear.parameters is yours to write (hint: hint("modules"))')


class BatchNorm1d:
    """Batch normalization with running statistics, as torch.nn.BatchNorm1d."""

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        raise NotImplementedError('modules: BatchNorm1d.__init__ is yours to write (hint: hint("modules"))')

    def __call__(self, x):
        raise NotImplementedError('modules: BatchNorm1d.__call__ is yours to write (hint: hint("modules"))')

    def parameters(self):
        raise NotImplementedError('modules: BatchNorm1d.parameters is yours to write (hint: hint("modules"))')


class Tanh:
    """y = tanh(x), elementwise, stored in .out; no parameters."""

    def __call__(self, x):
        raise NotImplementedError('modules: Tanh.__call__ is yours to write (hint: hint("modules"))')

    def parameters(self):
        raise NotImplementedError('modules: Tanh.parameters is yours to write (hint: hint("modules"))')


# %% id="modules-check" kata={"kind": "check", "topic": "modules"}
check("modules", Linear, BatchNorm1d, Tanh)

# %% [markdown] id="deep-net-intro"
# ### The lecture's deep net
#
# `deepnet.build` builds the lecture's "PyTorch-ified" net from your `Linear`, `BatchNorm1d` and
# `Tanh`, in the order its notebook draws them; `python -m kata lecture --part deep-net` builds
# the same one.

# %% id="deep-net-code"
show(deepnet.build)

# %% [markdown] id="deep_net-intro"
# ### Experiment: the deep net, built from your modules
#
# Five hidden layers of 100, each Linear (no bias) + BatchNorm1d + Tanh, then Linear + BatchNorm1d
# for the 27 logits, the last gain times 0.1. Its step-0 loss is close to the ideal -log(1/27). (The
# lecture's class divides the batch variance by N - 1 where your BatchNorm1d divides by N, so
# yours differs from its printed loss a little.)

# %% id="deep_net-run" kata={"kind": "experiment", "id": "deep_net"}
if ready("modules"):
    code = yours()
    net = deepnet.build(code, vocab_size, block_size)
    print(f"{sum(p.nelement() for p in net.parameters()):,} parameters "
          f"(the lecture: {facts.PARAMETERS['deep_batchnorm']:,})")
    Xb, Yb = deepnet.first_batch(net, Xtr, Ytr)
    print(f"step-0 loss {F.cross_entropy(net(Xb), Yb).item():.4f} (the lecture: {facts.DEEP_NET['step0_loss']})")
    for i, layer in enumerate(net.layers):
        print(f"  layer {i:2d} {type(layer).__name__:<12} out {tuple(layer.out.shape)}")
    plain = deepnet.build(code, vocab_size, block_size, batchnorm=False)
    print(f"without batch norm (Linear with bias, + Tanh): {sum(p.nelement() for p in plain.parameters()):,} "
          f"parameters (the lecture: {facts.PARAMETERS['deep']:,})")


# %% [markdown] id="bias_redundancy-spec" kata={"kind": "spec", "topic": "bias_redundancy"}
# ## 8. `bias_redundancy`: biases before BatchNorm are redundant
#
# A bias right before a BatchNorm does nothing.
#
# Lecture: BatchNorm subtracts the batch mean, and a bias adds the same constant to every row of a
# feature, so the subtraction removes it: its gradient is exactly zero and it never learns. The
# lecture builds every Linear that feeds a BatchNorm1d with bias=False; BatchNorm's beta plays the
# bias's part.
# See `explain("bias_redundancy")` for the viewer questions on this topic.
#
# ### `redundant_biases(layers)`
#
# Indices of the Linear layers that have a bias and are immediately followed by a BatchNorm1d.
#
# **Formula**
# ```text
# [i for i in range(len(layers) - 1) if layers[i] is a Linear with a bias and
#  layers[i + 1] is a BatchNorm1d]
# ```
#
# **Shape**
# ```text
# list of modules -> list of int, in increasing order
# ```
#
# **Lecture value:** the deep net built with the default bias=True has 6 such layers, at indices
# 0, 3, 6, 9, 12, 15; the lecture removes them all (bias=False).
#
# **Note:** only the very next layer counts. A bias before a Tanh, or one whose BatchNorm1d comes
# later behind another layer, changes the output and is not redundant.
#
# ### `drop_redundant_biases(layers)`
#
# Remove those biases in place (bias = None) and return how many scalars were removed.
#
# **Formula**
# ```text
# removed = sum of layers[i].bias.numel() for i in redundant_biases(layers)
# ```
#
# **Shape**
# ```text
# list of modules -> int
# ```
#
# **Lecture value:** the deep net with biases has 47,551 parameters; dropping the six redundant
# biases (5 \* 100 + 27 = 527 scalars) gives the lecture's 47,024.
#
# **Note:** set the bias to None (as Linear(bias=False) has it), not to zeros: a zero tensor is
# still a parameter. A second call finds nothing and returns 0.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("bias_redundancy")` (one level deeper each call); the viewer questions: `explain("bias_redundancy")`.

# %% id="bias_redundancy-code" kata={"kind": "topic", "topic": "bias_redundancy"}
def redundant_biases(layers):
    """Indices of the Linear layers that have a bias and are immediately followed by a BatchNorm1d."""
    raise NotImplementedError('bias_redundancy: redundant_biases is yours to write (hint: hint("bias_redundancy"))')


def drop_redundant_biases(layers):
    """Remove those biases in place (bias = None) and return how many scalars were removed."""
    raise NotImplementedError('bias_redundancy: drop_redundant_biases is yours to write (hint: hint("bias_redundancy"))')


# %% id="bias_redundancy-check" kata={"kind": "check", "topic": "bias_redundancy"}
check("bias_redundancy", redundant_biases, drop_redundant_biases)

# %% [markdown] id="bias-intro"
# ### Experiment: the biases before each BatchNorm1d do nothing
#
# The same net with `bias=True`: batch norm subtracts each feature's batch mean, and with it the bias,
# so the bias's gradient is zero (up to float rounding). Your `drop_redundant_biases` removes them.

# %% id="bias-run" kata={"kind": "experiment", "id": "bias"}
if ready("modules", "bias_redundancy"):
    code = yours()
    net = deepnet.build(code, vocab_size, block_size, bias=True)
    layers = net.layers
    n = sum(p.nelement() for p in net.parameters())
    print(f"with every bias: {n:,} parameters")
    print(f"redundant_biases(layers) = {redundant_biases(layers)} (every Linear: each is followed by a BatchNorm1d)")
    Xb, Yb = deepnet.first_batch(net, Xtr, Ytr)
    F.cross_entropy(net(Xb), Yb).backward()
    for i in redundant_biases(layers):
        print(f"  layer {i:2d}: bias grad at most {layers[i].bias.grad.abs().max().item():.1e}, "
              f"weight grad std {layers[i].weight.grad.std().item():.1e}")
    removed = drop_redundant_biases(layers)
    print(f"drop_redundant_biases(layers) removed {removed} scalars: {n - removed:,} parameters "
          f"(the lecture: {facts.PARAMETERS['deep_batchnorm']:,})")


# %% [markdown] id="diagnostics-spec" kata={"kind": "spec", "topic": "diagnostics"}
# ## 9. `diagnostics`: viz #1-#3: activation, gradient and weight statistics
#
# The statistics behind the lecture's visualisations #1 to #3.
#
# Lecture: after training the deep net, histograms of each tanh layer's outputs (viz #1), of the
# gradients at those outputs (viz #2), and of the weights' gradients (viz #3), each summarised by a
# mean, a std and, for activations, the fraction saturated.
# See `explain("diagnostics")` for the viewer questions on this topic (which parameters the
# `p.ndim == 2` filter leaves out; why the last layer's gradients are larger).
#
# ### `activation_stats(t, threshold=0.97)`
#
# Mean, std and saturated fraction of a layer's output, as the lecture prints them.
#
# **Formula**
# ```text
# mean = t.mean(), std = t.std() (unbiased, over ALL elements),
# saturated = mean of (|t| > threshold) (strict >), a fraction in [0, 1]
# ```
#
# **Shape**
# ```text
# t: any shape (the lecture's (N, C) tanh output) -> {"mean": float, "std": float,
# "saturated": float}, each a Python float
# ```
#
# **Lecture value:** tanh layer 2 of the deep net after 1,001 steps: mean -0.00, std 0.63,
# saturated 2.78% (0.0278 here).
#
# **Note:** the lecture prints saturation in percent; the kata returns a fraction. Its threshold
# here is 0.97, as in viz #1, not the 0.99 of the saturation topic. t.std() is unbiased
# (divides by n - 1), torch's default and the lecture's. No autograd graph: plain floats.
#
# ### `grad_to_data_ratio(param, grad)`
#
# How big the gradient is compared with the values it will update.
#
# **Formula**
# ```text
# grad.std() / param.std()
# ```
#
# **Shape**
# ```text
# param and grad of the same shape, e.g. (fan_in, fan_out) -> float
# ```
#
# **Lecture value:** (30, 100) weight 4.88e-2; the last layer (100, 27) 1.16e-1, about twice
# the others (ten times and more without BatchNorm, where its weights were scaled by 0.1).
#
# **Note:** std, not mean or norm: the mean of a gradient is near 0 (signs cancel), and a shift
# of the data must not change how big the step is relative to the spread of the values.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("diagnostics")` (one level deeper each call); the viewer questions: `explain("diagnostics")`.

# %% id="diagnostics-code" kata={"kind": "topic", "topic": "diagnostics"}
def activation_stats(t, threshold=0.97):
    """Mean, std and saturated fraction of a layer's output, as the lecture prints them."""
    raise NotImplementedError('diagnostics: activation_stats is yours to write (hint: hint("diagnostics"))')


def grad_to_data_ratio(param, grad):
    """How big the gradient is compared with the values it will update."""
    raise NotImplementedError('diagnostics: grad_to_data_ratio is yours to write (hint: hint("diagnostics"))')


# %% id="diagnostics-check" kata={"kind": "check", "topic": "diagnostics"}
check("diagnostics", activation_stats, grad_to_data_ratio)

# %% [markdown] id="diagnostics-intro"
# ### Experiment: viz #1 to #3, the activations and gradients of the deep net
#
# First, the lecture's look at the net *without* batch norm at init: with gain 1 the tanh outputs
# shrink layer by layer, with 3 they saturate, 5/3 keeps them steady. Then the net with batch norm
# trained for the lecture notebook's 1,001 steps: each tanh layer's outputs (viz #1, |t| > 0.97
# counts as saturated), the gradients at those outputs (viz #2), and the weights' gradients with your
# `grad_to_data_ratio` (viz #3), beside the numbers the lecture prints.

# %% id="diagnostics-run" kata={"kind": "experiment", "id": "diagnostics"}
if ready("no_grad", "modules", "diagnostics"):
    code = yours()
    fig, axes = plt.subplots(1, 3, figsize=(20, 4), sharey=True)
    for ax, weight_gain in zip(axes, (1.0, 5 / 3, 3.0)):
        net = deepnet.build(code, vocab_size, block_size, batchnorm=False, gain=weight_gain)
        with torch.no_grad():
            net(deepnet.first_batch(net, Xtr, Ytr)[0])
        for i in net.tanh_layers():
            s = activation_stats(net.layers[i].out)
            hy, hx = torch.histogram(net.layers[i].out, density=True)
            ax.plot(hx[:-1], hy, label=f"layer {i}: std {s['std']:.2f}, saturated {s['saturated']:.1%}")
        ax.legend(fontsize=8); ax.set_title(f"no batch norm, gain {weight_gain:.3g}, at init")
    plt.show()

    net = deepnet.build(code, vocab_size, block_size)
    deepnet.train(net, Xtr, Ytr, facts.DEEP_STEPS)

    plt.figure(figsize=(20, 4))
    for k, i in enumerate(net.tanh_layers()):
        t = net.layers[i].out.detach()
        s = activation_stats(t)
        _, mean, std, saturated, _ = facts.DEEP_NET["tanh"][k]
        print(f"layer {i:2d} (Tanh): mean {s['mean']:+.2f}, std {s['std']:.2f}, saturated {s['saturated']:.2%}"
              f"   the lecture: {mean:+.2f}, {std:.2f}, {saturated:.2%}")
        hy, hx = torch.histogram(t, density=True)
        plt.plot(hx[:-1], hy, label=f"layer {i} (Tanh)")
    plt.legend(); plt.title(f"viz #1: activation distribution after {facts.DEEP_STEPS:,} steps"); plt.show()

    plt.figure(figsize=(20, 4))
    for k, i in enumerate(net.tanh_layers()):
        t = net.layers[i].out.grad
        print(f"layer {i:2d} (Tanh): grad mean {t.mean().item():+.2e}, std {t.std().item():.2e}"
              f"   the lecture: std {facts.DEEP_NET['tanh'][k][4]:.2e}")
        hy, hx = torch.histogram(t, density=True)
        plt.plot(hx[:-1], hy, label=f"layer {i} (Tanh)")
    plt.legend(); plt.title("viz #2: gradient distribution at the tanh outputs"); plt.show()

    plt.figure(figsize=(20, 4))
    weights = [p for p in net.parameters() if p.ndim == 2]
    for (shape, grad_std, ratio), p in zip(facts.DEEP_NET["weights"], weights):
        print(f"weight {str(tuple(p.shape)):>10}: grad std {p.grad.std().item():.2e}, grad:data "
              f"{grad_to_data_ratio(p.detach(), p.grad):.2e}   the lecture: {grad_std:.2e}, {ratio:.2e}")
        hy, hx = torch.histogram(p.grad, density=True)
        plt.plot(hx[:-1], hy, label=f"{tuple(p.shape)}")
    plt.legend(); plt.title("viz #3: weight gradient distribution"); plt.show()

    deepnet.set_training(net, False)  # evaluate with the running statistics
    forward = mlp.blockwise(net)      # a block of rows at a time: the same logits, less memory
    print(f"after {facts.DEEP_STEPS:,} steps: train {split_loss(forward, Xtr, Ytr):.4f}, "
          f"val {split_loss(forward, Xdev, Ydev):.4f} (the lecture: {facts.DEEP_NET['train']}, {facts.DEEP_NET['val']})")


# %% [markdown] id="update_ratio-spec" kata={"kind": "spec", "topic": "update_ratio"}
# ## 10. `update_ratio`: viz #4: update:data ratio, about 1e-3
#
# Viz #4, how big each step's update is compared with the data.
#
# Lecture: ((lr \* p.grad).std() / p.data.std()).log10(), logged every step for each weight, plotted
# against a guide line at -3: updates about 1/1000 of the values are a good learning rate.
# See `explain("update_ratio")` for the viewer questions on this topic (why std and log10;
# before or after the update; the paper on deep linear networks).
#
# ### `update_to_data_ratio(param, grad, lr)`
#
# log10 of the update's std over the parameter's std.
#
# **Formula**
# ```text
# log10( (lr * grad).std() / param.std() )   (base 10: -3 means 1/1000)
# ```
#
# **Shape**
# ```text
# param and grad of the same shape, lr a float -> float
# ```
#
# **Lecture value:** about -3 for a well-set learning rate; without BN at gain 5/3 and lr 0.1 it
# sits near -2.3 to -2.5 (last layer -1.5), at lr 0.001 near -5. Ten times the lr adds
# exactly 1.
#
# **Note:** use the `grad` argument, not param.grad. The lecture logs it right after the update
# (p.data already changed by about 1/1000); the difference is far below what the plot shows.
#
# ### `update_ratios(params, lr)`
#
# update\_to\_data\_ratio(p, p.grad, lr) for each 2-D parameter (the weights), in order.
#
# **Formula**
# ```text
# [update_to_data_ratio(p, p.grad, lr) for p in params if p.ndim == 2]
# ```
#
# **Shape**
# ```text
# list of tensors with .grad set -> list of float, one per 2-D tensor, in order
# ```
#
# **Lecture value:** one row per step of the deep net's training, one value per weight: the
# embedding C (27, 10) and the Linear weights; the biases and BatchNorm gains and biases
# (1-D) are left out. Exactly 2-D: a 3-D tensor is not a weight matrix either.
#
# **Note:** reads p.grad and changes neither p nor p.grad (the step itself is the caller's).
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("update_ratio")` (one level deeper each call); the viewer questions: `explain("update_ratio")`.

# %% id="update_ratio-code" kata={"kind": "topic", "topic": "update_ratio"}
def update_to_data_ratio(param, grad, lr):
    """log10 of the update's std over the parameter's std."""
    raise NotImplementedError('update_ratio: update_to_data_ratio is yours to write (hint: hint("update_ratio"))')


def update_ratios(params, lr):
    """update_to_data_ratio(p, p.grad, lr) for each 2-D parameter (the weights), in order."""
    raise NotImplementedError('update_ratio: update_ratios is yours to write (hint: hint("update_ratio"))')


# %% id="update_ratio-check" kata={"kind": "check", "topic": "update_ratio"}
check("update_ratio", update_to_data_ratio, update_ratios)

# %% [markdown] id="update_ratio-intro"
# ### Experiment: viz #4, the update:data ratio
#
# The same training run again, now logging your `update_ratios` after every update: log10 of how
# big each step's change is next to the weight's own spread, one line per weight. The lecture's
# guide is about 1/1000; far below, the net learns too slowly; far above, too fast.

# %% id="update_ratio-run" kata={"kind": "experiment", "id": "update_ratio"}
if ready("modules", "update_ratio"):
    code = yours()
    net = deepnet.build(code, vocab_size, block_size)
    ud = torch.tensor(deepnet.train(net, Xtr, Ytr, facts.DEEP_STEPS, ratios=update_ratios).update_ratios)
    plt.figure(figsize=(20, 4))  # ud: (steps, one column per 2-D parameter)
    named = [(i, p) for i, p in enumerate(net.parameters()) if p.ndim == 2]
    for k, (i, p) in enumerate(named):
        plt.plot(ud[:, k], label=f"param {i} {tuple(p.shape)}")
    guide = facts.UPDATE_RATIO_GUIDE
    plt.plot([0, len(ud)], [guide, guide], "k", label=f"{guide}: updates about 1/{10 ** -guide:,} of the data")
    plt.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0)); plt.title("viz #4: update:data ratio (log10) over training")
    plt.show()
    print("mean of the last 100 steps: " + ", ".join(f"{tuple(p.shape)} {v:+.2f}"
                                                     for (_, p), v in zip(named, ud[-100:].mean(0).tolist())))

# %% [markdown] id="zero_init-spec" kata={"kind": "spec", "topic": "zero_init"}
# ## 11. `zero_init`: exercise E01: every weight and bias starts at zero; what still trains, and why
#
# The lecture's exercise E01. Start every weight and bias at zero; what still
# trains, and why?
#
# With C, W1, b1, W2 and b2 all zero, h = tanh(0) = 0, so W2's gradient h.T @ dlogits is zero, and
# W2 = 0 sends no gradient back into h, so nothing before it moves either. Only b2 learns: the net
# learns the best constant prediction, the unigram distribution of the next character, and its
# loss falls to that distribution's entropy and no further.
# See `explain("zero_init")` (why only b2 moves; how the lecture's `* 0.01` keeps symmetry
# breaking; what a BatchNorm layer changes).
#
# ### `unigram_loss(Y, vocab_size=27)`
#
# The loss of the best constant prediction: the entropy of the targets' distribution, in nats.
#
# **Formula**
# ```text
# p_k = count_k / N for k in 0..vocab_size-1;  loss = -sum_k p_k * log(p_k),
# classes that never occur left out (0 * log 0 = 0)
# ```
#
# **Shape**
# ```text
# Y: (N,) integer class indices in 0..vocab_size-1 -> float
# ```
#
# **Lecture value:** 2.8226 on the lecture's training split (182,625 targets; val: 2.8204). It is
# the floor an all-zero net trains down to; the trained MLP reaches about 2.10.
#
# **Note:** this equals F.cross\_entropy(logits, Y) for the constant logits log(p) on every row, the
# logits b2 learns. It is log(vocab\_size) only when every class is equally frequent.
#
# ### `zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200)`
#
# Every parameter's gradient after one forward and backward pass of the all-zero MLP.
#
# **Formula**
# ```text
# C, W1, b1, W2, b2 = zeros; emb = C[X]; h = tanh(emb.view(N, -1) @ W1 + b1);
# loss = F.cross_entropy(h @ W2 + b2, Y); loss.backward()
# -> only b2's gradient is non-zero: softmax(0) - onehot(Y) averaged over the batch,
# 1 / vocab_size - count_k / N for class k
# ```
#
# **Shape**
# ```text
# X: (N, block_size) integer contexts, Y: (N,) -> {"C": (vocab_size, n_embd),
# "W1": (block_size * n_embd, n_hidden), "b1": (n_hidden,), "W2": (n_hidden, vocab_size),
# "b2": (vocab_size,)}, each a tensor in the default dtype
# ```
#
# **Lecture value:** with the lecture's sizes (vocab 27, n\_embd 10, n\_hidden 200, block 3) on a
# batch of 32: dW2 = h.T @ dlogits = 0 because h = tanh(0) = 0, dh = dlogits @ W2.T = 0 because
# W2 = 0, and so dW1, db1 and dC are 0 too. 30,000 steps of training move b2 only.
#
# **Note:** the lecture's init uses W2 \* 0.01 and b2 \* 0, not W2 \* 0: a small non-zero W2 sends
# a gradient back into h, and random W1 and C give every hidden unit a different one (symmetry
# breaking). Compute the gradients even when the caller has turned autograd off.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("zero_init")` (one level deeper each call); the viewer questions: `explain("zero_init")`.

# %% id="zero_init-code" kata={"kind": "topic", "topic": "zero_init"}
import torch
import torch.nn.functional as F


def unigram_loss(Y, vocab_size=27):
    """The loss of the best constant prediction: the entropy of the targets' distribution, in nats."""
    raise NotImplementedError('zero_init: unigram_loss is yours to write (hint: hint("zero_init"))')


def zero_init_grads(X, Y, vocab_size=27, n_embd=10, n_hidden=200):
    """Every parameter's gradient after one forward and backward pass of the all-zero MLP."""
    raise NotImplementedError('zero_init: zero_init_grads is yours to write (hint: hint("zero_init"))')


# %% id="zero_init-check" kata={"kind": "check", "topic": "zero_init"}
check("zero_init", unigram_loss, zero_init_grads)

# %% [markdown] id="zero_init-intro"
# ### Experiment: exercise E01, every parameter starts at zero
#
# With every weight and bias zero, h = tanh(0) = 0, so only b2 gets a gradient, and W2 stays 0, so
# nothing before it ever moves. The net can only learn the best constant prediction, and its loss
# falls to the entropy of the targets (your `unigram_loss`) and no further.

# %% id="zero_init-run" kata={"kind": "experiment", "id": "zero_init"}
if ready("no_grad", "zero_init"):
    code = yours()
    floor = unigram_loss(Ytr)
    print(f"unigram_loss(Ytr) = {floor:.4f}, unigram_loss(Ydev) = {unigram_loss(Ydev):.4f} "
          f"(measured: {facts.UNIGRAM_LOSS['train']}, {facts.UNIGRAM_LOSS['val']})")
    stage = mlp.init_stage("zero_init", code, vocab_size, block_size)
    first = mlp.first_batch(stage, code, Xtr, Ytr)
    grads = zero_init_grads(first.X, first.Y)
    for name, grad in grads.items():
        print(f"  d loss / d {name:<2}: shape {tuple(grad.shape)}, largest |entry| {grad.abs().max().item():.4f}")
    expected_b2 = 1 / vocab_size - torch.bincount(first.Y, minlength=vocab_size) / len(first.Y)
    print(f"b2's gradient is 1/{vocab_size} - (count of each target) / {len(first.Y)}: "
          f"{torch.allclose(grads['b2'], expected_b2)}")

    steps = 3_000
    losses = mlp.reference_loop(stage, code, Xtr, Ytr, steps)
    forward = lambda X: mlp.forward(stage.params, code, X)[2]
    m = facts.ZERO_INIT_MEASURED
    print(f"after {steps:,} steps: train {split_loss(forward, Xtr, Ytr):.4f}, val {split_loss(forward, Xdev, Ydev):.4f}; "
          f"moved: {stage.moved()} (measured after {m['steps']:,} steps: {m['train']} / {m['val']}, only "
          f"{', '.join(m['moved'])})")
    plt.figure(figsize=(12, 4))
    plt.plot(losses.log10().view(-1, 100).mean(1), label="all-zero init, mean of 100 steps")
    plt.axhline(torch.tensor(floor).log10().item(), color="k", ls="--", label=f"unigram_loss(Ytr) = {floor:.4f}")
    plt.xlabel("step / 100"); plt.ylabel("log10 loss"); plt.legend()
    plt.title("the all-zero MLP trains down to the unigram floor")
    plt.show()

# %% [markdown] id="fold_batchnorm-spec" kata={"kind": "spec", "topic": "fold_batchnorm"}
# ## 12. `fold_batchnorm`: exercise E02: fold an eval-mode BatchNorm into the Linear before it
#
# The lecture's exercise E02. Fold an eval-mode BatchNorm into the
# Linear layer before it, so inference needs one matmul and no normalisation.
#
# In eval mode BatchNorm is a fixed per-feature affine map, and an affine map after a Linear layer
# is another Linear layer.
# See `explain("fold_batchnorm")`.
#
# ### `fold_batchnorm(W, b, running_mean, running_var, gamma, beta, eps=1e-5)`
#
# (W', b') with x @ W' + b' == batchnorm\_eval(x @ W + b, running\_mean, running\_var, gamma, beta, eps).
#
# **Formula**
# ```text
# s = gamma / sqrt(running_var + eps)  (eps inside the sqrt, var not std);
# W' = W * s (each column j times s[j]);
# b' = (b - running_mean) * s + beta, with b = 0 when it is None
# ```
#
# **Shape**
# ```text
# W: (fan_in, fan_out); b (or None), running_mean, running_var, gamma, beta: (fan_out,)
# -> (W': (fan_in, fan_out), b': (fan_out,)), new tensors
# ```
#
# **Lecture value:** none printed (the lecture sets this as exercise E02); its deep net uses
# Linear(bias=False) before each BatchNorm1d, so b is None there, and after folding b'
# carries all the shift.
#
# **Note:** the scale multiplies COLUMNS of W (the lecture's x @ W layout); with torch's
# nn.Linear weight (fan\_out, fan\_in) it would multiply rows. Matches F.batch\_norm with
# training=False.
#
# Replace each `raise NotImplementedError` in the cell below with your code and run it, then the check cell after it. Stuck? `hint("fold_batchnorm")` (one level deeper each call); the viewer questions: `explain("fold_batchnorm")`.

# %% id="fold_batchnorm-code" kata={"kind": "topic", "topic": "fold_batchnorm"}
import torch


def fold_batchnorm(W, b, running_mean, running_var, gamma, beta, eps=1e-5):
    """(W', b') with x @ W' + b' == batchnorm_eval(x @ W + b, running_mean, running_var, gamma, beta, eps)."""
    raise NotImplementedError('fold_batchnorm: fold_batchnorm is yours to write (hint: hint("fold_batchnorm"))')


# %% id="fold_batchnorm-check" kata={"kind": "check", "topic": "fold_batchnorm"}
check("fold_batchnorm", fold_batchnorm)

# %% [markdown] id="fold-intro"
# ### Experiment: exercise E02, fold each BatchNorm1d into the Linear before it
#
# In eval mode batch norm is a fixed affine map per feature, so each Linear + BatchNorm1d pair becomes
# one matmul and a bias. The deep net is trained briefly (for running statistics that are not the
# initial zeros and ones), then folded with your `fold_batchnorm`: the folded net, without a single
# BatchNorm1d, gives the same logits.

# %% id="fold-run" kata={"kind": "experiment", "id": "fold"}
if ready("no_grad", "modules", "fold_batchnorm"):
    code = yours()
    net = deepnet.build(code, vocab_size, block_size)
    deepnet.train(net, Xtr, Ytr, 300)
    deepnet.set_training(net, False)
    folded = []
    for layer, following in zip(net.layers, net.layers[1:] + [None]):
        if isinstance(layer, BatchNorm1d):
            continue  # folded into the Linear before it
        if isinstance(layer, Linear) and isinstance(following, BatchNorm1d):
            with torch.no_grad():
                W, b = fold_batchnorm(layer.weight, layer.bias, following.running_mean.reshape(-1),
                                      following.running_var.reshape(-1), following.gamma, following.beta,
                                      following.eps)
            folded.append(lambda x, W=W, b=b: x @ W + b)
        else:
            folded.append(layer)
    merged = deepnet.DeepNet(net.C, folded, False, net.gain, net.gen)
    with torch.no_grad():
        original, logits = net(Xdev), merged(Xdev)
    print(f"{len(net.layers)} layers -> {len(folded)}: every BatchNorm1d folded into the Linear before it")
    # float32 rounds the folded and the unfolded arithmetic differently: about 1e-6 of each logit's size
    print(f"largest logit difference on {len(Xdev):,} val examples: {(original - logits).abs().max().item():.1e}; "
          f"torch.allclose(rtol=1e-4, atol=1e-5): {torch.allclose(original, logits, rtol=1e-4, atol=1e-5)}")
    print(f"val loss: with BatchNorm1d (eval) {split_loss(net, Xdev, Ydev):.6f}, "
          f"folded {split_loss(merged, Xdev, Ydev):.6f}")

# %% [markdown] id="outro"
# ## Where next
#
# `check()` prints the scorecard of everything this notebook defines. `python grader.py` prints the
# scorecard of your exercises/ files; `python -m kata lecture` trains the lecture's five MLP stages
# for their full length and its deep net with your code (copy your cells into exercises/ first: it
# imports from there), and prints the lecture's numbers beside yours.
