"""no_grad, learner style: a `with torch.no_grad():` block and F.cross_entropy."""
import torch
import torch.nn.functional as F


def split_loss(forward, X, Y):
    with torch.no_grad():
        logits = forward(X)
        loss = F.cross_entropy(logits, Y)
    return loss.item()
