"""Part 2 of `python -m kata lecture`: the lecture's deep net, built from the learner's modules.

C, then 5 x [Linear(bias=False), BatchNorm1d, Tanh], then Linear(bias=False) and BatchNorm1d,
as the lecture's final notebook; trained for its 1,001 steps (i = 0..1000) at lr 0.1, then
inspected with the learner's activation_stats, grad_to_data_ratio and update_ratios.
Without batch norm (--no-batchnorm) it is the lecture's earlier net: Linear(bias=True) + Tanh,
the last Linear's weight * 0.1, the others * gain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from kata import loop
from kata.facts import BATCH, DEEP_DEPTH, DEEP_LR, DEEP_N_EMBD, DEEP_N_HIDDEN, DEEP_STEPS, SEED


class LectureBatchNorm1d:
    """The notebook's own BatchNorm1d, for `--lecture-batchnorm` only: it normalises with x.var(0),
    the UNBIASED variance (divide by N - 1), where the kata (like torch.nn.BatchNorm1d) uses the
    biased one. With it the deep net reproduces the notebook's printed table; with the learner's
    class every figure is off by a little (at N = 32 the normalised values differ by sqrt(32/31))."""

    def __init__(self, dim, eps=1e-5, momentum=0.1):
        self.eps, self.momentum, self.training = eps, momentum, True
        self.gamma, self.beta = torch.ones(dim), torch.zeros(dim)
        self.running_mean, self.running_var = torch.zeros(dim), torch.ones(dim)

    def __call__(self, x):
        if self.training:
            xmean = x.mean(0, keepdim=True)  # (1, dim)
            xvar = x.var(0, keepdim=True)  # (1, dim), unbiased, as the notebook
        else:
            xmean, xvar = self.running_mean, self.running_var
        self.out = self.gamma * (x - xmean) / torch.sqrt(xvar + self.eps) + self.beta
        if self.training:
            with torch.no_grad():
                self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * xmean
                self.running_var = (1 - self.momentum) * self.running_var + self.momentum * xvar
        return self.out

    def parameters(self):
        return [self.gamma, self.beta]


@dataclass
class DeepNet:
    C: torch.Tensor
    layers: list
    batchnorm: bool
    gain: float
    gen: torch.Generator  # the notebook's g: it drew C and the weights, then draws the minibatches

    def parameters(self) -> list:
        return [self.C] + [p for layer in self.layers for p in layer.parameters()]

    def __call__(self, X):
        emb = self.C[X]  # (N, block_size, n_embd)
        x = emb.view(emb.shape[0], -1)  # (N, block_size * n_embd)
        for layer in self.layers:
            x = layer(x)
        return x  # (N, vocab)

    def retaining_forward(self, X):
        """The forward pass, keeping each layer's .out.grad after backward (the notebook's
        `layer.out.retain_grad()`), which the tables and plots read."""
        logits = self(X)
        for layer in self.layers:
            layer.out.retain_grad()
        return logits

    def tanh_layers(self) -> list[int]:
        return [i for i, layer in enumerate(self.layers) if type(layer).__name__ == "Tanh"]


def build(modules, vocab_size: int, block_size: int, batchnorm: bool = True, gain: float | None = None,
          lecture_batchnorm: bool = False, bias: bool | None = None) -> DeepNet:
    """The lecture's net from the learner's Linear, BatchNorm1d and Tanh, drawn from the lecture's
    generator in its order (C, then each Linear's weight). lecture_batchnorm: the notebook's
    BatchNorm1d (unbiased variance) instead of the learner's. bias: whether the Linear layers have
    one (default: only without batch norm, whose mean subtraction would cancel it)."""
    gain = (1.0 if batchnorm else 5 / 3) if gain is None else gain
    bias = not batchnorm if bias is None else bias
    g = torch.Generator().manual_seed(SEED)
    C = torch.randn((vocab_size, DEEP_N_EMBD), generator=g)
    Linear, BatchNorm1d, Tanh = modules.Linear, modules.BatchNorm1d, modules.Tanh
    if lecture_batchnorm:
        BatchNorm1d = LectureBatchNorm1d
    layers, fan_in = [], DEEP_N_EMBD * block_size
    for _ in range(DEEP_DEPTH):
        if batchnorm:
            layers += [Linear(fan_in, DEEP_N_HIDDEN, bias=bias, generator=g), BatchNorm1d(DEEP_N_HIDDEN), Tanh()]
        else:
            layers += [Linear(fan_in, DEEP_N_HIDDEN, bias=bias, generator=g), Tanh()]
        fan_in = DEEP_N_HIDDEN
    layers.append(Linear(DEEP_N_HIDDEN, vocab_size, bias=bias, generator=g))
    if batchnorm:
        layers.append(BatchNorm1d(vocab_size))
    with torch.no_grad():
        if batchnorm:
            layers[-1].gamma *= 0.1  # last layer less confident at init
        else:
            layers[-1].weight *= 0.1
        for layer in layers[:-1]:  # as the notebook: with BN this includes the last Linear
            if isinstance(layer, Linear):
                layer.weight *= gain
    net = DeepNet(C, layers, batchnorm, gain, g)
    for p in net.parameters():
        p.requires_grad = True
    return net


@dataclass
class Trace:
    losses: list = field(default_factory=list)
    update_ratios: list = field(default_factory=list)  # one row per step, one value per weight
    init_tanh: list = field(default_factory=list)  # activation_stats of each tanh at step 0
    at_init: bool = False  # the net was inspected at step 0, before any update


def train(net: DeepNet, Xtr, Ytr, steps: int = DEEP_STEPS, lr: float = DEEP_LR, stats=None, ratios=None,
          progress=None) -> Trace:
    """The notebook's loop (kata/loop.py); after it every layer's .out holds the last step's output
    and .out.grad its gradient (retain_grad), and each weight its .grad, as the lecture's tables and
    plots use. `stats` (the learner's activation_stats) measures each tanh layer at step 0;
    `ratios` (the learner's update_ratios) records the update:data ratios after each update, as
    the notebook does."""
    params = net.parameters()
    trace = Trace()

    def after_step(i, lr, loss):
        if i == 0 and stats is not None:  # .out still holds step 0's forward pass: the net at init
            trace.init_tanh = _tanh_stats(net, stats)
        if ratios is not None:
            with torch.no_grad():
                trace.update_ratios.append(list(ratios(params, lr)))
        if progress is not None:
            progress(1, loss)

    trace.losses = loop.lecture_loop(params, net.retaining_forward, net.gen, Xtr, Ytr, steps, lambda i: lr, after_step)
    return trace


def at_init(net: DeepNet, Xtr, Ytr, stats, ratios, lr: float = DEEP_LR) -> Trace:
    """The net at step 0: the first minibatch's forward and backward pass, and no update. The
    update:data ratios (the learner's `ratios`) are those of the update step 0 would make, against
    the data at init; `stats` is the learner's activation_stats."""
    params = net.parameters()
    loss = loop.lecture_step(params, net.retaining_forward, net.gen, Xtr, Ytr)
    with torch.no_grad():
        update = list(ratios(params, lr))
    return Trace(losses=[loss], update_ratios=[update], init_tanh=_tanh_stats(net, stats), at_init=True)


def first_batch(net: DeepNet, Xtr, Ytr) -> tuple:
    """The first minibatch the notebook's loop would draw, (X (32, block_size), Y (32,)); the
    net's generator moves on, as the loop's own draw would move it."""
    ix = torch.randint(0, Xtr.shape[0], (BATCH,), generator=net.gen)
    return Xtr[ix], Ytr[ix]


def set_training(net: DeepNet, training: bool) -> None:
    """Batch norm's mode for every layer that has one: batch statistics (True) or running ones."""
    for layer in net.layers:
        if hasattr(layer, "training"):
            layer.training = training


def _tanh_stats(net: DeepNet, activation_stats) -> list:
    return [activation_stats(net.layers[j].out.detach()) for j in net.tanh_layers()]
