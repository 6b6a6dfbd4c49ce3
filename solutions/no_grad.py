"""Topic 1, no_grad: evaluate a split's loss without building an autograd graph.

Lecture: starter code, `split_loss('train')` / `split_loss('val')` under `@torch.no_grad()`.
See kata/notes/no_grad.md (what no_grad saves, and why it is not BatchNorm's eval mode).
"""
import torch
import torch.nn.functional as F


def split_loss(forward, X, Y):
    """Mean cross-entropy of `forward(X)` against `Y`, computed under `torch.no_grad()`.

    Formula: loss = -mean_i log softmax(forward(X))[i, Y[i]]  (F.cross_entropy), the softmax
    taken over the vocabulary (dim 1), the mean over the examples (dim 0).

    Shape: X: (N, block_size) int64 -> forward(X): (N, vocab) logits; Y: (N,) int64 -> float

    Lecture value: the starter MLP ends at train 2.1245, val 2.1682 after 200,000 steps; a
    uniform prediction (all logits equal) gives log(27) = 3.2958.

    Note: the lecture decorates its split_loss with `@torch.no_grad()`; a `with torch.no_grad():`
    block around the forward pass does the same. Evaluation needs no gradients: without it, torch
    keeps every intermediate activation of all 182,625 training examples alive for a backward
    pass that never comes. Return a Python float (`.item()`, as the lecture prints), not a tensor.
    """
    # BEGIN SOLUTION
    with torch.no_grad():
        logits = forward(X)  # (N, vocab)
        loss = F.cross_entropy(logits, Y)
    return loss.item()
    # END SOLUTION
