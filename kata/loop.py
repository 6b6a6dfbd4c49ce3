"""The lecture's training loop, as the notebook writes it: autograd everywhere, one minibatch a step.

The deep net (part 2) trains with it, and so does `mlp.reference_loop`, the readable version of
part 1 that the fast path (kata/fastmlp.py) is tested against.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kata.facts import BATCH


def lecture_step(params: list, forward, gen: torch.Generator, Xtr, Ytr) -> float:
    """One step up to the update: a minibatch from `gen`, forward, zero the grads, backward.
    Returns the minibatch loss; every parameter's .grad holds its gradient."""
    ix = torch.randint(0, Xtr.shape[0], (BATCH,), generator=gen)
    loss = F.cross_entropy(forward(Xtr[ix]), Ytr[ix])
    for p in params:
        p.grad = None
    loss.backward()
    return loss.item()


def lecture_loop(params: list, forward, gen: torch.Generator, Xtr, Ytr, steps: int, lr_at, after_step=None) -> list:
    """`steps` of SGD at lr_at(i); returns the minibatch losses. after_step(i, lr, loss), if given,
    runs after each update (the deep net reads its statistics there, as the notebook does)."""
    losses = []
    for i in range(steps):
        losses.append(lecture_step(params, forward, gen, Xtr, Ytr))
        lr = lr_at(i)
        for p in params:
            p.data += -lr * p.grad
        if after_step is not None:
            after_step(i, lr, losses[-1])
    return losses
